"""The false-accept meter: what the room's own audio does to a model's scores.

For the running model (and a shadow candidate) the daemon feeds every hop's smoothed score
to a :class:`ScoreMeter`. It keeps

* a **histogram** of smoothed scores (100 bins of 0.01) with the number of hops and seconds
  of audio they cover: the share of time the score sat at or above any threshold;
* **detections per threshold**: for each threshold ``t`` in 0.01, 0.02 ... 1.00 it runs the
  detector's own firing rule (fire when the smoothed score is ``>= t``, it dropped below
  ``t`` since the last fire, and ``refractory_s`` has passed) over the same smoothed scores.
  That is how many detections the daemon *would* have made at ``t``, exactly (the smoothed
  score does not depend on the threshold), which a histogram of hops alone cannot tell:
  one spoken word is several hops above the threshold but one detection.

Most of what the daemon hears is not the keyword, so detections per hour at a threshold
are mostly false accepts per hour: ``kwsd stats`` prints them next to the model's own
held-out table (:class:`kwsd.metadata.DetTable`). They over-count false accepts by the
times someone really said the word (label captures to tell them apart).

The state is a small JSON file, keyed by the model's SHA-256 and written atomically
(:func:`save_meters`), so it survives a restart; a restart re-arms the per-threshold
detectors (stream time starts again). Pure apart from :func:`save_meters`/:func:`load_meters`.

>>> m = ScoreMeter("abc", hop_s=0.1, refractory_s=0.2)
>>> for i, s in enumerate([0.1, 0.6, 0.7, 0.2, 0.65, 0.1]):
...     m.update(i / 10, s)
>>> m.detections_at(0.5), m.detections_at(0.65), m.detections_at(0.8)
(2, 2, 0)
"""

from __future__ import annotations

import json
import os
import threading
import time as _time

import numpy as np

FORMAT = "kwsd-meter/1"
BINS = 100
#: The thresholds the meter counts detections for: 0.01, 0.02 ... 1.00.
THRESHOLDS = np.round(np.arange(1, BINS + 1) / BINS, 2)


def _bin(threshold: float) -> int:
    return int(np.clip(round(threshold * BINS), 1, BINS)) - 1


class ScoreMeter:
    """Histogram and per-threshold detection counts of one model's smoothed scores.

    Args:
        model_sha256: the model file's SHA-256 (the key of its state).
        hop_s, refractory_s, smoothing: the detector settings the scores came from
            (counts made under other settings are not mixed in).
        model: the model's file name (for display).

    Thread-safe: :meth:`update` on the decision thread, :meth:`to_dict` anywhere.
    """

    def __init__(self, model_sha256: str, hop_s: float, refractory_s: float,
                 smoothing: int = 1, model: str = ""):
        self.model_sha256 = model_sha256
        self.model = model
        self.hop_s, self.refractory_s, self.smoothing = hop_s, refractory_s, int(smoothing)
        self.hist = np.zeros(BINS, np.int64)
        self.fires = np.zeros(BINS, np.int64)
        self.hops = 0
        self.detections = 0            # the detector's own detections (at its threshold)
        self.since = _time.time()
        self._armed = np.ones(BINS, bool)
        self._last_fire = np.full(BINS, -np.inf)
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        """Seconds of audio metered."""
        return self.hops * self.hop_s

    def settings_key(self) -> list:
        return [round(self.hop_s, 6), round(self.refractory_s, 6), self.smoothing]

    def reset(self):
        """A gap in the audio (or a restart): every per-threshold detector re-arms."""
        with self._lock:
            self._armed[:] = True

    def update(self, time: float, smoothed: float, detected: bool = False):
        """Add one hop's smoothed score at stream ``time`` (``detected``: the real
        detector fired on it)."""
        above = smoothed >= THRESHOLDS
        with self._lock:
            self.hist[min(int(smoothed * BINS), BINS - 1)] += 1
            self.hops += 1
            self.detections += bool(detected)
            fire = above & self._armed & (time - self._last_fire >= self.refractory_s)
            self.fires += fire
            self._armed |= ~above
            self._armed &= ~fire
            self._last_fire[fire] = time

    def detections_at(self, threshold: float) -> int:
        """Detections the detector would have made at ``threshold`` (rounded to 0.01)."""
        return int(self.fires[_bin(threshold)])

    def per_hour(self, threshold: float) -> float | None:
        """Detections per hour at ``threshold``; None before any audio."""
        if self.hops == 0:
            return None
        return self.detections_at(threshold) / (self.seconds / 3600.0)

    def share_above(self, threshold: float) -> float | None:
        """Share of hops whose smoothed score was ``>= threshold`` (to the bins' 0.01)."""
        if self.hops == 0:
            return None
        with self._lock:
            return float(self.hist[min(int(round(threshold * BINS)), BINS - 1):].sum()
                         / self.hops)

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        with self._lock:
            return {"model": self.model, "model_sha256": self.model_sha256,
                    "settings": self.settings_key(), "hops": self.hops,
                    "seconds": round(self.seconds, 3), "detections": self.detections,
                    "since": round(self.since, 3), "updated": round(_time.time(), 3),
                    "hist": self.hist.tolist(), "fires": self.fires.tolist()}

    @classmethod
    def resume(cls, state: dict | None, model_sha256: str, hop_s: float, refractory_s: float,
               smoothing: int = 1, model: str = "") -> "ScoreMeter":
        """A meter continuing ``state`` (a :meth:`to_dict` dict) when it is for the same
        model and settings, else a fresh one."""
        m = cls(model_sha256, hop_s, refractory_s, smoothing, model)
        if not state or state.get("model_sha256") != model_sha256 or \
                state.get("settings") != m.settings_key():
            return m
        try:
            hist = np.asarray(state["hist"], np.int64)
            fires = np.asarray(state["fires"], np.int64)
            if hist.shape != (BINS,) or fires.shape != (BINS,):
                return m
            m.hist, m.fires = hist, fires
            m.hops, m.detections = int(state["hops"]), int(state.get("detections", 0))
            m.since = float(state.get("since", m.since))
        except (KeyError, TypeError, ValueError):
            return cls(model_sha256, hop_s, refractory_s, smoothing, model)
        return m


