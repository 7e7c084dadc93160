"""Streaming front end: blocks of device audio in, feature windows out.

Blocks of any size arrive at the device's rate (48000, 44100, 16000 ...), int16 or float32,
one channel chosen or all mixed down. They are resampled to the profile's rate by a
polyphase FIR filter that keeps its state across blocks, pre-emphasised with carried
state, cut into analysis frames, and each frame's features are computed once, when the
frame is complete. Every ``hop_s`` seconds the last window of frames is handed out.

>>> import numpy as np
>>> from kwsd.profiles import get_profile
>>> stream = FeatureStream(get_profile("logmel40"), input_rate=48000, hop_s=0.1)
>>> windows = stream.push(np.zeros(48000 * 2, dtype=np.int16))   # two seconds of silence
>>> len(windows), windows[0].time, windows[0].features.shape
(11, 1.0, (49, 40))

Pure: no I/O, no threads, no clock. Time is counted in samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .profiles import FeatureProfile


def design_lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter of ``scipy.signal.resample_poly(x, up, down)``: a Kaiser
    (beta 5) windowed sinc of ``20 * max(up, down) + 1`` taps at the upsampled rate, cut
    off at the lower Nyquist, unit gain at DC, times ``up`` (``scipy.signal.firwin``'s
    design, written with numpy so the daemon does not import scipy.signal: ~50 MB less)."""
    max_rate = max(up, down)
    numtaps = 20 * max_rate + 1
    cutoff = 1.0 / max_rate
    m = np.arange(numtaps) - (numtaps - 1) / 2
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, 5.0)
    return h / h.sum() * up


class Resampler:
    """Stateful polyphase rational resampler: blocks in, blocks out, no look-ahead.

    Output sample ``n`` is the filter applied at upsampled position ``n * down`` (as
    ``scipy.signal.upfirdn(h, x, up, down)`` computes it), evaluated only where it is
    needed: one polyphase branch of ``ceil(taps / up)`` taps per output. Feeding a signal in
    blocks of any sizes yields exactly what one call over the whole signal yields; the
    output is delayed by the filter's group delay (0.6 ms for 48 -> 16 kHz).

    >>> r = Resampler(48000, 16000)
    >>> y = np.concatenate([r.process(np.ones(100)), r.process(np.ones(200))])
    >>> y.size
    100
    """

    def __init__(self, in_rate: int, out_rate: int):
        ratio = Fraction(int(out_rate), int(in_rate))
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down == 1
        self._consumed = 0               # input samples seen
        self._produced = 0               # output samples emitted
        if self.identity:
            return
        self.taps = design_lowpass(self.up, self.down)
        per_phase = -(-self.taps.size // self.up)
        padded = np.zeros(per_phase * self.up)
        padded[:self.taps.size] = self.taps
        # branch p, tap j multiplies x[floor(n * down / up) - j] for outputs with phase p
        self._branches = padded.reshape(per_phase, self.up).T.copy()
        self._lags = np.arange(per_phase)
        self._decimation_branches = [self.taps[k::self.down] for k in range(self.down)]
        self._history = np.zeros(per_phase - 1)   # the input before this block (zeros at start)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next block (1-D float); returns the output samples now complete."""
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            return x
        buf = np.concatenate([self._history, x])
        start = self._consumed - self._history.size         # absolute index of buf[0]
        self._consumed += x.size
        total = -(-self._consumed * self.up // self.down)    # outputs whose input has arrived
        if self.up == 1:
            # plain decimation, polyphase: tap branch k convolves every down-th input
            # sample (phase k); output n sums branch k over inputs n*down - k - i*down
            count = total - self._produced
            last = self._produced * self.down - start      # buf index of the first n*down
            out = np.zeros(count)
            for k, taps in enumerate(self._decimation_branches):
                phase = buf[(last - k) % self.down::self.down]
                first = (last - k) // self.down - taps.size + 1
                out += np.convolve(phase, taps, "valid")[first:first + count]
        else:
            n = np.arange(self._produced, total)
            pos = n * self.down
            base, phase = pos // self.up, pos % self.up
            frames = buf[(base - start)[:, None] - self._lags[None, :]]
            out = np.einsum("ij,ij->i", frames, self._branches[phase])
        self._produced = total
        self._history = buf[buf.size - self._history.size:]
        return out

    def flush(self) -> np.ndarray:
        """The end of the signal: output still held back (none: this filter has no look-ahead)."""
        return np.zeros(0)


def resample_signal(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono signal exactly as a :class:`Resampler` stream would."""
    return Resampler(in_rate, out_rate).process(x)


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
    if block.ndim == 2:
        if channel in ("mix", None) and block.shape[1] > 1:
            block = block.mean(axis=1, dtype=np.float64) * _scale(block.dtype)
            return block - 1.0 if block.dtype.kind == "u" else block
        block = block[:, 0 if channel in ("mix", None) else int(channel)]
    if block.dtype.kind == "f":
        return block.astype(np.float64, copy=False)
    out = np.multiply(block, _scale(block.dtype), dtype=np.float64)
    return out - 1.0 if block.dtype.kind == "u" else out    # 8-bit WAV style unsigned


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
        self._raw = []
        self._raw_count = 0                      # input samples buffered
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

    def reset(self):
        """Forget all audio (for a device restart); the next window needs a full second."""
        self.__init__(self.profile, self.input_rate, self.hop_s, self.channel)

    def push(self, block: np.ndarray) -> list:
        """Feed one block of device audio; return the :class:`Window` objects completed."""
        x = to_float_mono(block, self.channel)
        if x.size == 0:
            return []
        self._raw.append(x)
        self._raw_count += x.size
        if self._input_consumed + self._raw_count < self._input_needed():
            return []
        return self._take(self.resampler.process(self._drain_raw()))

    def flush(self) -> list:
        """The end of the input (a file's end): return the windows completed by the audio the
        resampler still holds. The stream is then finished; :meth:`reset` starts it again."""
        x = self.resampler.process(self._drain_raw()) if self._raw else np.zeros(0)
        return self._take(np.concatenate([x, self.resampler.flush()]))

    def _drain_raw(self) -> np.ndarray:
        x = np.concatenate(self._raw) if len(self._raw) > 1 else self._raw[0]
        self._input_consumed += self._raw_count
        self._raw, self._raw_count = [], 0
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
        """Input samples that must have arrived before the next window is complete."""
        window_end = ((self._next_window_frames - self._full_frames) * self._step
                      + self._window_samples)
        r = self.resampler
        return -(-window_end * r.down // r.up)

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
