"""Test harness for the daemon: a real ALSA capture device fed in real time, the daemon as a
subprocess, and a NOTIFY_SOCKET listener.

* :class:`FifoMic` -- an ALSA ``file`` PCM named ``kwsdmic`` whose input is a FIFO. A feeder
  thread writes 16 kHz S16 audio into it at real-time pace (silence when there is nothing to
  say, like a live microphone). It can pause (the device stalls), unplug (the device
  disappears from ALSA's configuration) and be plugged in again.
* :class:`Daemon` -- ``python -m kwsd run`` with ``ALSA_CONFIG_PATH`` pointing at the mic,
  gpiozero mock pins, ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set. Its stderr log lines and
  notify datagrams are collected in order; tests wait for them with timeouts (never sleep).

See ../shared/notes/testing-without-hardware.md for the recipes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SPEECH = SHARED / "data" / "speech_commands"
SEED_MODEL = SHARED / "peers" / "seed" / "wake_word_stop_lite.tflite"
RATE = 16000

# Clips the tutorial model spots (or ignores) at every alignment to the hop grid, chosen
# with `kwsd detect` over four phases of the 0.1 s hop: the tests check the daemon, not
# the tutorial model's 61% recall.
STOP_CLIPS = ["stop/022cd682_nohash_0.wav", "stop/0fa1e7a9_nohash_0.wav",
              "stop/189cbabe_nohash_1.wav", "stop/189cbabe_nohash_2.wav"]
OTHER_CLIPS = ["go/0bac8a71_nohash_0.wav", "no/03401e93_nohash_1.wav",
               "go/022cd682_nohash_1.wav", "no/03401e93_nohash_0.wav"]


def clip(name):
    """A Speech Commands clip as int16 samples at 16 kHz."""
    import soundfile as sf
    data, rate = sf.read(str(SPEECH / name), dtype="int16")
    assert rate == RATE, (name, rate)
    return data


def silence(seconds):
    """``seconds`` of digital silence."""
    return np.zeros(int(RATE * seconds), np.int16)


_CONF = ('pcm.kwsdmic {{ type file  slave.pcm "null"  file "/dev/null"  '
         'infile "{fifo}"  format "raw" }}\n')


class FifoMic:
    """A capture device ``kwsdmic`` (ALSA file plugin over a FIFO), fed in real time with
    S16 frames of ``channels`` interleaved samples at ``rate`` (the raw device takes any rate
    and channel count: the daemon must open it with the same)."""

    def __init__(self, folder, rate=RATE, channels=1):
        self.rate, self.channels = rate, channels
        self.BLOCK = rate // 50          # 20 ms
        self.folder = Path(folder)
        self.conf = self.folder / "asound.conf"
        self.fifo = self.folder / "mic.fifo"
        self.env = {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.conf}"}
        self._lock = threading.Condition()
        self._pending = []            # [(samples, mark_name)]
        self._marks = {}              # mark name -> monotonic time its last sample was written
        self._paused = False
        self._fd = None
        self._stop = False
        self.written = 0
        self.plug()
        self._thread = threading.Thread(target=self._feed, daemon=True, name="fifo-feeder")
        self._thread.start()

    # --- the device appearing and disappearing ------------------------------------------
    def _write_conf(self, text):
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def plug(self):
        """Create the FIFO (opened read-write here first, so no open ever blocks) and
        declare the device; resume feeding."""
        tmp = self.folder / "mic.fifo.new"
        if tmp.exists():
            tmp.unlink()
        os.mkfifo(tmp)
        fd = os.open(tmp, os.O_RDWR)
        os.replace(tmp, self.fifo)
        self._write_conf(_CONF.format(fifo=self.fifo))
        with self._lock:
            self._fd = fd
            self._paused = False
            self._lock.notify_all()

    def pause(self):
        """Stop writing (the device stalls: reads block, no callbacks)."""
        with self._lock:
            self._paused = True

    def unplug(self):
        """The device vanishes from ALSA's configuration and its FIFO hits end-of-file."""
        with self._lock:
            self._paused = True
            fd, self._fd = self._fd, None
        self._write_conf("# kwsdmic unplugged\n")
        if fd is not None:
            os.close(fd)
        self.fifo.unlink()

    def eof(self):
        """The writer goes away but the device stays: reads of the FIFO hit end-of-file at
        once (a broken driver delivering "audio" far faster than real time)."""
        with self._lock:
            self._paused = True
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def close(self):
        """Stop the feeder and release the FIFO."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # --- audio -------------------------------------------------------------------------
    def say(self, samples, mark=None):
        """Queue ``samples`` (int16, ``(n,)`` for every channel alike or ``(n, channels)``)
        after what is queued; ``mark`` names its end."""
        samples = np.asarray(samples, np.int16)
        if samples.ndim == 1:
            samples = np.repeat(samples[:, None], self.channels, axis=1)
        with self._lock:
            self._pending.append((samples, mark))
            self._lock.notify_all()

    def mark_time(self, mark, timeout=60):
        """Monotonic time at which the last sample of the ``mark``ed audio was due (real time:
        the write time of its 20 ms block, less the samples that follow it in the block)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while mark not in self._marks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"audio {mark!r} not written within {timeout} s")
                self._lock.wait(left)
            return self._marks[mark]

    def _next_block(self):
        """The next 20 ms: queued speech, else silence."""
        out = np.zeros((self.BLOCK, self.channels), np.int16)
        filled = 0
        done = []
        while self._pending and filled < self.BLOCK:
            samples, mark = self._pending[0]
            take = min(self.BLOCK - filled, samples.shape[0])
            out[filled:filled + take] = samples[:take]
            filled += take
            if take == samples.shape[0]:
                self._pending.pop(0)
                if mark:
                    done.append((mark, self.BLOCK - filled))   # samples after its end
            else:
                self._pending[0] = (samples[take:], mark)
        return out, done

    def _feed(self):
        next_due = time.monotonic()
        while True:
            with self._lock:
                while (self._paused or self._fd is None) and not self._stop:
                    self._lock.wait()
                    next_due = time.monotonic()
                if self._stop:
                    return
                block, done = self._next_block()
                fd = self._fd
            try:
                os.write(fd, block.tobytes())
            except OSError:
                continue          # unplugged meanwhile
            now = time.monotonic()
            self.written += block.shape[0]
            if done:
                with self._lock:
                    for mark, after in done:
                        self._marks[mark] = now - after / self.rate
                    self._lock.notify_all()
            next_due += self.BLOCK / self.rate
            delay = next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)     # pacing the producer at real time, not synchronisation
            elif delay < -0.5:
                next_due = time.monotonic()