class Agreement:
    """Live and shadow detections on the same audio: matched when within ``window_s`` of
    each other (stream time). Counts ``both``, ``live_only``, ``shadow_only``.

    >>> a = Agreement(window_s=1.0)
    >>> a.add("live", 3.0); a.add("shadow", 3.4); a.add("shadow", 9.0); a.settle(20.0)
    >>> a.counts()
    {'both': 1, 'live_only': 0, 'shadow_only': 1}
    """

    def __init__(self, window_s: float = 1.0, counts: dict | None = None):
        self.window_s = window_s
        c = counts or {}
        self.both = int(c.get("both", 0))
        self.live_only = int(c.get("live_only", 0))
        self.shadow_only = int(c.get("shadow_only", 0))
        self._pending = []           # [(role, time)] not yet matched
        self._lock = threading.Lock()

    def add(self, role: str, time: float):
        """A detection by ``"live"`` or ``"shadow"`` at stream ``time``."""
        with self._lock:
            self._settle(time)
            for i, (r, t) in enumerate(self._pending):
                if r != role and abs(t - time) <= self.window_s:
                    del self._pending[i]
                    self.both += 1
                    return
            self._pending.append((role, time))

    def settle(self, now: float):
        """Count detections older than ``window_s`` before ``now`` as unmatched."""
        with self._lock:
            self._settle(now)

    def _settle(self, now):
        keep = []
        for r, t in self._pending:
            if now - t > self.window_s:
                if r == "live":
                    self.live_only += 1
                else:
                    self.shadow_only += 1
            else:
                keep.append((r, t))
        self._pending = keep

    def counts(self) -> dict:
        return {"both": self.both, "live_only": self.live_only,
                "shadow_only": self.shadow_only}


# -------------------------------------------------------------------- the state file

def load_meters(path) -> dict:
    """The state file's ``{"meters": {sha256: state}, "agreement": {...}}``; empty
    when missing or unreadable (a meter is a convenience, never a reason to stop)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            return doc
    except (OSError, ValueError):
        pass
    return {"format": FORMAT, "meters": {}, "agreement": {}}


def save_meters(path, meters, agreement: dict | None = None, keep: int = 8):
    """Write the meters (plus those already in the file, newest ``keep`` in all) atomically
    (a temporary file renamed over the old one)."""
    doc = load_meters(path)
    for m in meters:
        doc["meters"][m.model_sha256] = m.to_dict()
    newest = sorted(doc["meters"].items(), key=lambda kv: kv[1].get("updated", 0))[-keep:]
    doc["meters"] = dict(newest)
    if agreement is not None:
        doc["agreement"] = agreement
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)
