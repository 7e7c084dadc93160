"""Measure the daemon as it runs: detection latency, CPU, memory, start-up time.

    .venv/bin/python bench/daemon_latency.py [--model FILE] [--clips N] [--gap S] [--rate HZ]

Runs ``kwsd run`` as a subprocess with its defaults (the model's detector settings, 20 ms
audio blocks), capturing through PortAudio from an ALSA FIFO device that is fed real
"stop" clips from ../shared/data in real time (tests/daemon_harness.py), one LED action on
gpiozero mock pins, the false-accept meter on (``$STATE_DIRECTORY`` set, as systemd's
``StateDirectory=`` does). Prints:

* latency: from the end of each spoken "stop" (last 10 ms frame within 30 dB of the clip's
  peak) to the LED pin's change (the mock pin's own timestamp), median / min / max;
* the pipeline's own share: from the audio block that completes the deciding window reaching
  the daemon to the pin change (model independent);
* CPU % of one core while listening (process user+system time over wall time, from READY
  to the end);
* peak RSS (VmHWM);
* start-up time from process start to READY=1 (including the Python imports and model load),
  and the process's CPU time then;
* the time from SIGTERM to the process's exit.
"""

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from daemon_harness import (RATE, SEED_MODEL, SPEECH, STOP_CLIPS, Daemon, FifoMic, clip,  # noqa: E402
                            pin_histories, silence, write_config)

BUNDLED = REPO / "kwsd" / "models" / "stop.tflite"


