"""Audio capture: a sounddevice ``InputStream`` whose callback only copies into a ring buffer.

:class:`Capture` owns a supervisor thread that opens the configured device, watches the
stream (callbacks arriving, stream still active), and when the device errors out, stops
delivering or disappears (USB unplugged), logs it, closes the stream, rescans the devices
(PortAudio is re-initialised, so a re-plugged USB microphone is found again) and retries
with exponential backoff until the device is back. It never gives up.

Each successful open is a new *epoch* (:class:`~kwsd.sources.Epoch`: ring, sample rate,
channels); the feature thread notices a new epoch and restarts its front end for the new
rate. :class:`Capture` is one of the audio sources of :mod:`kwsd.sources`.

The supervisor thread advances ``heartbeat`` on every pass of its loop, also while the
device is missing and it waits to retry: the watchdog proves the thread is alive, not that
a microphone is plugged in (the audio state is in ``STATUS=``). A stream that delivers
audio much faster than real time (a FIFO at end-of-file, a broken driver) counts as lost
and is reopened, like one that stops delivering.

A missing PortAudio library is :class:`~kwsd.errors.UnavailableError` (exit status 69), at
once: no retry can fix it.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from kwsd.errors import UnavailableError
from kwsd.ring import Ring
from kwsd.sources import Epoch

log = logging.getLogger("kwsd.capture")

#: A stream delivering more than this many seconds of audio per second is broken.
MAX_SPEED = 1.5
#: Seconds over which the delivery rate is judged.
SPEED_WINDOW_S = 2.0


def _sd():
    """The ``sounddevice`` module; UnavailableError when PortAudio cannot be loaded."""
    try:
        import sounddevice
    except OSError as err:       # sounddevice raises OSError when libportaudio is missing
        raise UnavailableError(f"cannot load the PortAudio library ({err}); install it "
                               "with `sudo apt install libportaudio2`") from None
    return sounddevice


def default_input_device():
    """PortAudio's default input device index (or -1/None when there is none)."""
    return _sd().default.device[0]


