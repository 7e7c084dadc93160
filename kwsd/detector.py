"""From per-hop model scores to detections: smoothing, threshold, refractory period.

Pure: no I/O, no threads, no clock (the caller passes each score's stream time).

>>> d = Detector(DetectorSettings(threshold=0.8, smoothing=2, refractory_s=1.0))
>>> [d.update(t / 10, s) for t, s in enumerate([0.1, 0.9, 0.95, 0.99, 0.2])]
... # doctest: +NORMALIZE_WHITESPACE
[None, None, Detection(time=0.2, score=0.925, keyword='stop'), None, None]

A word fires once: after a detection the detector stays quiet for ``refractory_s`` seconds
and until the smoothed score has dropped below the threshold again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DetectorSettings:
    """How scores become detections.

    Attributes:
        threshold: a smoothed score at or above this fires (0 < threshold <= 1).
        smoothing: the smoothed score is the mean of the last ``smoothing`` hop scores.
        refractory_s: seconds after a detection during which nothing fires.
        hop_s: seconds between decisions (the front end rounds it to whole frames).
    """

    threshold: float = 0.5
    smoothing: int = 3
    refractory_s: float = 1.0
    hop_s: float = 0.1

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold!r}")
        if int(self.smoothing) != self.smoothing or self.smoothing < 1:
            raise ValueError(f"smoothing must be a whole number of hops >= 1, not {self.smoothing!r}")
        if self.refractory_s < 0:
            raise ValueError(f"refractory_s must be >= 0, not {self.refractory_s!r}")
        if not 0.0 < self.hop_s <= 1.0:
            raise ValueError(f"hop_s must be in (0, 1] seconds, not {self.hop_s!r}")

    def with_overrides(self, **overrides) -> "DetectorSettings":
        """A copy with the given non-None fields replaced (config/CLI over model defaults)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorSettings":
        """Settings from a model's metadata ``detector`` dict (unknown keys ignored)."""
        known = {k: d[k] for k in ("threshold", "smoothing", "refractory_s", "hop_s") if k in d}
        return cls(**known)


@dataclass(frozen=True)
class Detection:
    """The keyword was heard; ``time`` is the stream time of the decision."""

    time: float
    score: float
    keyword: str = "stop"


class Detector:
    """Smooths hop scores and fires :class:`Detection` events (see module docs)."""

    def __init__(self, settings: DetectorSettings = DetectorSettings(), keyword: str = "stop"):
        self.settings = settings
        self.keyword = keyword
        self._scores = deque(maxlen=int(settings.smoothing))
        self._last_fire = None
        self._armed = True
        self.smoothed = 0.0

    def reset(self):
        """Forget past scores (after a gap in the audio)."""
        self._scores.clear()
        self._armed = True
        self.smoothed = 0.0

    def update(self, time: float, score: float):
        """Add the score of the window ending at ``time``; return a Detection or None.

        While fewer than ``smoothing`` scores have arrived the mean is over those there are,
        so a one-second clip (one window) is judged on its one score.
        """
        s = self.settings
        self._scores.append(float(score))
        self.smoothed = sum(self._scores) / len(self._scores)
        if self.smoothed < s.threshold:
            self._armed = True
            return None
        if not self._armed:
            return None
        if self._last_fire is not None and time - self._last_fire < s.refractory_s:
            return None
        self._armed = False
        self._last_fire = time
        return Detection(time=round(time, 6), score=round(self.smoothed, 6), keyword=self.keyword)
