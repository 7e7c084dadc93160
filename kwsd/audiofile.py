"""Reading audio files (WAV of any rate, width and channel count; FLAC; anything libsndfile reads).

>>> from kwsd.audiofile import read_audio
>>> samples, rate = read_audio("kwsd/data/demo.flac")      # doctest: +SKIP
>>> samples.dtype, samples.ndim                               # doctest: +SKIP
(dtype('float32'), 2)
"""

from __future__ import annotations

import os

import numpy as np
import soundfile

from .errors import AudioFileError


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read a whole file as float32 in [-1, 1], shape ``(frames, channels)``, and its rate.

    Raises :class:`~kwsd.errors.AudioFileError` naming the file and the reason when the file
    is missing, unreadable, not audio, corrupt or empty.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioFileError(path, "no such file")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError, ValueError) as exc:
        raise AudioFileError(path, f"cannot read audio ({exc})") from None
    if samples.shape[0] == 0:
        raise AudioFileError(path, "the file holds no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioFileError(path, "the file holds NaN or infinite samples")
    return samples, int(rate)


def to_mono(samples: np.ndarray, channel="mix") -> np.ndarray:
    """One channel from ``(frames, channels)`` audio: ``"mix"`` averages, an int picks one."""
    if samples.ndim == 1:
        return samples
    if channel == "mix" or channel is None:
        return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return samples[:, int(channel)]