def check_portaudio():
    """Raise :class:`~kwsd.errors.UnavailableError` now if PortAudio cannot be loaded."""
    _sd()


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
        audio: the config's :class:`~kwsd.config.AudioConfig`.
        model_rate: the model's sample rate (for ``samplerate: auto``).
    """

    def __init__(self, audio, model_rate):
        self.audio = audio
        self.model_rate = model_rate
        self.blocks = 0                 # callbacks received (all epochs)
        self.frames = 0                 # frames received (all epochs)
        self.status_flags = 0           # callbacks whose PortAudio status was not clean
        self.heartbeat = 0              # supervisor loop passes (see the module docs)
        self.epoch = None
        self._sink = None
        self._stop = threading.Event()
        self._closing = False
        self._last_block = 0.0
        self._thread = threading.Thread(target=self._run, name="kwsd-capture", daemon=True)

    def start(self, sink):
        """Start the supervisor thread (it opens the device, retrying until it can)."""
        self._sink = sink
        self._thread.start()

    def stop(self, timeout=1.0):
        """Close the stream and end the supervisor thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self):
        try:
            self._supervise()
        except BaseException as err:
            self._sink.on_fatal("kwsd-capture", err)

    def _wait(self, seconds):
        """Wait ``seconds`` (True if stopped meanwhile), beating the heartbeat as it goes."""
        end = time.monotonic() + seconds
        while True:
            self.heartbeat += 1
            left = end - time.monotonic()
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, 0.25)):
                return True

    # --- the PortAudio callback: copy, count, nothing else -------------------------------
    def _callback(self, indata, frames, time_info, status):
        if self._closing:
            raise _sd().CallbackAbort
        if status:
            self.status_flags += 1
        self._ring.write(indata)
        self.blocks += 1
        self.frames += frames
        self._last_block = time.monotonic()

    # --- the supervisor -------------------------------------------------------------------
    def _open(self, number):
        sd = _sd()
        a = self.audio
        index = find_device(a.device)
        info = sd.query_devices(index)
        most = int(info["max_input_channels"])
        channels = a.channels or (1 if a.channel == "mix" else a.channel + 1)
        channels = min(channels, most) or 1
        if not a.channels and channels < most:
            try:   # some hardware opens only with all its channels (a stereo-only USB mic)
                sd.check_input_settings(device=index, channels=channels, dtype="int16")
            except Exception:
                channels = min(most, 8)
        if a.channel != "mix" and a.channel >= channels:
            raise LookupError(f"{info['name']!r} has {most} input channel(s); "
                              f"audio.channel is {a.channel}")
        rate = choose_rate(index, a.samplerate, self.model_rate, channels)
        ring = Ring(int(rate * a.ring_s), channels, dtype=np.int16)
        self._ring = ring
        self._closing = False
        stream = sd.InputStream(device=index, samplerate=rate, channels=channels,
                                dtype="int16", blocksize=max(1, int(round(rate * a.block_s))),
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
            while not done.wait(1.0):     # no heartbeat: a device that never lets go
                if self._stop.is_set():   # ends in a watchdog restart
                    return False
        return True

    def _too_fast(self, rate, since, frames_since):
        """A reason if more than MAX_SPEED x real time arrived over the last window."""
        now = time.monotonic()
        elapsed = now - since
        if elapsed < SPEED_WINDOW_S:
            return None, since, frames_since
        got = self.frames - frames_since
        if got > MAX_SPEED * rate * elapsed:
            return (f"the device delivers audio {got / rate / elapsed:.0f}x faster than "
                    "real time"), now, self.frames
        return None, now, self.frames

    def _supervise(self):
        sd = _sd()
        a = self.audio
        delay = a.retry_initial_s
        number = 0
        first = True
        self._sink.on_state("waiting", None)
        while not self._stop.is_set():
            self.heartbeat += 1
            if not first:
                try:   # rescan: a re-plugged USB device only shows up after re-initialising
                    sd._terminate()
                    sd._initialize()
                except Exception as err:
                    log.debug("PortAudio re-initialisation failed: %s", err)
            first = False
            try:
                stream, epoch = self._open(number + 1)
            except UnavailableError:
                raise
            except Exception as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                log.warning("audio device unavailable (%s); retrying in %.1f s", reason, delay,
                            extra={"kwsd_event": "audio_retry", "kwsd_retry_s": delay})
                self._sink.on_state("lost", reason)
                if self._wait(delay):
                    return
                delay = min(delay * 2, a.retry_max_s)
                continue
            number += 1
            self.epoch = epoch
            self._sink.on_epoch(epoch)
            log.info("audio: %r at %d Hz, %d channel(s)", epoch.device, epoch.rate,
                     epoch.channels, extra={"kwsd_event": "audio_open",
                                            "kwsd_device": epoch.device,
                                            "kwsd_rate": epoch.rate})
            blocks_at_open = self.blocks
            since, frames_since = time.monotonic(), self.frames
            reason, worked = None, True
            while not self._stop.wait(0.1):
                self.heartbeat += 1
                if not stream.active:
                    reason = "the stream stopped (device error or unplugged)"
                    break
                quiet = time.monotonic() - self._last_block
                if quiet > a.stall_timeout_s:
                    reason = f"no audio for {quiet:.1f} s"
                    break
                reason, since, frames_since = self._too_fast(epoch.rate, since, frames_since)
                if reason:
                    worked = False            # it never delivered real audio: back off
                    break
                if self.blocks > blocks_at_open:
                    self._sink.on_state("running", None)
            self._closing = True          # from now on the callback drops whatever comes
            if reason is None:   # stopping
                self._close(stream)
                return
            log.warning("audio device lost: %s", reason,
                        extra={"kwsd_event": "audio_lost", "kwsd_reason": reason})
            self._sink.on_state("lost", reason)
            if not self._close(stream):
                return
            if worked and self.blocks > blocks_at_open:
                delay = a.retry_initial_s         # it had worked: this loss starts fresh
            elif self._wait(delay):               # failing again at once: back off
                return
            else:
                delay = min(delay * 2, a.retry_max_s)
