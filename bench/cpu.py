"""CPU cost of kwsd's decision path against the tutorial's way, per second of 48 kHz audio.

    python bench/cpu.py [--model M.tflite] [--seconds 60] [--hop-s 0.1]

kwsd's path: 48 kHz int16 blocks of 20 ms -> streaming soxr resampler -> incremental
features (each frame once) -> model every hop -> detector. The tutorial's way: 0.5 s
blocks, IIR decimation to 8 kHz (scipy.signal.decimate), full one-second MFCC every 0.5 s,
float invoke of the tutorial model. Both single-threaded, on the same real speech
(LibriSpeech from ../shared/data, upsampled to 48 kHz). Prints process CPU seconds per audio
second, the ratio, per-stage microseconds per call, and peak RSS.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kwsd.audiofile import read_audio, to_mono  # noqa: E402
from kwsd.detector import Detector  # noqa: E402
from kwsd.frontend import FeatureStream, resample_signal  # noqa: E402
from kwsd.model import load_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared")
SEED = os.path.join(SHARED, "peers", "seed", "wake_word_stop_lite.tflite")
BUNDLED = os.path.join(HERE, "..", "kwsd", "models", "stop.tflite")


def speech_48k(seconds):
    files = sorted(glob.glob(os.path.join(SHARED, "data", "librispeech", "*.flac")))
    parts, total = [], 0
    for f in files:
        x, rate = read_audio(f)
        parts.append(resample_signal(to_mono(x), rate, 48000))
        total += parts[-1].size
        if total >= seconds * 48000:
            break
    x = np.concatenate(parts)[: seconds * 48000]
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


class Stage:
    def __init__(self):
        self.seconds, self.calls = 0.0, 0

    def __call__(self, fn, *args):
        t = time.process_time()
        out = fn(*args)
        self.seconds += time.process_time() - t
        self.calls += 1
        return out

    def us(self):
        return 1e6 * self.seconds / max(1, self.calls)


def run_kwsd(audio, model, hop_s):
    stream = FeatureStream(model.profile, 48000, hop_s)
    detector = Detector(model.defaults.with_overrides(hop_s=hop_s))
    front, invoke, detect = Stage(), Stage(), Stage()
    resample = Stage()
    block = 960                                     # 20 ms, the daemon's default block
    t0 = time.process_time()
    for start in range(0, audio.size, block):
        for w in front(stream.push, audio[start:start + block]):
            score = invoke(model.score, w.features)
            detect(detector.update, w.time, score)
    total = time.process_time() - t0
    # the resampler alone, for the per-stage split
    from kwsd.frontend import Resampler
    r = Resampler(48000, model.profile.sample_rate)
    x = audio.astype(np.float64) / 32768
    hop_in = int(round(48000 * stream.hop_s))
    for start in range(0, x.size, hop_in):
        resample(r.process, x[start:start + hop_in])
    return total, {"resample (per hop)": resample.us(),
                   "front end incl. resample (per 20 ms block)": front.us(),
                   "invoke (per hop)": invoke.us(), "detector (per hop)": detect.us()}, invoke.calls


def run_tutorial(audio, model):
    import python_speech_features as psf
    from scipy.signal import decimate

    block = 24000                                   # 0.5 s at 48 kHz
    window = np.zeros(8000)
    dec, feat, invoke = Stage(), Stage(), Stage()
    t0 = time.process_time()
    for start in range(0, audio.size - block + 1, block):
        x = audio[start:start + block].astype(np.float64) / 32768
        y = dec(decimate, x, 6)
        window = np.concatenate([window[y.size:], y])
        m = feat(lambda s: psf.mfcc(s, samplerate=8000, winlen=0.256, winstep=0.050, numcep=16,
                                    nfilt=26, nfft=2048, preemph=0.0, ceplifter=0,
                                    appendEnergy=False, winfunc=np.hanning), window)
        score = invoke(model.score, m)
        _ = score > 0.5
    total = time.process_time() - t0
    return total, {"decimate (per 0.5 s)": dec.us(), "MFCC (per 0.5 s)": feat.us(),
                   "invoke (per 0.5 s)": invoke.us()}, invoke.calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=BUNDLED if os.path.exists(BUNDLED) else None)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--hop-s", type=float, default=None, help="default: the model's own")
    args = ap.parse_args()
    if not args.model:
        sys.exit("no bundled model yet: pass --model")
    model = load_model(args.model)
    seed = load_model(SEED)
    hop = args.hop_s or model.defaults.hop_s
    audio = speech_48k(args.seconds)
    secs = audio.size / 48000
    print(f"audio: {secs:.0f} s of LibriSpeech at 48 kHz; model {model.describe()}; hop {hop} s")
    k_total, k_stages, k_calls = run_kwsd(audio, model, hop)
    t_total, t_stages, t_calls = run_tutorial(audio, seed)
    print(f"\nkwsd path      : {k_total / secs * 1000:7.2f} ms CPU per audio second "
          f"({k_calls / secs:.1f} decisions/s)")
    for k, v in k_stages.items():
        print(f"    {k:45s} {v:8.1f} us")
    print(f"tutorial's way : {t_total / secs * 1000:7.2f} ms CPU per audio second "
          f"({t_calls / secs:.1f} decisions/s)")
    for k, v in t_stages.items():
        print(f"    {k:45s} {v:8.1f} us")
    print(f"\nratio kwsd / tutorial CPU: {k_total / t_total:.2f}x, deciding "
          f"{(k_calls / secs) / (t_calls / secs):.0f}x as often")
    print(f"peak RSS of this benchmark process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (both paths, the "
          "test audio, scipy for the tutorial's decimate; the daemon's own: bench/daemon_latency.py)")


if __name__ == "__main__":
    main()
