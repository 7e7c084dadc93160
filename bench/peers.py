"""kwsd against microWakeWord on the same real speech: CPU, memory and start-up, per engine.

    .venv/bin/pip install -e ".[bench]"          # pymicro-wakeword (+ soxr, already a kwsd dependency)
    .venv/bin/python bench/peers.py [--seconds 600] [--rounds 3] [--block-ms 20] [--model M]

The audio is real speech from ../shared/data (LibriSpeech and picovoice_sti files taken in
turn, concatenated, ``--seconds`` long), written once as 16 kHz and as 48 kHz (soxr) raw
16-bit PCM. Each engine then runs in its own fresh ``python`` process, which streams the file
in ``--block-ms`` blocks (as a microphone would deliver them, one reused buffer) through:

* **kwsd**: :class:`kwsd.spotter.Spotter` with the bundled model (the decision path of
  ``kwsd detect`` and the daemon: resampling to 16 kHz, log-mel features, model, detector);
* **microWakeWord**: pymicro-wakeword's built-in ``okay_nabu`` model (its own micro
  front end and streaming model), fed 16 kHz through a soxr stream, as its users do.

Engines and rates alternate, ``--rounds`` times. Per run: CPU ms per audio second (the
streaming loop's process CPU time over the audio's length; reading raw PCM into one buffer
costs a few microseconds a block), us of CPU per decision, decisions per audio second, the
child's peak RSS (its own ``VmHWM``: ``ru_maxrss`` would carry the parent's peak across fork
and exec) and its start-up CPU (process CPU time from exec to the engine ready to take audio:
interpreter, imports, model load; kwsd's bytecode is written first, as installing a package
does). Printed: every run, then the medians with [min-max] ranges and the kwsd /
microWakeWord ratios. Both are single-threaded (kwsd's interpreter has one thread;
microWakeWord's C library runs in the calling thread).
"""

import sys

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--child":
    # A child: import as little as possible before the engine, so start-up is the engine's.
    import resource
    import time

    def _cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def _child(engine, raw, rate, block_ms, model_path):
        if engine == "kwsd":
            import kwsd.__main__  # noqa: F401  (the kwsd command's process set-up: one BLAS thread)
            from kwsd.model import load_model
            from kwsd.spotter import Spotter
            model = load_model(model_path) if model_path else load_model(
                __import__("kwsd.model").model.BUNDLED_MODEL)
            spotter = Spotter(model, rate)

            def feed(block):
                return sum(e.kind == "score" for e in spotter.process(block))
        else:
            import numpy as np  # noqa: F401  (pymicro-wakeword imports it too)
            import soxr
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model
            mww = MicroWakeWord.from_builtin(Model.OKAY_NABU)
            features = MicroWakeWordFeatures()
            to16k = soxr.ResampleStream(rate, 16000, 1, dtype="int16") if rate != 16000 else None
            pending = [0]

            def feed(block):
                if to16k is not None:
                    block = to16k.resample_chunk(block)
                decisions = 0
                for f in features.process_streaming(block.tobytes()):
                    mww.process_streaming(f)
                    pending[0] += 1
                    if pending[0] == mww.stride:      # the model runs once per stride
                        pending[0], decisions = 0, decisions + 1
                return decisions
        startup_cpu = _cpu()
        import numpy as np
        frames = int(rate * block_ms / 1000)
        buf = bytearray(2 * frames)          # raw 16-bit PCM: reading costs next to nothing
        decisions = total = 0
        t0 = _cpu()
        with open(raw, "rb", buffering=0) as f:
            while True:
                n = f.readinto(buf) // 2
                if not n:
                    break
                decisions += feed(np.frombuffer(buf, np.int16, n))
                total += n
        loop_cpu = _cpu() - t0
        with open("/proc/self/status") as status:     # peak RSS of this process image
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(f"{startup_cpu} {loop_cpu} {decisions} {total / rate} {peak_kb}")

    _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
           sys.argv[6] if len(sys.argv) > 6 else "")
    sys.exit(0)

import argparse  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(REPO, "..", "shared", "data")
ENGINES = ("kwsd", "microWakeWord")


