"""Waveform augmentation and the windows each training item contributes.

All augmentation works on waveforms at the profile's rate, before features: time shift,
gain, background noise at a random SNR, speed perturbation (tempo and pitch together),
reverberation with impulse responses (files given with ``--ir``, or synthetic ones:
exponentially decaying noise with a random RT60), and, when asked for, a random
**microphone** (band limits and one boosted or cut band) and an **overdriven input** (the
window clipped as a too-hot input stage clips it). Because features are computed after
augmentation, :mod:`training.features` precomputes ``variants`` augmented windows per clip
once and caches them; every epoch then sees all of them in a new order.

Each long speech recording also yields **onset** windows, labelled negative: the window
ends 0.15-1.0 s into the utterance, after silence, a click or a breath (a third of the
false accepts in running speech fire within the first 1.6 s of an utterance).

Each keyword clip also yields **partial** windows, labelled negative: the keyword shifted so
that only its start or only its end is inside the window. In a stream a model sees every
position of every word; one trained on centred clips alone fires on word onsets. With
``cut_finals``, more of them end inside or at the end of the word's loudest stretch (its
vowel), before its final consonant: "sto" without the "p", which is what "сто", "store" and
"stoic" sound like up to there.

>>> cfg = AugmentConfig()
>>> rng = np.random.default_rng(0)
>>> clip = np.zeros(16000, np.float32); clip[6000:10000] = 0.3
>>> wins = keyword_windows(clip, 16000, 16000, rng, cfg, NoiseBank([]), [])
>>> sorted(set(w.kind for w in wins))
['keyword', 'partial']
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import scipy.signal

from .data import fit_window, frame_db, speech_extent


@dataclasses.dataclass
class AugmentConfig:
    """Every knob of augmentation and window sampling (recorded in the report and model)."""

    variants: int = 8                  # augmented windows per keyword clip (training split)
    word_variants: int = 2             # augmented windows per other-word clip
    partials: int = 4                  # partial-keyword negatives per keyword clip
    partial_head: tuple = (0.1, 0.4)   # visible fraction of the word when only its start is in
    partial_tail: tuple = (0.6, 0.9)   # cut point when only its end is in
    cut_finals: int = 0                # negatives per keyword clip cut before its final consonant
    gain_db: tuple = (-12.0, 6.0)
    noise_prob: float = 0.8
    snr_db: tuple = (0.0, 25.0)
    speed_prob: float = 0.5
    speed: tuple = (0.88, 1.12)
    ir_prob: float = 0.3
    rt60_s: tuple = (0.1, 0.6)
    mic_prob: float = 0.0             # chance that a window is heard through a random microphone
    overdrive_prob: float = 0.0       # chance that a window is clipped by an overdriven input
    overdrive: tuple = (1.5, 6.0)     # how far past full scale its peak is driven
    long_windows_per_s: float = 2.0   # negatives cut from long recordings, per second of audio
    noise_windows_per_s: float = 2.0  # negatives cut from noise recordings
    eval_hop_s: float = 1.0           # windows of long/noise audio in validation/testing
    quiet_share: float = 0.15         # share of noise windows turned down to near silence
    onsets: int = 2                   # utterance-onset negatives per long speech recording
    onset_s: tuple = (0.15, 1.0)      # how much of the utterance such a window holds

    def to_dict(self) -> dict:
        """JSON-ready (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the key."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown augmentation setting(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclasses.dataclass
class Window:
    """One training window: samples, label (1 = keyword) and kind (for reports)."""

    samples: np.ndarray
    label: int
    kind: str


class NoiseBank:
    """Noise recordings to mix into windows (training segments only)."""

    def __init__(self, signals: list[np.ndarray]):
        self.signals = [s for s in signals if s is not None and len(s) > 0]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray | None:
        """``n`` samples of a random noise at a random offset (looped if short), or None."""
        if not self.signals:
            return None
        noise = self.signals[rng.integers(len(self.signals))]
        if len(noise) < n:
            noise = np.tile(noise, n // len(noise) + 1)
        start = int(rng.integers(0, len(noise) - n + 1))
        return noise[start:start + n]


def rms(x: np.ndarray) -> float:
    """Root mean square (0 for empty input)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float,
               reference: float | None = None) -> np.ndarray:
    """``signal + noise`` with the noise scaled to ``snr_db`` below ``reference`` (default:
    the signal's RMS).

    >>> s = np.ones(100, np.float32); n = np.ones(100, np.float32)
    >>> round(float(mix_at_snr(s, n, 20.0)[0]), 3)
    1.1
    """
    ref = rms(signal) if reference is None else reference
    level = rms(noise)
    if level == 0 or ref == 0:
        return signal
    return (signal + noise * (ref / level) * 10 ** (-snr_db / 20)).astype(np.float32)


def change_speed(signal: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """Play ``signal`` ``factor`` times faster (tempo and pitch together), via the core's
    resampler: resampling from ``rate`` to ``rate / factor`` and playing back at ``rate``.
    """
    from kwsd.frontend import resample_signal

    frac = Fraction(rate, 1) / Fraction(factor).limit_denominator(100)
    out_rate = int(round(float(frac)))
    if out_rate == rate:
        return signal
    return np.asarray(resample_signal(signal, rate, out_rate), dtype=np.float32)


def synthetic_ir(rng: np.random.Generator, rate: int, rt60_s: float) -> np.ndarray:
    """A simple room impulse response: direct path plus exponentially decaying noise whose
    energy falls by 60 dB in ``rt60_s`` seconds."""
    n = max(2, int(rt60_s * rate))
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)
    tail *= 10 ** (rng.uniform(-12, -3) / 20) / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    ir = tail.astype(np.float32)
    ir[0] = 1.0
    return ir


def reverberate(signal: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response, keeping the length and the RMS level."""
    wet = scipy.signal.fftconvolve(signal, ir)[:len(signal)].astype(np.float32)
    level = rms(wet)
    return wet * (rms(signal) / level) if level > 0 else wet


def microphone(signal: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """``signal`` as a random cheap microphone hears it: a 2nd-order high-pass at 50-400 Hz, a
    2nd-order low-pass at 3.4-7.5 kHz (below Nyquist), and one octave-wide band around
    0.3-4 kHz boosted or cut by up to 6 dB; the RMS level is kept.

    >>> x = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    >>> y = microphone(x, np.random.default_rng(2), 16000)
    >>> y.shape == x.shape and abs(rms(y) - rms(x)) < 1e-3
    True
    """
    nyq = rate / 2
    sos = [scipy.signal.butter(2, rng.uniform(50, 400), btype="highpass", fs=rate, output="sos"),
           scipy.signal.butter(2, min(rng.uniform(3400, 7500), 0.9 * nyq), btype="lowpass",
                               fs=rate, output="sos")]
    y = scipy.signal.sosfilt(np.concatenate(sos), signal)
    centre = rng.uniform(300, min(4000, 0.6 * nyq))
    band = scipy.signal.butter(1, [centre / np.sqrt(2), centre * np.sqrt(2)], btype="band",
                               fs=rate, output="sos")
    y = y + (10 ** (rng.uniform(-6, 6) / 20) - 1) * scipy.signal.sosfilt(band, y)
    level = rms(y)
    return (y * (rms(signal) / level) if level > 0 else y).astype(np.float32)


def overdrive(signal: np.ndarray, drive: float) -> np.ndarray:
    """``signal`` clipped as an input stage clips it when its peak is driven ``drive`` times
    past full scale, then turned back down by the same gain (what was not clipped keeps its
    level; the new peak is the old one / ``drive``).

    >>> overdrive(np.array([0.1, -0.5, 0.25], np.float32), 2.0).tolist()
    [0.10000000149011612, -0.25, 0.25]
    """
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    if peak == 0:
        return signal
    k = drive / peak
    return (np.clip(signal * k, -1.0, 1.0) / k).astype(np.float32)


def _finish(window, rng, cfg, noise_bank, reference, rate, noisy=True):
    """Gain, noise, then (when configured) the microphone and overdrive: shared by every kind
    of window, so that neither class can be told by them; clipped to [-1, 1]."""
    gain = 10 ** (rng.uniform(*cfg.gain_db) / 20)
    window = window * gain
    reference = (reference or rms(window)) * gain
    if noisy and rng.random() < cfg.noise_prob:
        noise = noise_bank.sample(rng, len(window))
        if noise is not None:
            window = mix_at_snr(window, noise, rng.uniform(*cfg.snr_db), reference)
    if cfg.mic_prob and rng.random() < cfg.mic_prob:
        window = microphone(window, rng, rate)
    if cfg.overdrive_prob and rng.random() < cfg.overdrive_prob:
        window = overdrive(window, rng.uniform(*cfg.overdrive))
    return np.clip(window, -1.0, 1.0).astype(np.float32)


def _colour(clip, rate, rng, cfg, irs):
    """Speed and reverberation, applied to a whole clip before it is placed in a window."""
    if rng.random() < cfg.speed_prob:
        clip = change_speed(clip, rng.uniform(*cfg.speed), rate)
    if rng.random() < cfg.ir_prob:
        ir = irs[rng.integers(len(irs))] if irs else synthetic_ir(rng, rate, rng.uniform(*cfg.rt60_s))
        clip = reverberate(clip, ir)
    return clip


def _place(clip, n, rng, extent, lo_visible=1.0):
    """Window start (in clip samples) putting the loud part fully inside (or, with
    ``lo_visible`` < 1, at least that fraction of it inside)."""
    s0, s1 = extent
    length = s1 - s0
    if length >= n:  # a word longer than the window: centre on its loud part
        return s0 + (length - n) // 2
    slack = int(length * (1.0 - lo_visible))
    lo, hi = s1 - n - slack, s0 + slack
    return int(rng.integers(lo, hi + 1))


def keyword_windows(clip, rate, n, rng, cfg: AugmentConfig, noise_bank: NoiseBank,
                    irs: list) -> list[Window]:
    """``cfg.variants`` shifted and augmented keyword windows (label 1) plus ``cfg.partials``
    windows showing only the keyword's start or end (label 0)."""
    out = []
    for _ in range(cfg.variants):
        c = _colour(clip, rate, rng, cfg, irs)
        ext = speech_extent(c, rate)
        w0 = _place(c, n, rng, ext)
        out.append(Window(_finish(fit_window(c, n, -w0), rng, cfg, noise_bank,
                                  rms(c[ext[0]:ext[1]]), rate), 1, "keyword"))
    for i in range(cfg.partials):
        c = _colour(clip, rate, rng, cfg, irs)
        s0, s1 = speech_extent(c, rate)
        length = s1 - s0
        if i % 2 == 0:   # only the start is inside: the window ends inside the word
            w0 = s0 + int(rng.uniform(*cfg.partial_head) * length) - n
        else:            # only the end is inside: the window starts inside the word
            w0 = s0 + int(rng.uniform(*cfg.partial_tail) * length)
        out.append(Window(_finish(fit_window(c, n, -w0), rng, cfg, noise_bank,
                                  rms(c[s0:s1]), rate), 0, "partial"))
    for _ in range(cfg.cut_finals):
        c = _colour(clip, rate, rng, cfg, irs)
        s0, s1 = speech_extent(c, rate)
        v = loud_end(c, rate, s0, s1)
        end = int(rng.integers(s0 + (v - s0) // 2, v + 1))   # inside the vowel, up to its end
        out.append(Window(_finish(fit_window(c, n, n - end), rng, cfg, noise_bank,
                                  rms(c[s0:s1]), rate), 0, "partial"))
    return out


def loud_end(signal, rate, s0, s1, drop_db=15.0):
    """One past the last 10 ms frame of ``signal[s0:s1]`` within ``drop_db`` of its loudest:
    where a word's vowel ends, before a weaker final consonant.

    >>> x = np.zeros(16000, np.float32); x[1600:3200] = 0.05; x[3200:8000] = 0.5; x[8000:8800] = 0.02
    >>> loud_end(x, 16000, 1600, 8800)
    8000
    """
    energy, hop = frame_db(signal[s0:s1], rate)
    if energy.size == 0:
        return s1
    return int(s0 + (np.nonzero(energy >= energy.max() - drop_db)[0][-1] + 1) * hop)


def word_windows(clip, rate, n, rng, cfg: AugmentConfig, noise_bank: NoiseBank,
                 irs: list) -> list[Window]:
    """``cfg.word_variants`` augmented windows of another word (label 0): half with the word
    fully inside, half anywhere at least partly visible."""
    out = []
    for i in range(cfg.word_variants):
        c = _colour(clip, rate, rng, cfg, irs)
        ext = speech_extent(c, rate)
        w0 = _place(c, n, rng, ext, lo_visible=1.0 if i % 2 == 0 else 0.3)
        out.append(Window(_finish(fit_window(c, n, -w0), rng, cfg, noise_bank,
                                  rms(c[ext[0]:ext[1]]), rate), 0, "word"))
    return out


def long_windows(signal, rate, n, rng, cfg: AugmentConfig, noise_bank: NoiseBank,
                 kind: str = "long") -> list[Window]:
    """Negatives cut at random offsets from a long recording (``long_windows_per_s`` or
    ``noise_windows_per_s`` per second of audio), with gain and (for speech) noise;
    a share of noise windows is turned down to near silence."""
    per_s = cfg.noise_windows_per_s if kind == "noise" else cfg.long_windows_per_s
    count = max(1, int(math.ceil(len(signal) / rate * per_s)))
    out = []
    for _ in range(count):
        w0 = int(rng.integers(min(0, len(signal) - n), max(1, len(signal) - n + 1)))
        window = fit_window(signal, n, -w0)
        if kind == "noise" and rng.random() < cfg.quiet_share:
            window = window * 10 ** (rng.uniform(-60, -30) / 20)
            out.append(Window(window.astype(np.float32), 0, "silence"))
            continue
        out.append(Window(_finish(window, rng, cfg, noise_bank, None, rate,
                                  noisy=kind != "noise"),
                          0, kind))
    if kind == "long" and cfg.onsets:
        out += onset_windows(signal, rate, n, rng, cfg, noise_bank)
    return out


def onset_noise(rng: np.random.Generator, rate: int, level: float) -> np.ndarray:
    """A click (2-10 ms decaying burst) or a breath (0.15-0.4 s of soft band-limited noise)
    at about ``level`` RMS: what often comes just before someone starts talking."""
    if rng.random() < 0.5:
        n = int(rng.uniform(0.002, 0.01) * rate)
        burst = rng.standard_normal(n) * np.exp(-np.arange(n) / max(1, n / 4))
        gain = level * 10 ** (rng.uniform(0, 12) / 20)
    else:
        n = int(rng.uniform(0.15, 0.4) * rate)
        lo, hi = sorted(rng.uniform(300, 4000, 2))
        sos = scipy.signal.butter(2, [lo, max(hi, lo + 400)], btype="band", fs=rate, output="sos")
        burst = scipy.signal.sosfilt(sos, rng.standard_normal(n)) * np.hanning(n)
        gain = level * 10 ** (rng.uniform(-25, -12) / 20)
    return (burst * gain / (rms(burst) + 1e-12)).astype(np.float32)


def onset_windows(signal, rate, n, rng, cfg: AugmentConfig, noise_bank: NoiseBank
                  ) -> list[Window]:
    """``cfg.onsets`` negatives showing the start of the recording's speech: the window
    ends ``cfg.onset_s`` into it; before it silence, or (two times in three) a click or a
    breath a little before the first word."""
    s0, s1 = speech_extent(signal, rate)
    if s1 - s0 < int(cfg.onset_s[0] * rate):
        return []
    level = rms(signal[s0:s1])
    out = []
    for _ in range(cfg.onsets):
        end = s0 + int(rng.uniform(*cfg.onset_s) * rate)
        window = fit_window(signal[:min(end, len(signal))], n, n - min(end, len(signal)))
        first = n - (min(end, len(signal)) - s0)          # where the speech starts in it
        window[:max(0, first)] *= 10 ** (rng.uniform(-40, -10) / 20)
        if rng.random() < 2 / 3 and first > 0:
            burst = onset_noise(rng, rate, level)
            at = first - int(rng.uniform(0.05, 0.4) * rate) - len(burst)
            lo = max(0, at)
            if lo < first:
                window[lo:lo + len(burst[lo - at:])] += burst[lo - at:][:n - lo]
        out.append(Window(_finish(window, rng, cfg, noise_bank, level, rate), 0, "long"))
    return out


def plain_windows(signal, rate, n, role: str, hop_s: float) -> list[Window]:
    """Unaugmented windows for validation/testing: a clip centred on its loud part; a long
    recording cut every ``hop_s`` seconds."""
    if role in ("keyword", "word"):
        s0, s1 = speech_extent(signal, rate)
        w0 = (s0 + s1) // 2 - n // 2
        return [Window(fit_window(signal, n, -w0), int(role == "keyword"), role)]
    hop = max(1, int(hop_s * rate))
    starts = range(0, max(1, len(signal) - n + 1), hop)
    return [Window(fit_window(signal[s:s + n], n, 0), 0, role) for s in starts]
