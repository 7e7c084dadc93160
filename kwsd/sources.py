"""Audio sources: where the daemon's blocks come from.

Every source fills a :class:`~kwsd.ring.Ring` and tells a *sink* what happens::

    sink.on_epoch(epoch)          # a new period of uninterrupted audio (ring, rate, channels)
    sink.on_state(state, reason)  # "waiting" / "running" / "lost" (device sources)
    sink.on_end()                 # no more audio (files and arrays)
    sink.on_fatal(name, error)    # the source's own thread died: the process must end

and has ``start(sink)``, ``stop(timeout)``, ``epoch`` (the current one), ``blocks`` (blocks
delivered), ``status_flags`` (PortAudio's overflow flags), and ``heartbeat`` (a counter a
thread advances on every pass of its loop, including while it waits or retries; ``None``
for a source without a thread). Three exist:

* :class:`kwsd.capture.Capture`: a sound card through PortAudio, reopened when lost.
* :class:`FileSource`: an audio file played at real-time pace (``kwsd run --input``).
* :class:`ArraySource`: samples in memory, written when the caller says (tests, tools):
  deterministic, no thread.

>>> import numpy as np
>>> class Sink:
...     def on_epoch(self, epoch): self.epoch = epoch
...     def on_end(self): print("end")
>>> src = ArraySource(np.zeros(1600, np.int16), 16000, block_s=0.01)
>>> sink = Sink(); src.start(sink)
>>> src.feed(0.05), sink.epoch.ring.available()
(800, 800)
>>> src.feed()
end
800
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from kwsd.ring import Ring


@dataclass
class Epoch:
    """One period of uninterrupted audio: its ring, rate and channel count."""

    number: int
    ring: Ring
    rate: int
    channels: int
    device: str = ""


def as_frames(samples) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` samples as ``(n, channels)``."""
    samples = np.asarray(samples)
    return samples[:, None] if samples.ndim == 1 else samples


class ArraySource:
    """Samples in memory, written into the ring in blocks only when :meth:`feed` is called.

    Args:
        samples: ``(n,)`` or ``(n, channels)``, int16 (as a microphone delivers) or float.
        rate: their sample rate.
        block_s: block length, like ``audio.block_s``.
        ring_s: ring length; a block that does not fit is dropped and counted, as live.
    """

    heartbeat = None
    status_flags = 0

    def __init__(self, samples, rate, block_s=0.02, ring_s=4.0):
        self.samples = as_frames(samples)
        self.rate = int(rate)
        self.block = max(1, int(round(self.rate * block_s)))
        self.ring_s = ring_s
        self.position = 0
        self.blocks = 0
        self.epoch = None
        self._sink = None

    def start(self, sink):
        """Announce the epoch (nothing is written until :meth:`feed`)."""
        self._sink = sink
        ring = Ring(int(self.rate * self.ring_s), self.samples.shape[1],
                    dtype=self.samples.dtype)
        self.epoch = Epoch(1, ring, self.rate, self.samples.shape[1], "array")
        sink.on_epoch(self.epoch)
        if hasattr(sink, "on_state"):
            sink.on_state("running", None)

    def feed(self, seconds=None) -> int:
        """Write the next ``seconds`` of audio (all that is left if None); returns frames.

        After the last sample the sink's ``on_end`` is called (once).
        """
        end = self.samples.shape[0] if seconds is None else \
            min(self.samples.shape[0], self.position + int(round(seconds * self.rate)))
        start = self.position
        while self.position < end:
            block = self.samples[self.position:min(end, self.position + self.block)]
            self.epoch.ring.write(block)
            self.blocks += 1
            self.position += block.shape[0]
        if self.position >= self.samples.shape[0] and start < self.position:
            self._sink.on_end()
        return self.position - start

    def stop(self, timeout=None):
        """Nothing to stop."""


class FileSource:
    """An audio file played into a ring at real-time pace, block by block from the reader
    (memory does not grow with the file's length), then one window of silence so the last
    word is scored completely.

    Args:
        audio: an open :class:`kwsd.audiofile.AudioFile` (opened by the caller, so an
            unreadable file fails before anything starts).
        block_s, ring_s: as ``audio.block_s`` / ``audio.ring_s``.
        tail_s: seconds of silence after the file.
        clock: ``time.monotonic`` (tests may pass another).
    """

    status_flags = 0

    def __init__(self, audio, block_s=0.02, ring_s=4.0, tail_s=1.0, clock=time.monotonic):
        self.audio = audio
        self.rate = int(audio.rate)
        self.block = max(1, int(round(self.rate * block_s)))
        self.tail = int(self.rate * tail_s)
        self.clock = clock
        self.blocks = 0
        self.heartbeat = 0
        ring = Ring(int(self.rate * ring_s), audio.channels, dtype=np.float32)
        self.epoch = Epoch(1, ring, self.rate, audio.channels, "file")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="kwsd-file", daemon=True)
        self._sink = None

    def start(self, sink):
        """Start playing."""
        self._sink = sink
        sink.on_epoch(self.epoch)
        sink.on_state("running", None)
        self._thread.start()

    def stop(self, timeout=1.0):
        """Stop playing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.audio.close()

    def _blocks(self):
        yield from self.audio.blocks(self.block)
        silence = np.zeros((self.block, self.epoch.channels), np.float32)
        for start in range(0, self.tail, self.block):
            yield silence[:min(self.block, self.tail - start)]

    def _play(self):
        try:
            t0 = self.clock()
            frames = 0
            for block in self._blocks():
                frames += block.shape[0]
                due = t0 + frames / self.rate
                while not self._stop.wait(min(0.5, max(0.0, due - self.clock()))):
                    self.heartbeat += 1
                    if self.clock() >= due:
                        break
                if self._stop.is_set():
                    return
                self.epoch.ring.write(block)
                self.blocks += 1
            self._sink.on_end()
        except BaseException as err:       # e.g. NaN found mid-file: the run must end
            self._sink.on_fatal("kwsd-file", err)


def open_source(audio, profile, input_file=None):
    """The daemon's source: ``input_file`` played in real time, else the configured device.

    Args:
        audio: the :class:`~kwsd.config.AudioConfig`.
        profile: the live model's feature profile (its rate for ``samplerate: auto``, its
            window for the silence after a file).
    Raises :class:`~kwsd.errors.AudioFileError` for an unreadable file and
    :class:`~kwsd.errors.UnavailableError` when PortAudio cannot be loaded, at once.
    """
    if input_file:
        from kwsd.audiofile import AudioFile
        return FileSource(AudioFile(input_file), audio.block_s, audio.ring_s,
                          tail_s=profile.window_s)
    from kwsd.capture import Capture, check_portaudio
    check_portaudio()
    return Capture(audio, profile.sample_rate)
