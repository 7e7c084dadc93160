"""The decision path, composed once: audio blocks -> features -> model -> detector.

``kwsd detect`` and the daemon run this same :class:`Pipeline`. It has two sides, which the
daemon runs on two threads and ``kwsd detect`` runs one after the other in one thread:

* the **feature side**, :meth:`Pipeline.push`: one block of device audio goes to the audio
  taps and through a :class:`~kwsd.frontend.FeatureStream` per decision path; each completed
  window is queued;
* the **decision side**, :meth:`Pipeline.decide`: each queued window is scored by its path's
  model and judged by its detector; a window more than ``max_lag_s`` behind the audio is
  skipped and counted; every hop is offered to the observers as a :class:`Hop`, and a
  detection of the *live* path to ``on_detection``.

What runs is a :class:`Generation`: one or more :class:`DecisionPath` objects (the live one
first; a shadow model may run beside it on the same audio, without actions). Publishing a
new generation (:meth:`Pipeline.publish`: a model swap or a reload) takes effect at the next
block; a new path's front end is primed with the last window of audio, so there is no gap,
and it takes over its predecessor's detector history: a word the old path already fired on,
or any window it already decided, never fires again.

>>> import numpy as np
>>> from kwsd.model import load_model
>>> model = load_model("tests/data/tiny_float.tflite")
>>> pipe = Pipeline(Generation(1, (DecisionPath(model, model.defaults),)))
>>> pipe.start_epoch(16000)
>>> hops = []
>>> pipe.observers.append(hops.append)
>>> pipe.push(np.zeros(16000, np.float32))
1
>>> pipe.decide(), hops[0].time, hops[0].role
(1, 1.0, 'live')
"""

from __future__ import annotations

import collections
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from kwsd.detector import Detection, Detector, DetectorSettings
from kwsd.frontend import FeatureStream
from kwsd.ring import History


@dataclass(frozen=True)
class Hop:
    """One decision of one path: what observers get, on the decision thread.

    Attributes:
        time: stream time (seconds of audio since start) of the window's end.
        score: the model's raw score; smoothed: the detector's smoothed score.
        detection: the :class:`~kwsd.detector.Detection` it fired, or None.
        model: the model file's name; generation: the :class:`Generation` number.
        role: ``"live"`` (drives the actions) or ``"shadow"``.
        arrived: monotonic time at which the window's last samples reached the pipeline.
    """

    time: float
    score: float
    smoothed: float
    detection: Detection | None
    model: str
    generation: int
    role: str
    arrived: float


class DecisionPath:
    """One model, its detector settings and its detector state.

    Args:
        model: a :class:`~kwsd.model.KwsModel`.
        settings: its :class:`~kwsd.detector.DetectorSettings`.
        role: ``"live"`` or ``"shadow"``.
        previous: the path this one replaces: its history is taken over at the first
            decision (no detection at or before the last window it decided, none within
            ``refractory_s`` of its last detection).
    """

    def __init__(self, model, settings: DetectorSettings, role="live", previous=None):
        self.model = model
        self.settings = settings
        self.role = role
        self.name = os.path.basename(model.path)
        self.generation = 0
        self.detector = Detector(settings, model.keyword)
        self.last_time = -math.inf        # stream time of the last window decided
        self.last_fire = None             # stream time of the last detection (any generation)
        self._decided_until = -math.inf
        self._previous = previous

    def warm_up(self):
        """Compute one window of silence through a throwaway front end, so the lazy imports
        and first-call costs of the features are paid now, not by the first live window."""
        profile = self.model.profile
        frames = int(profile.window_s * profile.sample_rate) + profile.step_samples
        FeatureStream(profile, profile.sample_rate, self.settings.hop_s).push(
            np.zeros((frames, 1), np.float32))

    def decide(self, time, features):
        """Score one window; return ``(score, detection or None)``."""
        if self._previous is not None:
            prev, self._previous = self._previous, None
            self._decided_until, self.last_fire = prev.last_time, prev.last_fire
        score = self.model.score(features)
        det = self.detector.update(time, score)
        if det is not None and (time <= self._decided_until or (
                self.last_fire is not None
                and time - self.last_fire < self.settings.refractory_s)):
            det = None                    # the word its predecessor already fired on
        elif det is not None:
            self.last_fire = time
        self.last_time = time
        return score, det


@dataclass(frozen=True)
class Generation:
    """What runs, published as one immutable value: the decision paths (live first), the
    config they came from, and a number that grows with each swap or reload."""

    number: int
    paths: tuple
    config: object = None

    def __post_init__(self):
        for path in self.paths:
            path.generation = self.number

    @property
    def live(self) -> DecisionPath:
        """The path whose detections drive the actions."""
        return self.paths[0]


class _Stream:
    __slots__ = ("path", "features", "offset")

    def __init__(self, path, features, offset):
        self.path, self.features, self.offset = path, features, offset


