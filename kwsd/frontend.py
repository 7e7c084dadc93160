"""Streaming front end: blocks of device audio in, feature windows out.

Blocks of any size arrive at the device's rate (48000, 44100, 16000 ...), int16 or float32,
one channel chosen or all mixed down. They are resampled to the profile's rate by a
streaming resampler (python-soxr; none at the profile's own rate), pre-emphasised with carried
state, cut into analysis frames, and each frame's features are computed once, when the
frame is complete. Every ``hop_s`` seconds the last window of frames is handed out.

>>> import numpy as np
>>> from kwsd.profiles import get_profile
>>> stream = FeatureStream(get_profile("logmel40"), input_rate=48000, hop_s=0.1)
>>> windows = stream.push(np.zeros(48000 * 2, dtype=np.int16))   # two seconds of silence
>>> windows += stream.flush()             # the end of the input: what the resampler held back
>>> len(windows), windows[0].time, windows[-1].time, windows[0].features.shape
(11, 1.0, 2.0, (49, 40))

Pure: no I/O, no threads, no clock. Time is counted in samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .profiles import FeatureProfile


class Resampler:
    """Streaming resampler: blocks in, blocks out (python-soxr's ``ResampleStream``, HQ).

    soxr's high-quality filter is flat to 7.4 kHz and stops everything above 8 kHz when going
    to 16 kHz; its output is delay-compensated, so it holds back up to ~40 ms of output
    (more when upsampling from 8 kHz) until more input or :meth:`flush` arrives. Feeding a
    signal in blocks of any sizes, then flushing, yields exactly what one call over the whole
    signal yields (:func:`resample_signal`). Equal rates pass samples through untouched
    (soxr is not even imported). ``max_held`` is the most output samples it has held back
    after a call so far: :class:`FeatureStream` buffers that much more input before
    resampling, so a window usually costs one call (and arrives up to ~40 ms later).

    >>> r = Resampler(48000, 16000)
    >>> y = np.concatenate([r.process(np.ones(100)), r.process(np.ones(200)), r.flush()])
    >>> y.size
    100
    """

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        common = math.gcd(self.out_rate, self.in_rate)
        self.up, self.down = self.out_rate // common, self.in_rate // common
        self.identity = self.up == self.down == 1
        self.max_held = 0                   # most output samples soxr has held back so far
        self._flushed = False
        if not self.identity:
            import soxr                     # only when the rates differ
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float64",
                                               quality="HQ")

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next block (1-D float); returns the output samples now complete."""
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            return x
        y = self._stream.resample_chunk(x)
        self.max_held = max(self.max_held, self._stream.delay())
        return y

    def flush(self) -> np.ndarray:
        """The end of the signal: the output still held back (nothing on a second call).
        The stream is then finished: more input raises ``RuntimeError``."""
        if self.identity or self._flushed:
            return np.zeros(0)
        self._flushed = True
        return self._stream.resample_chunk(np.zeros(0), last=True)


def resample_signal(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono signal exactly as a :class:`Resampler` stream would (float64)."""
    r = Resampler(in_rate, out_rate)
    y = r.process(x)
    return y if r.identity else np.concatenate([y, r.flush()])


@dataclass(frozen=True)
class Window:
    """One model input's worth of features.

    ``time`` is the stream time (seconds since the first sample) at the window's end: the
    moment the daemon can decide on it.
    """

    time: float
    features: np.ndarray


def to_float_mono(block: np.ndarray, channel="mix") -> np.ndarray:
    """int16/int32/float device samples, shape ``(n,)`` or ``(n, channels)`` -> float mono."""
    block = np.asarray(block)
    kind = block.dtype.kind
    if block.ndim == 2:
        if block.shape[1] > 1 and (channel == "mix" or channel is None):
            out = block.mean(axis=1, dtype=np.float64)
            if kind != "f":
                out *= _scale(block.dtype)
                if kind == "u":
                    out -= 1.0
            return out
        block = block[:, 0 if channel == "mix" or channel is None else int(channel)]
    if kind == "f":
        return block.astype(np.float64, copy=False)
    out = np.multiply(block, _scale(block.dtype), dtype=np.float64)
    if kind == "u":                                   # 8-bit WAV style unsigned
        out -= 1.0
    return out


def _scale(dtype) -> float:
    """Full scale of integer samples -> 1.0 (float samples are taken as they are)."""
    return 1.0 if dtype.kind == "f" else 2.0 ** (1 - 8 * dtype.itemsize)


class FeatureStream:
    """Device audio blocks -> feature windows every ``hop_s`` seconds (see module docs).

    Args:
        profile: the model's :class:`~kwsd.profiles.FeatureProfile`.
        input_rate: the device's sample rate.
        hop_s: seconds between decisions; rounded to a whole number of frame steps.
        channel: ``"mix"`` to average all channels, or a channel index.
    """

    def __init__(self, profile: FeatureProfile, input_rate: int, hop_s: float = 0.1,
                 channel="mix"):
        self.profile = profile
        self.input_rate = int(input_rate)
        self.channel = channel
        self.hop_frames = max(1, int(round(hop_s / profile.frame_step_s)))
        self.hop_s = self.hop_frames * profile.frame_step_s
        self.resampler = Resampler(self.input_rate, profile.sample_rate)
        self._last_sample = 0.0                  # pre-emphasis state
        # Device audio is buffered until the next window can be completed, then resampled
        # and framed in one go: the same numbers as block by block, at a fraction of the
        # per-call cost.
        self._raw = []                           # device blocks as they came
        self._raw_kind = None                    # their (dtype, shape[1:])
        self._mono = []                          # earlier blocks (of another kind), converted
        self._raw_count = 0                      # input frames buffered
        self._input_consumed = 0                 # input samples resampled so far
        step, flen = profile.step_samples, profile.frame_samples
        self._step, self._flen = step, flen
        # Emphasised samples not yet fully used by frames (always starts at a frame start).
        self._pending = np.zeros(0)
        self._pending_start = 0                  # absolute profile-rate index of _pending[0]
        self._frames_done = 0                    # complete frames computed so far
        self._full_frames = profile.full_frames
        self._window_samples = profile.window_samples
        nkeep = profile.full_frames
        self._ring = np.zeros((nkeep, profile.ncoef), dtype=np.float32)
        self._next_window_frames = profile.full_frames    # frames needed for the next window
        self._tail_len = profile.window_samples - profile.full_frames * step
        self._raw_needed = self._input_needed()   # input to buffer before resampling again

    def reset(self):
        """Forget all audio (for a device restart); the next window needs a full second."""
        self.__init__(self.profile, self.input_rate, self.hop_s, self.channel)

    def push(self, block: np.ndarray) -> list:
        """Feed one block of device audio; return the :class:`Window` objects completed."""
        block = np.asarray(block)
        n = block.shape[0]
        if not n:
            return []
        kind = (block.dtype, block.shape[1:])
        if kind != self._raw_kind:     # blocks are kept as they come, converted per hop
            if (block.ndim == 2 and self.channel not in ("mix", None)
                    and not 0 <= int(self.channel) < block.shape[1]):
                raise ValueError(f"channel {self.channel} asked for; the audio has "
                                 f"{block.shape[1]} channel(s)")
            self._convert_raw()
            self._raw_kind = kind
        self._raw.append(block.copy())
        self._raw_count += n
        if self._raw_count < self._raw_needed:
            return []
        windows = self._take(self.resampler.process(self._drain_raw()))
        self._raw_needed = self._input_needed()
        return windows

    def flush(self) -> list:
        """The end of the input (a file's end): return the windows completed by the audio the
        resampler still holds. The stream is then finished; :meth:`reset` starts it again."""
        x = self.resampler.process(self._drain_raw()) if self._raw_count else np.zeros(0)
        return self._take(np.concatenate([x, self.resampler.flush()]))

    def _convert_raw(self):
        """Buffered device blocks (all of one dtype and shape) -> one float mono array."""
        if self._raw:
            raw = np.concatenate(self._raw) if len(self._raw) > 1 else self._raw[0]
            self._mono.append(to_float_mono(raw, self.channel))
            self._raw = []

    def _drain_raw(self) -> np.ndarray:
        self._convert_raw()
        x = np.concatenate(self._mono) if len(self._mono) > 1 else self._mono[0]
        self._input_consumed += self._raw_count
        self._mono, self._raw_count = [], 0
        return x

    def _take(self, x: np.ndarray) -> list:
        """Add resampled audio; compute the frames it completes; return the windows due."""
        if x.size == 0:
            return []
        emph = self.profile.preemphasise(x, self._last_sample)
        self._last_sample = x[-1]
        self._pending = np.concatenate([self._pending, emph]) if self._pending.size else emph
        end = self._pending_start + self._pending.size   # absolute samples available
        windows = []
        step, flen, p = self._step, self._flen, self.profile
        # Complete frames available in total: frame k spans [k*step, k*step + flen).
        available = (end - flen) // step + 1 if end >= flen else 0
        while True:
            if self._frames_done < self._next_window_frames:
                if available < self._next_window_frames:
                    break
                # the frames new since the last window, each computed once, in one call
                target = self._next_window_frames
                n = target - self._frames_done
                s0 = self._frames_done * step - self._pending_start
                self._push_frames(p.frame_features(self._pending[s0:s0 + (n - 1) * step + flen]))
                self._frames_done = target
                continue
            window_end = (self._frames_done - self._full_frames) * step + self._window_samples
            if window_end > end:              # the window's last samples are still to come
                break
            windows.append(self._make_window(window_end))
            self._next_window_frames += self.hop_frames
        drop = min(self._frames_done * step, end) - self._pending_start
        if drop > 0:
            self._pending = self._pending[drop:]
            self._pending_start += drop
        return windows

    def _input_needed(self) -> int:
        """Input samples to buffer before resampling again: those that complete the next
        window plus the most the resampler has held back so far (so one call per window
        usually suffices), or, if the resampler still holds the window's end back, as many
        more as it holds."""
        window_end = ((self._next_window_frames - self._full_frames) * self._step
                      + self._window_samples)
        r = self.resampler
        needed = -(-(window_end + r.max_held) * r.down // r.up) - self._input_consumed
        if needed <= 0:
            held = window_end - (self._pending_start + self._pending.size)
            needed = max(1, -(-held * r.down // r.up))
        return needed

    def _push_frames(self, feats: np.ndarray):
        n = feats.shape[0]
        if n >= self._ring.shape[0]:
            self._ring[:] = feats[-self._ring.shape[0]:]
        else:
            self._ring[:-n] = self._ring[n:]
            self._ring[-n:] = feats

    def _make_window(self, window_end: int) -> Window:
        feats = self._ring.copy()
        if self.profile.has_tail_frame:
            s0 = window_end - self._tail_len - self._pending_start
            tail = self.profile.frame_features(self._pending[s0:s0 + self._tail_len])[:1]
            feats = np.concatenate([feats, tail])
        return Window(time=window_end / self.profile.sample_rate, features=feats)
