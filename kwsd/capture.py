"""Audio capture: a sounddevice ``InputStream`` whose callback only copies into a ring buffer.

:class:`Capture` owns a supervisor thread that opens the configured device, watches the
stream (callbacks arriving, stream still active), and when the device errors out, stops
delivering or disappears (USB unplugged), logs it, closes the stream, rescans the devices
(PortAudio is re-initialised, so a re-plugged USB microphone is found again) and retries
with exponential backoff until the device is back. It never gives up.

Each successful open is a new *epoch* (:class:`Epoch`: ring, sample rate, channels); the
consumer (the MFCC worker) notices a new epoch and restarts its front end for the new rate.

:class:`FileSource` plays a file into the same kind of ring at real-time pace
(``kwsd run --input FILE``), so a recording goes through the daemon's own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from kwsd.ring import Ring

log = logging.getLogger("kwsd.capture")


@dataclass
class Epoch:
    """One period of uninterrupted audio: its ring, rate and channel count."""

    number: int
    ring: Ring
    rate: int
    channels: int
    device: str = ""


def _sd():
    import sounddevice
    return sounddevice


def list_input_devices():
    """``[(index, name, max_input_channels, default_samplerate)]`` of every input device."""
    sd = _sd()
    return [(i, d["name"], d["max_input_channels"], d["default_samplerate"])
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def find_device(spec):
    """Index of the input device named by ``spec`` (index, or name substring); None = default.

    Raises LookupError when no input device matches.
    """
    devices = list_input_devices()
    if spec is None:
        sd = _sd()
        default = sd.default.device[0]
        if default is not None and default >= 0:
            return default
        if not devices:
            raise LookupError("no audio input device found")
        return devices[0][0]
    if isinstance(spec, int):
        if any(i == spec for i, *_ in devices):
            return spec
        raise LookupError(f"no input device with index {spec}")
    matches = [i for i, name, *_ in devices if spec.lower() in name.lower()]
    if not matches:
        names = ", ".join(repr(n) for _, n, *_ in devices) or "none"
        raise LookupError(f"no input device matching {spec!r} (input devices: {names})")
    exact = [i for i, name, *_ in devices if name == spec]
    return (exact or matches)[0]


def choose_rate(device, wanted, model_rate, channels):
    """The rate to open: ``wanted`` (a number), or for ``'auto'`` the model's rate where the
    device accepts it, else the device's default rate (resampled later)."""
    sd = _sd()
    if wanted != "auto":
        return int(wanted)
    try:
        sd.check_input_settings(device=device, samplerate=model_rate, channels=channels,
                                dtype="int16")
        return int(model_rate)
    except Exception:
        return int(sd.query_devices(device)["default_samplerate"])


