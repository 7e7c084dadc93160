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
