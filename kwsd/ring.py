"""A preallocated single-producer / single-consumer ring buffer of audio frames.

The producer is the PortAudio callback: :meth:`Ring.write` copies a block into sample memory
that was allocated once, advances a counter and sets an event; it allocates no sample
memory, never logs and never waits on the consumer.  When the consumer falls behind and the ring is full, the new block is
dropped and counted (``overflow_frames``), never silently.

>>> import numpy as np
>>> r = Ring(capacity=8, channels=1)
>>> r.write(np.arange(6, dtype=np.float32).reshape(-1, 1))
True
>>> r.read().ravel().tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
>>> r.write(np.zeros((5, 1), np.float32)), r.write(np.zeros((5, 1), np.float32))
(True, False)
>>> r.overflow_frames, r.overflow_blocks
(5, 1)
"""

from __future__ import annotations

import threading

import numpy as np


class Ring:
    """``capacity`` frames of ``channels`` float32 samples, allocated once.

    Thread safety: one writer thread and one reader thread.  The write position is only
    advanced by the writer and the read position only by the reader; each publishes its
    position after the data move, so neither ever sees a half-written block.
    """

    def __init__(self, capacity, channels, dtype=np.float32):
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._out = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._w = 0            # frames written in total (writer only)
        self._r = 0            # frames read in total (reader only)
        self.overflow_frames = 0
        self.overflow_blocks = 0
        self.blocks_written = 0
        self.data_ready = threading.Event()

    def available(self):
        """Frames waiting to be read."""
        return self._w - self._r

    def write(self, block):
        """Copy ``block`` (frames x channels) in; False (and counted) if it does not fit."""
        n = block.shape[0]
        w = self._w
        if n > self.capacity - (w - self._r):
            self.overflow_frames += n
            self.overflow_blocks += 1
            self.data_ready.set()
            return False
        start = w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = block[:first]
        if first < n:
            self._buf[:n - first] = block[first:]
        self._w = w + n
        self.blocks_written += 1
        self.data_ready.set()
        return True

    def read(self, max_frames=None):
        """Return the frames waiting (at most ``max_frames``) as a view valid until next read.

        The view points into a second preallocated buffer, so the writer can go on at once.
        """
        r = self._r
        n = self._w - r
        if max_frames is not None:
            n = min(n, max_frames)
        start = r % self.capacity
        first = min(n, self.capacity - start)
        out = self._out
        out[:first] = self._buf[start:start + first]
        if first < n:
            out[first:n] = self._buf[:n - first]
        self._r = r + n
        return out[:n]

    def wait(self, timeout):
        """Wait up to ``timeout`` seconds for data; True if frames are waiting."""
        if self.available() > 0:
            return True
        self.data_ready.wait(timeout)
        self.data_ready.clear()
        return self.available() > 0

    def reset(self):
        """Drop everything waiting (reader side, e.g. after the device is reopened)."""
        self._r = self._w


class History:
    """The last ``capacity`` frames written (``channels`` wide), in a buffer allocated once:
    audio kept to prime a new model's front end, or to cut a capture around a moment. Not
    locked: one thread writes, and reads happen on that thread or under the owner's lock.

    >>> h = History(4)
    >>> h.write(np.arange(6, dtype=np.float32).reshape(-1, 1))
    >>> h.last(3).ravel().tolist(), h.written, h.held
    ([3.0, 4.0, 5.0], 6, 4)
    >>> h.span(3, 5).ravel().tolist()        # frames 3 and 4 of everything written
    [3.0, 4.0]
    """

    def __init__(self, capacity, channels=1, dtype=np.float32):
        self.buf = np.zeros((max(1, int(capacity)), int(channels)), dtype)
        self.written = 0        # frames written in total

    @property
    def held(self):
        """Frames held now: the last ``min(written, capacity)``."""
        return min(self.written, self.buf.shape[0])

    def write(self, block):
        """Append ``block`` (frames x channels); the oldest frames make room."""
        cap = self.buf.shape[0]
        if block.shape[0] > cap:            # only the newest cap frames can stay
            self.written += block.shape[0] - cap
            block = block[-cap:]
        n = block.shape[0]
        pos = self.written % cap            # frame i lives at i % cap
        end = pos + n
        if end <= cap:                      # the usual case: one copy
            self.buf[pos:end] = block
        else:
            first = cap - pos
            self.buf[pos:] = block[:first]
            self.buf[:n - first] = block[first:]
        self.written += n

    def last(self, frames):
        """A copy of the newest ``frames`` frames (fewer if fewer are held)."""
        frames = min(int(frames), self.held)
        return self.span(self.written - frames, self.written)

    def span(self, start, stop):
        """A copy of frames ``start..stop`` (indices into everything written; held ones)."""
        return self.buf[np.arange(start, stop) % self.buf.shape[0]]
