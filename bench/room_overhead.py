"""CPU cost of learning from the room on the daemon's threads: the RoomWatch hop observer
(meter, near-miss picker, capture cut and hand-off) on the decision thread and its audio tap
(recent-audio ring) on the feature thread.

    .venv/bin/python bench/room_overhead.py [--repeat 3]

Replays kwsd/data/demo.flac (24 s, three "stop"s) through the daemon's Pipeline with the
bundled model, captures on (near_miss 0.3) and the meter saved to a temporary folder, and
prints the mean wall time per call of each, per run. The writer thread's work (resampling,
FLAC, the cap) is not on either path and not counted.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kwsd.audiofile import read_audio  # noqa: E402
from kwsd.captures import CaptureSettings  # noqa: E402
from kwsd.model import BUNDLED_MODEL, load_model  # noqa: E402
from kwsd.pipeline import DecisionPath, Generation, Pipeline  # noqa: E402
from kwsd.room import RoomWatch  # noqa: E402


def timed(fn, acc):
    def call(*args):
        t = time.perf_counter()
        fn(*args)
        acc[0] += time.perf_counter() - t
        acc[1] += 1
    return call


def run_once(samples, rate, model):
    pipe = Pipeline(Generation(1, (DecisionPath(model, model.defaults),)))
    with tempfile.TemporaryDirectory() as folder:
        watch = RoomWatch(pipe, CaptureSettings(dir=folder, near_miss=0.3), state_dir=folder)
        hop, tap = [0.0, 0], [0.0, 0]
        pipe.observers[:] = [timed(watch.on_hop, hop)]
        pipe.audio_taps[:] = [timed(watch.on_audio, tap)]
        pipe.start_epoch(rate)
        step = rate // 50
        for i in range(0, len(samples), step):
            pipe.push(samples[i:i + step])
            pipe.decide()
        watch.close()
    return hop, tap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    x, rate = read_audio(REPO / "kwsd" / "data" / "demo.flac")
    samples = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    model = load_model(BUNDLED_MODEL)
    for _ in range(args.repeat):
        hop, tap = run_once(samples, rate, model)
        print(f"observer {hop[0] / hop[1] * 1e6:6.1f} us/hop ({hop[1]} hops), "
              f"tap {tap[0] / tap[1] * 1e6:5.1f} us per 20 ms block ({tap[1]} blocks)")


if __name__ == "__main__":
    main()
