"""How the detector's smoothing and refractory period trade recall, false positives and delay.

    .venv/bin/python bench/detector_settings.py [--model kwsd/models/stop.tflite] [--split validation]

Streams the held-out speakers' clips of ../shared/data (speaker hash, salt 'kwsd', 20/20, as
in the model card) and their held-out long audio through kwsd's own Spotter at the model's
threshold, for several smoothing lengths, and prints "stop" recall, the false-positive rate
over other words, false accepts on long audio, and the mean delay from the end of the
one-second clip window to the detection. The model's defaults were chosen from this table
on the validation split.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kwsd.audiofile import read_audio  # noqa: E402
from kwsd.model import BUNDLED_MODEL, load_model  # noqa: E402
from kwsd.spotter import Spotter  # noqa: E402
from training.data import which_set  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def clips(split):
    sc = DATA / "speech_commands"
    out = {}
    for d in sorted(sc.iterdir()):
        if d.is_dir() and not d.name.startswith("_"):
            out[d.name] = [p for p in sorted(d.glob("*.wav"))
                           if which_set(f"{d.name}/{p.name}", 20.0, 20.0, "kwsd") == split]
    return out


def detections(model, settings, samples, rate, lead_s=0.5, tail_s=1.0):
    """Detection times for a clip with silence around it (as spoken to a device)."""
    pad = lambda s: np.zeros((int(s * rate), samples.shape[1]), np.float32)  # noqa: E731
    x = np.concatenate([pad(lead_s), samples, pad(tail_s)])
    return [e.time for e in Spotter(model, rate, settings).process(x) if e.kind == "detection"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=BUNDLED_MODEL)
    ap.add_argument("--split", default="validation", choices=("validation", "testing"))
    args = ap.parse_args()
    model = load_model(args.model)
    per_word = clips(args.split)
    stops = [read_audio(p) for p in per_word.pop("stop")]
    others = [read_audio(p) for ps in per_word.values() for p in ps]
    long_files = [p for p in sorted((DATA / "librispeech").glob("*.flac"))
                  + sorted((DATA / "precise_community").rglob("*.flac"))
                  if which_set(p.stem.split("-")[0] if p.stem[:1].isdigit() else p.stem,
                               20.0, 20.0, "kwsd-long") == args.split]
    long_audio = [read_audio(p) for p in long_files]
    hours = sum(x.shape[0] / r for x, r in long_audio) / 3600
    print(f"{os.path.basename(args.model)}, {args.split} speakers: {len(stops)} stops, "
          f"{len(others)} other words, {hours:.2f} h long audio; threshold "
          f"{model.defaults.threshold}")
    print(f"{'smoothing':>9} {'refractory':>10} {'recall':>7} {'word FPR':>9} {'FA':>4} "
          f"{'FA/h':>6} {'delay after clip end':>21}")
    for smoothing in (1, 2, 3, 4, 5):
        for refractory in (1.0,):
            s = model.defaults.with_overrides(smoothing=smoothing, refractory_s=refractory)
            hits, delays = 0, []
            for x, rate in stops:
                times = detections(model, s, x, rate)
                if times:
                    hits += 1
                    delays.append(times[0] - (0.5 + x.shape[0] / rate))
            fp = sum(bool(detections(model, s, x, r)) for x, r in others)
            fa = sum(sum(e.kind == "detection" for e in Spotter(model, r, s).process(x))
                     for x, r in long_audio)
            print(f"{smoothing:>9} {refractory:>10.1f} {hits / len(stops):>7.1%} "
                  f"{fp / len(others):>9.2%} {fa:>4} {fa / hours:>6.1f} "
                  f"{np.mean(delays) * 1000:>17.0f} ms")


if __name__ == "__main__":
    main()