def speech_end(x, frame=160, drop_db=30.0):
    """Index just after the last 10 ms frame within ``drop_db`` of the loudest frame."""
    n = len(x) // frame
    rms = np.sqrt(np.mean(x[:n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    loud = np.nonzero(rms >= rms.max() * 10 ** (-drop_db / 20))[0]
    return int((loud[-1] + 1) * frame)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid):
    """``{"VmHWM": peak RSS, "RssAnon": private heap now, "RssFile": mapped files now}``."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def mapped_kb(pid):
    """Resident kB now by mapping (library path, ``[heap]``, ``[anonymous]``...)."""
    groups, name = {}, None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
            name = parts[5] if len(parts) > 5 else "[anonymous]"
        elif line.startswith("Rss:"):
            groups[name] = groups.get(name, 0) + int(parts[1])
    return groups


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(BUNDLED if BUNDLED.is_file() else SEED_MODEL))
    ap.add_argument("--clips", type=int, default=12, help="how many 'stop's to speak")
    ap.add_argument("--gap", type=float, default=1.5, help="seconds of silence between them")
    ap.add_argument("--rate", type=int, default=16000,
                    help="capture rate: the clips are resampled to it (soxr) and the daemon "
                         "opens the device at it (default 16000)")
    args = ap.parse_args()
    rate = args.rate

    def at_rate(x):
        """16 kHz int16 clip -> the capture rate."""
        if rate == 16000:
            return x
        import soxr
        y = soxr.resample(x.astype(np.float32) / 32768, 16000, rate)
        return (np.clip(y, -1, 1) * 32767).astype(np.int16)

    sys.path.insert(0, str(REPO / "bench"))
    from memory import grouped, precompile_kwsd
    precompile_kwsd()        # as installed: the daemon's start-up does not compile kwsd
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="kwsd-bench-"))
    mic = FifoMic(tmp, rate=rate)
    cfg = write_config(tmp / "kwsd.yaml", Path(args.model).resolve(),
                       actions=[{"type": "led", "pin": "GPIO17", "on_time": 0.2}])
    # the product's defaults for everything measured: drop the tests' timing overrides
    import yaml
    doc = yaml.safe_load(cfg.read_text())
    for key in ("stall_timeout_s", "retry_initial_s", "retry_max_s"):
        doc["audio"].pop(key)
    doc.pop("detector")
    doc.pop("watch_interval_s")
    doc["audio"]["samplerate"] = rate
    cfg.write_text(yaml.safe_dump(doc))
    t0 = time.monotonic()
    (tmp / "state").mkdir()
    d = Daemon(cfg, tmp, mic, env={"STATE_DIRECTORY": str(tmp / "state")},
               watchdog_usec=10_000_000)
    try:
        ready = d.wait_notify("READY", "1", timeout=60)
        startup = d.notes[ready]["_mono"] - t0
        startup_cpu = cpu_seconds(d.proc.pid)      # read just after READY=1 arrived
        mic.say(at_rate(silence(1.0)), mark="warm")
        mic.mark_time("warm")
        cpu0, wall0 = cpu_seconds(d.proc.pid), time.monotonic()
        for i in range(args.clips):
            x = at_rate(clip(STOP_CLIPS[i % len(STOP_CLIPS)]))
            cut = speech_end(x, frame=rate // 100)
            mic.say(x[:cut], mark=f"end{i}")
            mic.say(np.concatenate([x[cut:], at_rate(silence(args.gap))]), mark=f"slot{i}")
        mic.say(at_rate(silence(0.5)), mark="done")
        ends = [mic.mark_time(f"end{i}", timeout=120) for i in range(args.clips)]
        slots = [mic.mark_time(f"slot{i}", timeout=120) for i in range(args.clips)]
        mic.mark_time("done", timeout=120)
        cpu1, wall1 = cpu_seconds(d.proc.pid), time.monotonic()
        mem = memory_mb(d.proc.pid)
        maps = mapped_kb(d.proc.pid)
        t_term = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(10)
        stop_s = time.monotonic() - t_term
        d.terminate()
    finally:
        d.close()
        mic.close()
    ons = [t for t, v in pin_histories(d)["led GPIO17"] if v]
    lat = []          # per clip: first LED change between the clip's start and the next's
    starts = [ends[0] - 1.0] + slots[:-1]
    for start, end, slot in zip(starts, ends, slots):
        hits = [t for t in ons if start <= t < slot]
        if hits:
            lat.append((hits[0] - end) * 1000)
    ms = sorted(lat)
    # pipeline alone: from the block completing the deciding window reaching the daemon
    # (KWSD_AUDIO_MONO) to the pin change; add up to one block (20 ms) of capture
    pipe = []
    for f in d.events("detection"):
        t = float(f["KWSD_AUDIO_MONO"])
        later = [on for on in ons if on >= t]
        if later:
            pipe.append((later[0] - t) * 1000)
    print(f"model: {args.model}; capture at {rate} Hz")
    print(f"detected: {len(lat)}/{args.clips} spoken 'stop's "
          f"({len(d.events('detection'))} detections in all), exit status {code}")
    if ms:
        print(f"latency end of 'stop' -> GPIO change: median {round(statistics.median(ms)):d} ms "
              f"(min {ms[0]:.0f}, max {ms[-1]:.0f}, n={len(ms)}; negative = fired before "
              "the word ended)")
    if pipe:
        print(f"pipeline: window's last block in -> GPIO change: median "
              f"{statistics.median(pipe):.1f} ms (max {max(pipe):.1f}); plus <= 20 ms block, "
              "<= one hop (100 ms) until the next decision")
    print(f"CPU while listening: {100 * (cpu1 - cpu0) / (wall1 - wall0):.1f} % of one core "
          f"over {wall1 - wall0:.1f} s")
    print(f"peak RSS: {mem['VmHWM']:.1f} MB (now: {mem['RssAnon']:.1f} MB private, "
          f"{mem['RssFile']:.1f} MB mapped libraries)")
    print("resident at the end, by mapping: " + ", ".join(
        f"{label} {kb / 1024:.1f} MB" for label, kb in
        sorted(grouped(maps).items(), key=lambda kv: -kv[1])))
    print(f"start-up to READY=1: {startup:.2f} s wall, {startup_cpu:.2f} s CPU (read just after READY)")
    print(f"SIGTERM to exit (outputs safe): {stop_s:.2f} s")


if __name__ == "__main__":
    main()
