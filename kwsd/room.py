"""Learning from the room, on the daemon's pipeline: captures, the meter, the shadow's log.

:class:`RoomWatch` attaches to a :class:`kwsd.pipeline.Pipeline` as one hop observer
(decision thread) and one audio tap (feature thread). It does three things, each with the
pure parts in their own modules:

* **captures** (:mod:`kwsd.captures`): the recent audio is kept at the device's rate; the
  live path's hops go through a :class:`~kwsd.captures.MomentPicker`, and each detection
  or near miss is cut (``before_s``/``after_s`` around its peak) and handed to the
  :class:`~kwsd.captures.CaptureWriter` thread, which never blocks the caller;
* **the meter** (:mod:`kwsd.meter`): every path's smoothed scores go to a
  :class:`~kwsd.meter.ScoreMeter` for its model (keyed by SHA-256; a shadow of the live
  model's own file is not metered twice), live and shadow
  detections to an :class:`~kwsd.meter.Agreement`; :meth:`save` writes the state file
  (the daemon's main thread calls it now and then, and at exit);
* **the shadow's log**: a shadow path's detections are logged
  (``KWSD_EVENT=shadow_detection``) and drive nothing.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from .captures import CaptureSettings, CaptureWriter, MomentPicker, RecentAudio, moment_record
from .frontend import to_float_mono
from .meter import Agreement, ScoreMeter, load_meters, save_meters

log = logging.getLogger("kwsd.room")

#: The meter's state file inside the state directory.
METER_FILE = "meter.json"


def state_dir_of(cfg) -> str:
    """The config's ``state_dir``, else systemd's ``$STATE_DIRECTORY`` (its first entry),
    else ``""`` (the meter is not kept)."""
    return cfg.state_dir or (os.environ.get("STATE_DIRECTORY") or "").split(":")[0]


def _sha256(data: bytes):
    """A SHA-256 from CPython's own implementation, as :mod:`random` takes its SHA-512:
    ``import hashlib`` maps OpenSSL's libcrypto, 3.6 MB resident for the daemon's whole life,
    to hash one small model file."""
    try:
        from _sha2 import sha256            # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256      # Python 3.11
        except ImportError:                 # a Python built without its own hashes
            from hashlib import sha256
    return sha256(data)


def model_sha256(model) -> str:
    """The SHA-256 of a model's file (its ``sha256`` attribute when the loader set one;
    else the file is read once and the digest remembered on the model)."""
    digest = getattr(model, "sha256", None)
    if digest:
        return digest
    try:
        with open(model.path, "rb") as fh:
            digest = _sha256(fh.read()).hexdigest()
    except OSError:
        digest = "unknown:" + os.path.basename(model.path)
    try:
        model.sha256 = digest
    except AttributeError:
        pass
    return digest


class RoomWatch:
    """Captures, meters and the shadow's log for one pipeline (see module docs).

    Args:
        pipeline: the :class:`~kwsd.pipeline.Pipeline` (its ``generation`` gives each
            hop's detector settings).
        capture: :class:`~kwsd.captures.CaptureSettings`, or None for no captures.
        state_dir: where the meter's state file lives (None: the meter is not saved).
        channel: the audio channel the models hear (``"mix"`` or an index).
        device: the capture device's name (or a callable returning it), for sidecars.
    """

    def __init__(self, pipeline, capture=None, state_dir=None, channel="mix", device=""):
        self.pipeline = pipeline
        self.capture = capture
        self.state_path = os.path.join(state_dir, METER_FILE) if state_dir else None
        self.channel = channel
        self.device = device
        self.meters = {}                  # sha256 -> ScoreMeter
        self._state = load_meters(self.state_path) if self.state_path else {"meters": {}}
        self._paths = {}                  # (generation, role) -> DecisionPath
        self._pickers = {}                # generation number -> MomentPicker (live path)
        self._agreement = None            # (key, Agreement)
        self.shadow_detections = 0
        self._next_save = None
        self.audio = self.writer = None
        if capture is not None:
            self.audio = RecentAudio(capture.before_s + capture.after_s + 4.0)
            rate = pipeline.generation.live.model.profile.sample_rate
            self.writer = CaptureWriter(capture, out_rate=rate)
        pipeline.observers.append(self.on_hop)
        if self.audio is not None:
            pipeline.audio_taps.append(self.on_audio)

    SAVE_EVERY_S = 60.0                   # the meter's file is rewritten this often

    @classmethod
    def from_config(cls, pipeline, cfg, device=""):
        """The watch a :class:`~kwsd.config.Config` asks for (captures when ``capture.dir``
        is set, the meter's file under ``state_dir`` or systemd's ``$STATE_DIRECTORY``, the
        shadow's log when ``shadow_model`` is set); None when it asks for none of them."""
        state_dir = state_dir_of(cfg)
        capture = None
        if cfg.capture.dir:
            capture = CaptureSettings(cfg.capture.dir, cfg.capture.detections,
                                      cfg.capture.near_miss, cfg.capture.max_mb)
        if capture is None and not state_dir and not cfg.shadow_model:
            return None
        return cls(pipeline, capture, state_dir or None, cfg.audio.channel, device)

    def wanted(self, cfg) -> bool:
        """Whether ``cfg`` asks for the same captures and state folder as this watch."""
        state_dir = state_dir_of(cfg)
        same_dir = os.path.join(state_dir, METER_FILE) if state_dir else None
        capture = (cfg.capture.dir, cfg.capture.detections, cfg.capture.near_miss,
                   cfg.capture.max_mb) if cfg.capture.dir else None
        mine = None if self.capture is None else (self.capture.dir, self.capture.detections,
                                                  self.capture.near_miss, self.capture.max_mb)
        return same_dir == self.state_path and capture == mine and cfg.audio.channel == \
            self.channel

    def tick(self, now: float):
        """Main thread, every pass: save the meter every :attr:`SAVE_EVERY_S` seconds."""
        if self._next_save is None:
            self._next_save = now + self.SAVE_EVERY_S
        elif now >= self._next_save:
            self._next_save = now + self.SAVE_EVERY_S
            self.save()

    # ---------------------------------------------------------------- feature thread
    def on_audio(self, block, stream_time, rate):
        """Audio tap: keep the recent audio (mono, device rate)."""
        self.audio.push(to_float_mono(block, self.channel), stream_time, rate)

    # ---------------------------------------------------------------- decision thread
    def _path(self, hop):
        key = (hop.generation, hop.role)
        path = self._paths.get(key)
        if path is None:
            gen = self.pipeline.generation
            for p in gen.paths:
                self._paths[(gen.number, p.role)] = p
            path = self._paths.get(key)
            if path is None:              # a hop of a generation already replaced
                path = next((p for (g, r), p in sorted(self._paths.items(), reverse=True)
                             if r == hop.role), None)
            if len(self._paths) > 8:
                for k in sorted(self._paths)[:-4]:
                    del self._paths[k]
        return path

    def _meter(self, path) -> ScoreMeter:
        sha = model_sha256(path.model)
        m = self.meters.get(sha)
        s = path.settings
        if m is None or m.settings_key() != [round(s.hop_s, 6), round(s.refractory_s, 6),
                                             int(s.smoothing)]:
            m = ScoreMeter.resume(self._state["meters"].get(sha), sha, s.hop_s,
                                  s.refractory_s, s.smoothing, path.name)
            self.meters[sha] = m
        return m

    def on_hop(self, hop):
        """Hop observer: meters, agreement, shadow log, captures."""
        path = self._path(hop)
        if path is None:
            return
        if hop.role == "live" or model_sha256(path.model) != \
                model_sha256(self.pipeline.generation.live.model):
            self._meter(path).update(hop.time, hop.smoothed, hop.detection is not None)
        self._agree(hop, path)
        if hop.role == "shadow":
            if hop.detection is not None:
                self.shadow_detections += 1
                log.info("shadow model %s would have detected %r (score %.3f) at stream "
                         "time %.2f s", hop.model, hop.detection.keyword, hop.detection.score,
                         hop.time, extra={"kwsd_event": "shadow_detection",
                                          "kwsd_model": hop.model,
                                          "kwsd_score": f"{hop.detection.score:.3f}",
                                          "kwsd_stream_time": f"{hop.time:.3f}"})
            return
        if self.writer is not None:
            self._capture(hop, path)

    def _agree(self, hop, path):
        gen = self.pipeline.generation
        if len(gen.paths) < 2:
            return
        key = f"{model_sha256(gen.paths[0].model)}:{model_sha256(gen.paths[1].model)}"
        if self._agreement is None or self._agreement[0] != key:
            self._agreement = (key, Agreement(path.settings.refractory_s,
                                              self._state.get("agreement", {}).get(key)))
        agreement = self._agreement[1]
        if hop.detection is not None:
            agreement.add(hop.role, hop.time)
        else:
            agreement.settle(hop.time)

    def _capture(self, hop, path):
        c = self.capture
        picker = self._pickers.get(hop.generation)
        if picker is None:
            picker = MomentPicker(path.settings.threshold, c.near_miss,
                                  path.settings.refractory_s, c.after_s, c.detections)
            self._pickers = {hop.generation: picker}
        for moment in picker.update(hop.time, hop.smoothed, hop.detection is not None):
            cut = self.audio.cut(moment.time - c.before_s, moment.time + c.after_s)
            if cut is None:
                continue
            samples, start, rate = cut
            device = self.device() if callable(self.device) else self.device
            # the peak's wall-clock time: now, less how far the audio has gone past it
            wall = time.time() - max(0.0, self.pipeline.stream_time - moment.time)
            record = moment_record(moment, wall_time=wall,
                                   threshold=path.settings.threshold, model=path.name,
                                   model_sha256=model_sha256(path.model), device=device or "")
            record["audio_start"] = start
            if moment.kind == "near_miss":
                log.info("near miss (score %.3f < threshold %.2f) at stream time %.2f s",
                         moment.score, path.settings.threshold, moment.time,
                         extra={"kwsd_event": "near_miss", "kwsd_score": f"{moment.score:.3f}",
                                "kwsd_stream_time": f"{moment.time:.3f}"})
            if not self.writer.submit(samples.astype(np.float32), rate, record):
                log.warning("captures: the writer is behind; a %s was dropped", moment.kind,
                            extra={"kwsd_event": "capture_dropped"})

    # ---------------------------------------------------------------- main thread
    def save(self):
        """Write the meters' state file (atomically); a failure is logged, never raised."""
        if not self.state_path:
            return
        agreement = dict(self._state.get("agreement", {}))
        if self._agreement is not None:
            agreement[self._agreement[0]] = self._agreement[1].counts()
        try:
            save_meters(self.state_path, list(self.meters.values()), agreement)
        except OSError as exc:
            log.warning("cannot save the meter to %s (%s)", self.state_path,
                        exc.strerror or exc, extra={"kwsd_event": "meter_save_failed"})

    def close(self):
        """Detach from the pipeline, save the meters, let the capture writer finish what is
        queued."""
        p = self.pipeline
        p.observers = [f for f in p.observers if f != self.on_hop]    # one atomic rebind:
        p.audio_taps = [f for f in p.audio_taps if f != self.on_audio]  # threads iterate them
        self.save()
        if self.writer is not None:
            self.writer.close()
