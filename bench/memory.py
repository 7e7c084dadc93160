"""Peak memory and CPU of ``kwsd detect`` on a long file, and where the memory goes.

    .venv/bin/python bench/memory.py [--hours 3] [--rate 48000] [--model M.tflite]

Makes a ``--hours`` long FLAC of real speech (LibriSpeech, picovoice_sti and festvox_ru files
from ../shared/data taken in turn, over and over, resampled with soxr to ``--rate``) in a
temporary folder (deleted afterwards), then runs ``kwsd detect --json`` on it, on its first
ten minutes and on a one-second clip, each in a fresh process. For each run it prints the
peak RSS (the process's own VmHWM, read as it exits), CPU seconds and wall time, and for the
long run the resident memory at exit by mapping (Python, numpy and its OpenBLAS, LiteRT,
libsndfile, anonymous memory...). The one-second run's CPU is ``kwsd detect``'s start-up
(interpreter, imports, model load) plus one decision. kwsd's bytecode is written first (as
installing it does), so no run compiles kwsd's sources.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(REPO, "..", "shared", "data")

# Run kwsd's own main(); at exit report VmHWM and the resident set by mapping, on stderr.
WRAPPER = r"""
import atexit, json, re, sys
def report():
    groups = {}
    name = None
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                name = parts[5] if len(parts) > 5 else "[anonymous]"
            elif line.startswith("Rss:"):
                groups[name] = groups.get(name, 0) + int(line.split()[1])
    with open("/proc/self/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    sys.stderr.write("KWSD-MEMORY " + json.dumps({"hwm_kb": hwm, "maps": groups}) + "\n")
atexit.register(report)
sys.argv[0] = "kwsd"
from kwsd.__main__ import main
sys.exit(main())
"""

GROUPS = (("LiteRT", ("ai_edge_litert", "tflite_runtime")), ("numpy + OpenBLAS", ("numpy",)),
          ("Python (interpreter, stdlib extensions)", ("libpython", "lib-dynload", "/bin/python")),
          ("libsndfile + codecs", ("sndfile", "soundfile", "FLAC", "vorbis", "ogg", "opus", "mpg123", "mp3lame")),
          ("soxr", ("soxr",)), ("libc, libstdc++, libm, ld.so", ("libc.so", "libstdc++", "libm.so", "ld-linux", "libgcc")),
          ("OpenSSL libcrypto (hashlib)", ("libcrypto",)),
          ("PortAudio (+ the JACK and Berkeley DB libraries it links), ALSA, cffi",
           ("portaudio", "libjack", "libdb-", "libasound", "_cffi", "sounddevice", "alsa-lib")),
          ("heap + anonymous (Python objects, arrays)", ("[heap]", "[anonymous]")))


def precompile_kwsd():
    """Write kwsd's bytecode, as installing a package does, so that a measured start-up is
    not compiling kwsd's sources (this machine sets PYTHONDONTWRITEBYTECODE)."""
    import compileall
    compileall.compile_dir(os.path.join(REPO, "kwsd"), quiet=1)


def grouped(maps):
    out = {}
    for name, kb in maps.items():
        label = next((g for g, keys in GROUPS if any(k in name for k in keys)), "other")
        out[label] = out.get(label, 0) + kb
    return out


def make_speech(path, seconds, rate):
    """Write ``seconds`` of real speech to ``path`` (16-bit FLAC), piece by piece."""
    import soxr
    sources = [sorted(glob.glob(os.path.join(SHARED, d))) for d in
               ("librispeech/*.flac", "picovoice_sti/speech/*.ogg", "festvox_ru/*/*.wav")]
    files = [f for group in zip(*[s for s in sources if s]) for f in group]
    if not files:
        sys.exit(f"real speech not found under {SHARED}")
    written, i = 0, 0
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16") as out:
        while written < seconds * rate:
            x, r = soundfile.read(files[i % len(files)], dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            if r != rate:
                x = soxr.resample(x, r, rate)
            x = x[:int(seconds * rate) - written]
            out.write(np.clip(x, -1, 1))
            written += x.size
            i += 1


def run_detect(path, model):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", WRAPPER, "detect", "--json", str(path)]
    if model:
        cmd[4:4] = ["--model", model]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    line = next((x for x in err.decode().splitlines() if x.startswith("KWSD-MEMORY ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"kwsd detect failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    mem = json.loads(line.split(" ", 1)[1])
    events = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    return mem, wall, events


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--model", default=None, help="default: the bundled model")
    args = ap.parse_args()
    import resource
    precompile_kwsd()
    with tempfile.TemporaryDirectory(prefix="kwsd-memory-") as tmp:
        long_path = os.path.join(tmp, f"speech-{args.hours:g}h-{args.rate}.flac")
        t0 = time.monotonic()
        make_speech(long_path, args.hours * 3600, args.rate)
        short_path = os.path.join(tmp, "speech-10min.flac")
        clip_path = os.path.join(tmp, "speech-1s.flac")
        with soundfile.SoundFile(long_path) as f:
            soundfile.write(short_path, f.read(args.rate * 600, dtype="int16"), args.rate)
            f.seek(0)
            soundfile.write(clip_path, f.read(args.rate, dtype="int16"), args.rate)
        print(f"made {args.hours:g} h of real speech at {args.rate} Hz "
              f"({os.path.getsize(long_path) / 2**20:.0f} MB FLAC) in {time.monotonic() - t0:.0f} s; "
              f"load average {os.getloadavg()[0]:.2f}")
        print("\n| `kwsd detect --json` on | peak RSS (VmHWM) | CPU s | wall s | CPU ms per audio s | detections |")
        print("|---|---|---|---|---|---|")
        long_mem = None
        for label, path, seconds in (("1 s clip (start-up + 1 decision)", clip_path, 1),
                                     ("10 minutes", short_path, 600),
                                     (f"{args.hours:g} hours", long_path, args.hours * 3600)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            mem, wall, events = run_detect(path, args.model)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            detections = sum(e["event"] == "detection" for e in events)
            print(f"| {label} | {mem['hwm_kb'] / 1024:.1f} MB | {cpu:.2f} | {wall:.1f} | "
                  f"{1000 * cpu / seconds:.2f} | {detections} |", flush=True)
            long_mem = mem
        print(f"\nresident at exit of the {args.hours:g} h run, by mapping:")
        for label, kb in sorted(grouped(long_mem["maps"]).items(), key=lambda kv: -kv[1]):
            print(f"  {kb / 1024:6.1f} MB  {label}")


if __name__ == "__main__":
    main()