_FIELD = re.compile(r" (?=KWSD_[A-Z_]+=)")


def parse_line(line):
    """``(message, {"KWSD_EVENT": ..., ...})`` from one daemon stderr line."""
    parts = _FIELD.split(line.rstrip("\n"))
    fields = dict(p.split("=", 1) for p in parts[1:])
    return parts[0], fields


class Daemon:
    """``kwsd run`` as a subprocess, with its log lines and notify datagrams collected."""

    def __init__(self, config, folder, mic=None, args=(), env=None, watchdog_usec=1_000_000):
        self.folder = Path(folder)
        self.sock_path = self.folder / "notify.sock"
        if self.sock_path.exists():
            self.sock_path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.2)
        full_env = dict(os.environ)
        full_env.update({"NOTIFY_SOCKET": str(self.sock_path), "GPIOZERO_PIN_FACTORY": "mock",
                         "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                         "PYTHONUNBUFFERED": "1"})
        if watchdog_usec:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        full_env.pop("JOURNAL_STREAM", None)
        if mic is not None:
            full_env.update(mic.env)
        full_env.update(env or {})
        self.cond = threading.Condition()
        self.lines = []               # (message, fields, raw)
        self.notes = []               # dicts of KEY=value from each datagram
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "kwsd", "run", "--config",
                                      str(config), *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=full_env)
        self._readers = [threading.Thread(target=self._read_log, daemon=True),
                         threading.Thread(target=self._read_notify, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        self.stdout = []
        for t in self._readers:
            t.start()

    def _read_log(self):
        for raw in self.proc.stderr:
            msg, fields = parse_line(raw)
            with self.cond:
                self.lines.append((msg, fields, raw))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_stdout(self):
        for raw in self.proc.stdout:
            self.stdout.append(raw)

    def _read_notify(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if self.proc.poll() is not None:
                    return
                continue
            except OSError:
                return
            note = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            note["_mono"] = time.monotonic()
            with self.cond:
                self.notes.append(note)
                self.cond.notify_all()

    # --- waiting -----------------------------------------------------------------------
    def _wait(self, find, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = find()
                if found is not None:
                    return found
                if self.proc.poll() is not None and not any(t.is_alive()
                                                            for t in self._readers[:1]):
                    raise AssertionError(f"daemon exited ({self.proc.returncode}) before "
                                         f"{what}; log:\n{self.log_text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                         f"log:\n{self.log_text()}\nnotify: {self.notes}")
                self.cond.wait(min(left, 0.5))

    def wait_event(self, event, start=0, timeout=30, **fields):
        """Index of the first log line from ``start`` with ``KWSD_EVENT=event`` (and fields)."""
        def find():
            for i in range(start, len(self.lines)):
                f = self.lines[i][1]
                if f.get("KWSD_EVENT") == event and all(f.get(k) == v for k, v in fields.items()):
                    return i
            return None
        return self._wait(find, timeout, f"log event {event} {fields or ''}")

    def wait_notify(self, key, value=None, start=0, timeout=30, contains=None):
        """Index of the first datagram from ``start`` with ``key`` (= value / containing)."""
        def find():
            for i in range(start, len(self.notes)):
                n = self.notes[i]
                if key in n and (value is None or n[key] == value) and \
                        (contains is None or contains in n[key]):
                    return i
            return None
        return self._wait(find, timeout, f"notify {key}={value or contains or '*'}")

    def events(self, event):
        """Field dicts of every log line with ``KWSD_EVENT=event`` so far."""
        with self.cond:
            return [f for _, f, _ in self.lines if f.get("KWSD_EVENT") == event]

    def log_text(self):
        """Everything logged so far."""
        return "".join(raw for _, _, raw in self.lines)

    def mark(self):
        """``(log index, notify index)`` now, to wait for what comes after."""
        with self.cond:
            return len(self.lines), len(self.notes)

    # --- stopping ------------------------------------------------------------------------
    def signal(self, sig):
        """Send a signal to the daemon."""
        self.proc.send_signal(sig)

    def terminate(self, timeout=10):
        """SIGTERM, wait for exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            for t in self._readers:
                t.join(2)
        return code

    def close(self):
        """Kill if still running; close the socket."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._readers:
            t.join(2)
        self.sock.close()


def pin_histories(daemon):
    """``{output name: [(monotonic time, level), ...]}`` from the daemon's shutdown log."""
    out = {}
    for f in daemon.events("pin_history"):
        states = [s.split("@") for s in f["KWSD_STATES"].split(",") if s]
        out[f["KWSD_OUTPUT"]] = [(float(t), v == "1") for v, t in states]
    return out


def write_config(path, model, **sections):
    """A YAML config for the FIFO mic: 16 kHz, mock pins, quick stall detection and retries,
    plus the given sections (merged into the defaults here)."""
    import yaml
    cfg = {"model": str(model), "watch_interval_s": 0.2,
           "audio": {"device": "kwsdmic", "samplerate": RATE, "stall_timeout_s": 1.0,
                     "retry_initial_s": 0.2, "retry_max_s": 1.0},
           # a test asserts what is heard: on a busy CI machine, late windows are scored
           "detector": {"max_lag_s": 5.0},
           "gpio": {"pin_factory": "mock"}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Path(path)