class Pipeline:
    """The shared composition (see the module docs).

    Args:
        generation: the first :class:`Generation`.
        channel: ``"mix"`` or a channel index.
        max_lag_s: skip windows further than this behind the audio (None: never skip).
        on_detection: called with the :class:`Hop` of each detection of the live path.

    Attributes:
        observers: callables given every :class:`Hop` of every path (decision thread).
        audio_taps: callables given ``(block, stream_time, rate)`` for every block of
            device audio, before features (feature thread); ``block`` is only valid during
            the call (copy what you keep); ``stream_time`` is its first sample's time.
        stream_time: seconds of audio pushed so far (all epochs).
        decided, skipped: windows scored, and windows skipped as too late.
    """

    HISTORY_S = 2.5         # audio kept to prime a new path's front end (>= window + hop)

    def __init__(self, generation: Generation, channel="mix", max_lag_s=None,
                 on_detection=None):
        self.generation = generation
        self.channel = channel
        self.max_lag_s = max_lag_s
        self.on_detection = on_detection
        self.observers = []
        self.audio_taps = []
        self.windows = collections.deque()
        self.window_ready = threading.Event()
        self.stream_time = 0.0
        self.decided = 0
        self.skipped = 0
        self.rate = None
        self._epoch_base = 0.0            # stream time at the current epoch's first sample
        self._epoch_frames = 0
        self._streams = []
        self._built_for = None
        self._recent = None

    # ------------------------------------------------------------------ control
    def publish(self, generation: Generation):
        """Run ``generation`` from the next block on. Its new paths are warmed up here, in the
        caller's thread (the daemon's main thread), so the feature thread never waits."""
        old = set(map(id, self.generation.paths)) if self.generation else set()
        for path in generation.paths:
            if id(path) not in old:
                path.warm_up()
        self.generation = generation

    def start_epoch(self, rate):
        """A new period of audio at ``rate`` (after a gap): front ends restart unprimed."""
        self._epoch_base = self.stream_time
        self._epoch_frames = 0
        self.rate = int(rate)
        self._recent = None
        self._streams = []
        self._built_for = None

    # ------------------------------------------------------------------ feature side
    def _build(self, gen):
        old = {id(s.path): s for s in self._streams}
        streams = []
        for path in gen.paths:
            if id(path) in old:
                streams.append(old[id(path)])
                continue
            stream = FeatureStream(path.model.profile, self.rate, path.settings.hop_s,
                                   self.channel)
            history = self._recent.last(int(self.rate * (path.model.profile.window_s
                                                         + path.settings.hop_s)))
            entry = _Stream(path, stream, self.stream_time - history.shape[0] / self.rate)
            streams.append(entry)
            if history.shape[0]:
                self._queue(entry, stream.push(history), None)
        self._streams = streams
        self._built_for = gen

    def _queue(self, entry, windows, arrived):
        for w in windows:
            self.windows.append((entry.path, entry.offset + w.time, w.features, arrived))

    def push(self, block, arrived=None) -> int:
        """Feature side: one block of device audio; returns the number of windows queued."""
        if block.ndim == 1:
            block = block[:, None]
        if self._recent is None:
            keep = max([self.HISTORY_S] + [p.model.profile.window_s + p.settings.hop_s
                                           for p in self.generation.paths])
            self._recent = History(int(self.rate * keep), block.shape[1], block.dtype)
        if self._built_for is not self.generation:
            self._build(self.generation)
        if self.audio_taps:
            for tap in self.audio_taps:
                tap(block, self.stream_time, self.rate)
        self._recent.write(block)
        self._epoch_frames += block.shape[0]
        self.stream_time = self._epoch_base + self._epoch_frames / self.rate
        before = len(self.windows)
        for entry in self._streams:
            windows = entry.features.push(block)
            if windows:
                self._queue(entry, windows, arrived)
        queued = len(self.windows) - before
        if queued:
            self.window_ready.set()
        return queued

    def finish(self) -> int:
        """Feature side, at the end of the audio (a file's end): queue the windows the front
        ends still hold back (the resampler's look-ahead); returns the number queued."""
        before = len(self.windows)
        for entry in self._streams:
            self._queue(entry, entry.features.flush(), None)
        queued = len(self.windows) - before
        if queued:
            self.window_ready.set()
        return queued

    # ------------------------------------------------------------------ decision side
    def decide(self) -> int:
        """Decision side: judge every queued window; returns the number scored."""
        done = 0
        while self.windows:
            path, t, features, arrived = self.windows.popleft()
            if self.max_lag_s is not None and self.stream_time - t > self.max_lag_s:
                self.skipped += 1
                continue
            score, det = path.decide(t, features)
            done += 1
            if self.observers or det is not None:
                hop = Hop(t, score, path.detector.smoothed, det, path.name, path.generation,
                          path.role, arrived)
                for observer in self.observers:
                    observer(hop)
                if det is not None and path.role == "live" and self.on_detection:
                    self.on_detection(hop)
        self.decided += done
        return done

    def wait(self, timeout) -> bool:
        """Decision side: wait up to ``timeout`` s for queued windows; True if any."""
        if not self.windows:
            self.window_ready.wait(timeout)
            self.window_ready.clear()
        return bool(self.windows)
