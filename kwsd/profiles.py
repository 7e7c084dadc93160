"""Feature profiles: everything that defines a model's input, in one place.

A :class:`FeatureProfile` names the sample rate, window, analysis frames, FFT, filters,
coefficients, window function, pre-emphasis, lifter, energy, MFCC or log-mel, normalisation
and tensor layout of a model's input. The daemon, ``kwsd detect`` and the trainer all compute
features through this module (batch, here) or :mod:`kwsd.frontend` (streaming, built on the
same per-frame function), so a model sees the same numbers in training and on the Pi.

>>> from kwsd.profiles import get_profile
>>> p = get_profile("logmel40")
>>> p.sample_rate, p.frames_per_window, p.input_shape
(16000, 49, (1, 49, 40, 1))
>>> import numpy as np
>>> p.features(np.zeros(16000, dtype=np.float32)).shape
(49, 40)

The numbers are python_speech_features' ``fbank``/``mfcc`` (bit for bit: the framing, power
spectrum and mel filterbank below follow its rules, tests/test_frontend.py compares them).
Only an MFCC profile (the tutorial's) imports python_speech_features and scipy, on first use:
the log-mel path needs numpy alone. Pre-emphasis is applied to the continuous signal before
framing, not per frame, so streamed features equal batch features exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

_WINDOWS = {
    "hann": np.hanning,
    "hamming": np.hamming,
    "rect": lambda n: np.ones((n,)),
}
_KINDS = ("mfcc", "logmel")
_LAYOUTS = ("time_coef", "coef_time")
_NORMALISATIONS = ("none",)


@dataclass(frozen=True)
class FeatureProfile:
    """The full recipe of a model's input features.

    Attributes:
        name: a short identifier stored in model metadata.
        sample_rate: rate (Hz) the audio is resampled to before framing.
        window_s: seconds of audio the model sees per decision.
        frame_len_s, frame_step_s: analysis frame length and step (seconds).
        nfft: FFT size; nfilt: mel filters; ncoef: coefficients per frame
            (cepstra for ``mfcc``; must equal ``nfilt`` for ``logmel``).
        kind: ``"mfcc"`` (python_speech_features.mfcc) or ``"logmel"`` (log of its fbank).
        winfunc: ``"hann"`` | ``"hamming"`` | ``"rect"`` analysis window.
        preemph: pre-emphasis coefficient (0 = none).
        lifter: cepstral lifter (``ceplifter``; 0 = none). MFCC only.
        append_energy: replace c0 with log frame energy (``appendEnergy``). MFCC only.
        lowfreq, highfreq: filterbank edges in Hz (``highfreq`` 0 = Nyquist).
        normalisation: ``"none"``; kwsd models carry their own normalisation layer.
        layout: ``"time_coef"`` (input ``[1, frames, coefs, 1]``) or ``"coef_time"``
            (``[1, coefs, frames, 1]``, the tutorial's transposed MFCC matrix).
        pad_tail: add one more frame at the window's end, zero-padded past the window, as
            python_speech_features does when frames do not tile the window (the tutorial).
    """

    name: str
    sample_rate: int
    window_s: float
    frame_len_s: float
    frame_step_s: float
    nfft: int
    nfilt: int
    ncoef: int
    kind: str = "logmel"
    winfunc: str = "hamming"
    preemph: float = 0.97
    lifter: int = 0
    append_energy: bool = False
    lowfreq: float = 0.0
    highfreq: float = 0.0
    normalisation: str = "none"
    layout: str = "time_coef"
    pad_tail: bool = False

    def __post_init__(self):
        problems = []
        if self.kind not in _KINDS:
            problems.append(f"kind must be one of {_KINDS}, not {self.kind!r}")
        if self.winfunc not in _WINDOWS:
            problems.append(f"winfunc must be one of {tuple(_WINDOWS)}, not {self.winfunc!r}")
        if self.layout not in _LAYOUTS:
            problems.append(f"layout must be one of {_LAYOUTS}, not {self.layout!r}")
        if self.normalisation not in _NORMALISATIONS:
            problems.append(f"normalisation must be one of {_NORMALISATIONS}")
        if self.kind == "logmel" and self.ncoef != self.nfilt:
            problems.append("a logmel profile has ncoef == nfilt")
        if self.nfft < self.frame_samples:
            problems.append(f"nfft {self.nfft} is shorter than a frame ({self.frame_samples})")
        if self.window_samples < self.frame_samples:
            problems.append("the window is shorter than one frame")
        if problems:
            raise ValueError(f"feature profile {self.name!r}: " + "; ".join(problems))

    # -- sizes ------------------------------------------------------------------------------
    @functools.cached_property
    def window_samples(self) -> int:
        """Samples per window at :attr:`sample_rate`."""
        return int(round(self.window_s * self.sample_rate))

    @functools.cached_property
    def frame_samples(self) -> int:
        """Samples per analysis frame."""
        return int(round(self.frame_len_s * self.sample_rate))

    @functools.cached_property
    def step_samples(self) -> int:
        """Samples between the starts of consecutive frames."""
        return int(round(self.frame_step_s * self.sample_rate))

    @functools.cached_property
    def full_frames(self) -> int:
        """Frames lying wholly inside one window."""
        return 1 + (self.window_samples - self.frame_samples) // self.step_samples

    @functools.cached_property
    def frames_per_window(self) -> int:
        """Frames in the model's input (``full_frames`` plus the padded tail frame, if any)."""
        return self.full_frames + (1 if self.has_tail_frame else 0)

    @functools.cached_property
    def has_tail_frame(self) -> bool:
        """True when the profile appends a zero-padded frame at the window's end."""
        covered = (self.full_frames - 1) * self.step_samples + self.frame_samples
        return self.pad_tail and covered < self.window_samples

    @functools.cached_property
    def input_shape(self) -> tuple:
        """The model input tensor's shape, batch of one."""
        if self.layout == "coef_time":
            return (1, self.ncoef, self.frames_per_window, 1)
        return (1, self.frames_per_window, self.ncoef, 1)

    # -- computing --------------------------------------------------------------------------
    def preemphasise(self, x: np.ndarray, previous: float = 0.0) -> np.ndarray:
        """``y[n] = x[n] - preemph * x[n-1]``, with ``previous`` the sample before ``x[0]``
        (python_speech_features' ``preemphasis`` with state carried across blocks)."""
        if not self.preemph:
            return x
        y = np.empty_like(x)
        y[0] = x[0] - self.preemph * previous
        np.subtract(x[1:], self.preemph * x[:-1], out=y[1:])
        return y

    def frame_features(self, emphasised: np.ndarray) -> np.ndarray:
        """Features of every frame that starts at a multiple of the step in ``emphasised``.

        This is python_speech_features' ``mfcc``/``fbank`` with pre-emphasis taken out (it is
        applied to the stream instead) and the mel filterbank built once per profile rather
        than on every call. ``emphasised`` is audio at :attr:`sample_rate` after pre-emphasis. A final frame
        that runs past the end is zero-padded (python_speech_features' rule); callers that
        want only complete frames pass exactly ``(n - 1) * step + frame`` samples.
        Returns float32 ``[frames, ncoef]``.
        """
        frames = frame_signal(emphasised, self.frame_samples, self.step_samples)
        frames *= self._window
        pspec = power_spectrum(frames, self.nfft)
        feats = pspec @ self._filterbank_t
        feats[feats == 0] = _EPS
        np.log(feats, out=feats)
        if self.kind == "mfcc":
            dct, lifter = _mfcc_functions()
            feats = lifter(dct(feats, type=2, axis=1, norm="ortho")[:, :self.ncoef], self.lifter)
            if self.append_energy:
                energy = pspec.sum(axis=1)
                feats[:, 0] = np.log(np.where(energy == 0, _EPS, energy))
        return feats.astype(np.float32, copy=False)

    @functools.cached_property
    def _window(self) -> np.ndarray:
        return _WINDOWS[self.winfunc](self.frame_samples)

    @functools.cached_property
    def _filterbank_t(self) -> np.ndarray:
        """The mel filterbank, transposed: ``[nfft // 2 + 1, nfilt]``."""
        return mel_filterbank(self.nfilt, self.nfft, self.sample_rate, self.lowfreq,
                              self.highfreq or self.sample_rate / 2).T

    def features(self, signal: np.ndarray) -> np.ndarray:
        """Batch features of one window of mono audio at :attr:`sample_rate`.

        A signal shorter than the window is zero-padded at the end (the corpus's clips are
        up to one second); a longer one is cropped to its last window. Returns float32
        ``[frames_per_window, ncoef]``: the same numbers the streaming front end produces
        for a window ending at the signal's end.
        """
        signal = np.asarray(signal, dtype=np.float64).reshape(-1)
        n = self.window_samples
        if signal.size < n:
            signal = np.concatenate([signal, np.zeros(n - signal.size)])
        emph = self.preemphasise(signal)
        # Pre-emphasis is a property of the stream: the sample before the window counts.
        window = emph[-n:]
        covered = (self.full_frames - 1) * self.step_samples + self.frame_samples
        full = self.frame_features(window[:covered])
        if self.has_tail_frame:
            tail_start = self.full_frames * self.step_samples
            tail = self.frame_features(window[tail_start:])[:1]
            full = np.concatenate([full, tail])
        return full

    def to_tensor(self, features: np.ndarray) -> np.ndarray:
        """``[frames, coefs]`` features -> the model's float32 input tensor (layout applied)."""
        if self.layout == "coef_time":
            features = features.T
        return np.ascontiguousarray(features, dtype=np.float32).reshape(self.input_shape)

    # -- (de)serialising --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict for model metadata and reports."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureProfile":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown feature-profile keys: {', '.join(unknown)}")
        return cls(**d)


PROFILES = {
    # The tutorial's exact input (../shared/peers/seed/README.md): one second at 8 kHz,
    # 16 MFCCs x 16 frames of 256 ms every 50 ms (the last frame zero-padded), transposed.
    "tutorial-mfcc16": FeatureProfile(
        name="tutorial-mfcc16", sample_rate=8000, window_s=1.0,
        frame_len_s=0.256, frame_step_s=0.050, nfft=2048, nfilt=26, ncoef=16,
        kind="mfcc", winfunc="hann", preemph=0.0, lifter=0, append_energy=False,
        layout="coef_time", pad_tail=True,
    ),
    # kwsd's own models: 40 log-mel energies of 30 ms frames every 20 ms at 16 kHz,
    # one-second window (49 frames). Finer time resolution than the tutorial's 256 ms
    # frames, which ../shared/notes/measurements.md found clearly better.
    "logmel40": FeatureProfile(
        name="logmel40", sample_rate=16000, window_s=1.0,
        frame_len_s=0.030, frame_step_s=0.020, nfft=512, nfilt=40, ncoef=40,
        kind="logmel", winfunc="hamming", preemph=0.97, lowfreq=20.0, highfreq=7600.0,
        layout="time_coef",
    ),
}
# logmel40 over a 1.5 s window (74 frames): half a second more of what came before the
# decision, to hear that an "st" + vowel syllable sits inside running speech (issue 10;
# cross-validated in the model card, "A 1.5 s window").
PROFILES["logmel40-1500ms"] = dataclasses.replace(PROFILES["logmel40"], name="logmel40-1500ms",
                                                  window_s=1.5)


_EPS = np.finfo(float).eps


def frame_signal(x: np.ndarray, frame_len: int, step: int) -> np.ndarray:
    """A new ``[frames, frame_len]`` array of the frames starting every ``step`` samples, the
    last zero-padded if it runs past the end (python_speech_features' ``sigproc.framesig``,
    without a window)."""
    n = x.shape[0]
    count = 1 if n <= frame_len else 1 + -(-(n - frame_len) // step)
    padded_len = (count - 1) * step + frame_len
    if padded_len > n:
        x = np.concatenate([x, np.zeros(padded_len - n)])
    return x[_frame_index(count, frame_len, step)]


@functools.lru_cache(maxsize=64)
def _frame_index(count: int, frame_len: int, step: int) -> np.ndarray:
    return np.arange(frame_len)[None, :] + np.arange(0, count * step, step)[:, None]


def power_spectrum(frames: np.ndarray, nfft: int) -> np.ndarray:
    """``|rfft(frame, nfft)|**2 / nfft`` per frame (python_speech_features' ``powspec``)."""
    pspec = np.absolute(np.fft.rfft(frames, nfft))
    np.square(pspec, out=pspec)
    pspec *= 1.0 / nfft
    return pspec


def mel_filterbank(nfilt: int, nfft: int, rate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    """``[nfilt, nfft // 2 + 1]`` triangular mel filters (python_speech_features'
    ``get_filterbanks``: filter edges on whole FFT bins, peaks of 1)."""
    low, high = (2595 * np.log10(1 + f / 700.) for f in (lowfreq, highfreq))
    mels = np.linspace(low, high, nfilt + 2)
    edges = np.floor((nfft + 1) * (700 * (10 ** (mels / 2595.0) - 1)) / rate)
    bank = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(nfilt):
        left, centre, right = edges[j], edges[j + 1], edges[j + 2]
        for i in range(int(left), int(centre)):
            bank[j, i] = (i - left) / (centre - left)
        for i in range(int(centre), int(right)):
            bank[j, i] = (right - i) / (right - centre)
    return bank


@functools.lru_cache(maxsize=1)
def _mfcc_functions():
    """``(dct, lifter)`` for MFCC profiles, imported on first use: python_speech_features
    brings scipy.fftpack (~30 MB), which the log-mel path never needs."""
    from python_speech_features.base import lifter
    from scipy.fftpack import dct
    return dct, lifter


def get_profile(name: str) -> FeatureProfile:
    """The named built-in profile; ``KeyError`` lists the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown feature profile {name!r}; known: {', '.join(PROFILES)}") from None


def profile_for_input_shape(shape) -> FeatureProfile | None:
    """The built-in profile whose input tensor has this shape, or None (for models
    without metadata, such as the tutorial's)."""
    shape = tuple(int(s) for s in shape)
    for profile in PROFILES.values():
        if profile.input_shape == shape or profile.input_shape[:3] == shape:
            return profile
    return None
