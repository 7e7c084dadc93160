"""Reading audio files (WAV of any rate, width and channel count; FLAC; anything libsndfile reads).

Files are streamed in blocks, so memory does not grow with a file's length:

>>> from kwsd.audiofile import AudioFile
>>> with AudioFile("kwsd/data/demo.flac") as f:                # doctest: +SKIP
...     print(f.rate, f.channels, f.frames, round(f.duration_s, 1))
...     for block in f.blocks(1024):      # float32, shape (n, channels), n <= 1024
...         pass
16000 1 376000 23.5

Short clips (the trainer's) can be read whole:

>>> from kwsd.audiofile import read_audio
>>> samples, rate = read_audio("kwsd/data/demo.flac")      # doctest: +SKIP
>>> samples.dtype, samples.ndim                               # doctest: +SKIP
(dtype('float32'), 2)

Every problem -- missing, unreadable, not audio, empty, an implausible sample rate, NaN or
infinite samples -- raises :class:`~kwsd.errors.AudioFileError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile

from .errors import AudioFileError

#: Sample rates a real recording can have (Hz); a header outside them is corrupt.
MIN_RATE, MAX_RATE = 1000, 768000

#: Frames read from the file at a time by :meth:`AudioFile.blocks` (~0.3 MB of stereo float32).
READ_FRAMES = 32768

_READ_ERRORS = (RuntimeError, soundfile.LibsndfileError, OSError, ValueError, TypeError)


class AudioFile:
    """An open audio file, read block by block as float32 in [-1, 1].

    Opening checks the file (raising :class:`~kwsd.errors.AudioFileError`); :meth:`blocks`
    then yields ``(n, channels)`` float32 arrays, each a new array. Use it as a context
    manager, or call :meth:`close`.

    Attributes:
        path: the file's path (``str``).
        rate: sample rate in Hz.
        channels: channels per frame.
        frames: frames the header declares.
        duration_s: ``frames / rate``.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise AudioFileError(self.path, "no such file")
        if os.path.isdir(self.path):
            raise AudioFileError(self.path, "a folder, not an audio file")
        try:
            self._file = soundfile.SoundFile(self.path)
        except _READ_ERRORS as exc:
            raise AudioFileError(self.path, f"cannot read audio ({exc})") from None
        try:
            self.rate = int(self._file.samplerate)
            self.channels = int(self._file.channels)
            self.frames = int(self._file.frames)
            if not MIN_RATE <= self.rate <= MAX_RATE:
                raise AudioFileError(self.path, f"implausible sample rate {self.rate} Hz "
                                                f"(expected {MIN_RATE} to {MAX_RATE} Hz)")
            if self.channels < 1:
                raise AudioFileError(self.path, f"implausible channel count {self.channels}")
            if self.frames <= 0:
                raise AudioFileError(self.path, "the file holds no audio samples")
        except BaseException:
            self._file.close()
            raise
        self.duration_s = self.frames / self.rate

    def blocks(self, frames: int = 1024):
        """Yield the rest of the file as float32 ``(n, channels)`` arrays of ``frames``
        frames (the last may be shorter). Raises :class:`~kwsd.errors.AudioFileError` on a
        read error or NaN/infinite samples, at the block where it is found.

        The file is read ``READ_FRAMES`` at a time (libsndfile's per-call cost is paid once
        per read, not per block) and cut into new arrays of ``frames``.
        """
        frames = int(frames)
        if frames <= 0:
            raise ValueError(f"block size must be positive, not {frames}")
        per_read = max(1, READ_FRAMES // frames) * frames
        while True:
            try:
                chunk = self._file.read(per_read, dtype="float32", always_2d=True)
            except _READ_ERRORS as exc:
                raise AudioFileError(self.path, f"cannot read audio ({exc})") from None
            clean = chunk.shape[0]
            if not np.isfinite(chunk).all():         # stop at the block holding the first
                clean = int(np.argmin(np.isfinite(chunk).all(axis=1))) // frames * frames
            for start in range(0, clean, frames):
                yield chunk[start:start + frames].copy()
            if clean < chunk.shape[0]:
                raise AudioFileError(self.path, "the file holds NaN or infinite samples")
            if chunk.shape[0] < per_read:
                return

    def read(self) -> np.ndarray:
        """The rest of the file in one float32 ``(n, channels)`` array."""
        return self._read(-1)

    def _read(self, frames: int) -> np.ndarray:
        try:
            block = self._file.read(frames, dtype="float32", always_2d=True)
        except _READ_ERRORS as exc:
            raise AudioFileError(self.path, f"cannot read audio ({exc})") from None
        if not np.isfinite(block).all():
            raise AudioFileError(self.path, "the file holds NaN or infinite samples")
        return block

    def close(self):
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"AudioFile({self.path!r}, rate={self.rate}, channels={self.channels}, "
                f"frames={self.frames})")


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read a whole file as float32 in [-1, 1], shape ``(frames, channels)``, and its rate.

    For short clips; stream long files with :class:`AudioFile`. Raises
    :class:`~kwsd.errors.AudioFileError` as :class:`AudioFile` does.
    """
    with AudioFile(path) as f:
        samples = f.read()
        if samples.shape[0] == 0:
            raise AudioFileError(f.path, "the file holds no audio samples")
        return samples, f.rate


def to_mono(samples: np.ndarray, channel="mix") -> np.ndarray:
    """One channel from ``(frames, channels)`` audio: ``"mix"`` averages, an int picks one."""
    if samples.ndim == 1:
        return samples
    if channel == "mix" or channel is None:
        return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return samples[:, int(channel)]