def real_speech(seconds: float) -> np.ndarray:
    """``seconds`` of 16 kHz mono float speech: LibriSpeech and picovoice_sti files in turn."""
    sys.path.insert(0, REPO)
    from kwsd.audiofile import read_audio, to_mono
    libri = sorted(glob.glob(os.path.join(SHARED, "librispeech", "*.flac")))
    sti = sorted(glob.glob(os.path.join(SHARED, "picovoice_sti", "speech", "*.ogg")))
    if not libri or not sti:
        sys.exit(f"real speech not found under {SHARED} (../shared beside the repository)")
    parts, total = [], 0
    for a, b in zip(libri, sti):
        for f in (a, b):
            x, rate = read_audio(f)
            if rate != 16000:
                continue
            parts.append(to_mono(x))
            total += parts[-1].size
        if total >= seconds * 16000:
            break
    x = np.concatenate(parts)[:int(seconds * 16000)]
    if x.size < seconds * 16000:
        sys.exit(f"only {x.size / 16000:.0f} s of real speech found")
    return x


def run_child(engine, raw, rate, block_ms, model):
    """One fresh process streaming the raw 16-bit file ``raw``; returns its figures."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", engine, raw, str(rate),
           str(block_ms)]
    if model and engine == "kwsd":
        cmd.append(model)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.wait()
    if proc.returncode != 0:
        sys.exit(f"{engine} child failed ({proc.returncode}):\n{err}")
    startup, loop, decisions, seconds, peak_kb = (float(v) for v in out.split())
    return {"cpu_ms_per_s": 1000 * loop / seconds, "us_per_decision": 1e6 * loop / max(decisions, 1),
            "decisions_per_s": decisions / seconds, "rss_mb": peak_kb / 1024,
            "startup_cpu_s": startup}


COLUMNS = (("cpu_ms_per_s", "CPU ms/audio s", "{:.2f}"), ("us_per_decision", "us/decision", "{:.0f}"),
           ("decisions_per_s", "decisions/s", "{:.1f}"), ("rss_mb", "peak RSS MB", "{:.1f}"),
           ("startup_cpu_s", "start-up CPU s", "{:.3f}"))


def summary(runs, key, fmt):
    values = [r[key] for r in runs]
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]", med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600, help="audio length (default 600)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per engine and rate")
    ap.add_argument("--block-ms", type=float, default=20, help="block size fed (default 20 ms)")
    ap.add_argument("--rates", default="48000,16000", help="input rates, comma-separated")
    ap.add_argument("--model", default=None, help="kwsd model (default: the bundled one)")
    args = ap.parse_args()
    try:
        import pymicro_wakeword  # noqa: F401
    except ImportError:
        sys.exit('pymicro-wakeword is not installed: pip install -e ".[bench]"')
    import soxr
    rates = [int(r) for r in args.rates.split(",")]
    sys.path.insert(0, HERE)
    from memory import precompile_kwsd
    precompile_kwsd()        # as installed: start-up reads kwsd's bytecode, as it does numpy's
    speech = real_speech(args.seconds)
    with tempfile.TemporaryDirectory(prefix="kwsd-peers-") as tmp:
        raws = {}
        for rate in rates:
            x = speech if rate == 16000 else soxr.resample(speech, 16000, rate)
            raws[rate] = os.path.join(tmp, f"speech{rate}.s16")
            (np.clip(x, -1, 1) * 32767).astype("<i2").tofile(raws[rate])
        print(f"{args.seconds:.0f} s of real speech (LibriSpeech + picovoice_sti), "
              f"{args.block_ms:g} ms blocks, {args.rounds} rounds; load average "
              f"{os.getloadavg()[0]:.2f} at start")
        results = {(e, r): [] for e in ENGINES for r in rates}
        for i in range(args.rounds):
            for rate in rates:
                order = ENGINES if i % 2 == 0 else ENGINES[::-1]
                for engine in order:
                    res = run_child(engine, raws[rate], rate, args.block_ms, args.model)
                    results[engine, rate].append(res)
                    print(f"  round {i + 1} {engine:13s} {rate:5d} Hz: " + ", ".join(
                        f"{label} {fmt.format(res[key])}" for key, label, fmt in COLUMNS), flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
        header = f"| {'engine, input rate':26s} | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
        print(header)
        print("|" + "|".join("---" for _ in range(len(COLUMNS) + 1)) + "|")
        medians = {}
        for rate in rates:
            for engine in ENGINES:
                cells = []
                for key, _, fmt in COLUMNS:
                    text, medians[engine, rate, key] = summary(results[engine, rate], key, fmt)
                    cells.append(text)
                print(f"| {engine + ', ' + str(rate // 1000) + ' kHz':26s} | " + " | ".join(cells) + " |")
        print("\nkwsd / microWakeWord (medians):")
        for rate in rates:
            print(f"  {rate // 1000} kHz: " + ", ".join(
                f"{label} {medians['kwsd', rate, key] / medians['microWakeWord', rate, key]:.2f}x"
                for key, label, _ in COLUMNS))


if __name__ == "__main__":
    main()