class Capture:
    """Keeps an input stream running on the configured device; see the module docs.

    Args:
        audio: the config's ``audio`` section (device, samplerate, channels, block_s, ...).
        model_rate: the model's sample rate (for ``samplerate: auto``).
        on_epoch: called (from the supervisor thread) with each new :class:`Epoch`.
        on_state: called with ``"running"`` / ``"lost"`` and a reason, for status/logging.
    """

    def __init__(self, audio, model_rate, on_epoch, on_state=None):
        self.audio = audio
        self.model_rate = model_rate
        self.on_epoch = on_epoch
        self.on_state = on_state or (lambda state, reason: None)
        self.blocks = 0                 # callbacks received (all epochs)
        self.status_flags = 0           # callbacks whose PortAudio status was not clean
        self.epoch = None
        self._stop = threading.Event()
        self._closing = False
        self._last_block = 0.0
        self._thread = threading.Thread(target=self._supervise, name="kwsd-capture",
                                        daemon=True)

    def start(self):
        """Start the supervisor thread (it opens the device, retrying until it can)."""
        self._thread.start()

    def stop(self, timeout=1.0):
        """Close the stream and end the supervisor thread."""
        self._stop.set()
        self._thread.join(timeout)

    # --- the PortAudio callback: copy, count, nothing else -------------------------------
    def _callback(self, indata, frames, time_info, status):
        if self._closing:
            raise _sd().CallbackAbort
        if status:
            self.status_flags += 1
        self._ring.write(indata)
        self.blocks += 1
        self._last_block = time.monotonic()

    # --- the supervisor -------------------------------------------------------------------
    def _open(self, number):
        sd = _sd()
        a = self.audio
        index = find_device(a["device"])
        info = sd.query_devices(index)
        most = int(info["max_input_channels"])
        channels = a["channels"] or (1 if a["channel"] == "mix" else a["channel"] + 1)
        channels = min(channels, most) or 1
        if not a["channels"] and channels < most:
            try:   # some hardware opens only with all its channels (a stereo-only USB mic)
                sd.check_input_settings(device=index, channels=channels, dtype="int16")
            except Exception:
                channels = min(most, 8)
        if a["channel"] != "mix" and a["channel"] >= channels:
            raise LookupError(f"{info['name']!r} has {most} input channel(s); "
                              f"audio.channel is {a['channel']}")
        rate = choose_rate(index, a["samplerate"], self.model_rate, channels)
        ring = Ring(int(rate * a["ring_s"]), channels, dtype=np.int16)
        self._ring = ring
        self._closing = False
        stream = sd.InputStream(device=index, samplerate=rate, channels=channels,
                                dtype="int16", blocksize=max(1, int(round(rate * a["block_s"]))),
                                callback=self._callback)
        self._last_block = time.monotonic()
        stream.start()
        epoch = Epoch(number, ring, rate, channels, info["name"])
        return stream, epoch

    def _close(self, stream):
        """Stop the callback (it aborts at its next call), then close the stream."""
        self._closing = True
        done = threading.Event()

        def closer():
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            finally:
                done.set()

        threading.Thread(target=closer, name="kwsd-capture-close", daemon=True).start()
        if not done.wait(2.0):
            log.warning("audio device does not release its stream yet; waiting",
                        extra={"kwsd_event": "audio_close_wait"})
            while not done.wait(1.0):
                if self._stop.is_set():
                    return False
        return True

    def _supervise(self):
        sd = _sd()
        a = self.audio
        delay = a["retry_initial_s"]
        number = 0
        first = True
        while not self._stop.is_set():
            if not first:
                try:   # rescan: a re-plugged USB device only shows up after re-initialising
                    sd._terminate()
                    sd._initialize()
                except Exception as err:
                    log.debug("PortAudio re-initialisation failed: %s", err)
            first = False
            try:
                stream, epoch = self._open(number + 1)
            except Exception as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                log.warning("audio device unavailable (%s); retrying in %.1f s", reason, delay,
                            extra={"kwsd_event": "audio_retry", "kwsd_retry_s": delay})
                self.on_state("lost", reason)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, a["retry_max_s"])
                continue
            number += 1
            self.epoch = epoch
            self.on_epoch(epoch)
            log.info("audio: %r at %d Hz, %d channel(s)", epoch.device, epoch.rate,
                     epoch.channels, extra={"kwsd_event": "audio_open",
                                            "kwsd_device": epoch.device,
                                            "kwsd_rate": epoch.rate})
            blocks_at_open = self.blocks
            reason = None
            while not self._stop.wait(0.1):
                if not stream.active:
                    reason = "the stream stopped (device error or unplugged)"
                    break
                quiet = time.monotonic() - self._last_block
                if quiet > a["stall_timeout_s"]:
                    reason = f"no audio for {quiet:.1f} s"
                    break
                if self.blocks > blocks_at_open:
                    delay = a["retry_initial_s"]   # it worked: next loss starts fresh
                    self.on_state("running", None)
            self._closing = True          # from now on the callback drops whatever comes
            if reason is None:   # stopping
                self._close(stream)
                return
            log.warning("audio device lost: %s", reason,
                        extra={"kwsd_event": "audio_lost", "kwsd_reason": reason})
            self.on_state("lost", reason)
            if not self._close(stream):
                return


class FileSource:
    """Plays ``samples`` (frames x channels, float32) into a ring at real-time pace.

    Calls ``on_epoch`` once, then ``on_end`` after the last block (followed by one window of
    silence so the last word is scored completely).
    """

    def __init__(self, samples, rate, on_epoch, on_end, block_s=0.02, tail_s=1.0, ring_s=4.0):
        self.samples = np.asarray(samples, dtype=np.float32)
        if self.samples.ndim == 1:
            self.samples = self.samples[:, None]
        self.rate = int(rate)
        self.on_epoch, self.on_end = on_epoch, on_end
        self.block = max(1, int(round(rate * block_s)))
        self.tail = int(rate * tail_s)
        self.blocks = 0
        self.status_flags = 0
        ring = Ring(int(rate * ring_s), self.samples.shape[1], dtype=np.int16)
        self.epoch = Epoch(1, ring, self.rate, self.samples.shape[1], "file")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="kwsd-file", daemon=True)

    def start(self):
        """Start playing."""
        self.on_epoch(self.epoch)
        self._thread.start()

    def stop(self, timeout=1.0):
        """Stop playing."""
        self._stop.set()
        self._thread.join(timeout)

    def _play(self):
        pcm = np.clip(np.round(self.samples * 32768.0), -32768, 32767).astype(np.int16)
        pcm = np.concatenate([pcm, np.zeros((self.tail, pcm.shape[1]), np.int16)])
        t0 = time.monotonic()
        for start in range(0, pcm.shape[0], self.block):
            block = pcm[start:start + self.block]
            due = t0 + (start + block.shape[0]) / self.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.epoch.ring.write(block)
            self.blocks += 1
        self.on_end()
