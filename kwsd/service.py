"""``kwsd run``: the always-on service.

Threads (one job each)::

    audio (PortAudio callback) --ring--> MFCC worker --windows--> inference loop --> actions
                                                                                \\--> status
    main thread: signals, systemd notify (READY / STATUS / WATCHDOG), model file watch, reload

* The **audio thread** only copies blocks into a preallocated ring (:mod:`kwsd.capture`).
* The **MFCC worker** drains the ring through :class:`kwsd.frontend.FeatureStream`.
* The **inference loop** scores each window (:meth:`KwsModel.score`) and runs the
  :class:`kwsd.detector.Detector`; a window older than ``detector.max_lag_s`` when it gets to
  it is skipped and counted, so latency and memory cannot grow.
* ``WATCHDOG=1`` is sent only while audio blocks arrive *and* windows get scored.
* A new model file (polled: mtime, inode, size) or SIGHUP (config and model) is validated
  with :func:`kwsd.model.load_model` before it replaces the running one; a bad one is
  logged, shown in ``STATUS=`` and the old one keeps running. Audio keeps flowing meanwhile.
* SIGTERM / SIGINT: every output to its safe state, ``STOPPING=1``, exit 0.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time


from kwsd.actions import Actions
from kwsd.capture import Capture, FileSource
from kwsd.config import load_config
from kwsd.detector import Detection, Detector
from kwsd.errors import ConfigError, ModelError
from kwsd.frontend import FeatureStream
from kwsd.model import load_model
from kwsd.spotter import resolve_settings
from kwsd.systemd import Notifier

log = logging.getLogger("kwsd.service")

_END = object()


def detector_settings(model, cfg):
    """The model's detector defaults with the config's non-null ``detector`` keys applied."""
    overrides = {k: v for k, v in cfg["detector"].items() if k != "max_lag_s"}
    try:
        return resolve_settings(model, overrides)
    except ValueError as err:
        raise ConfigError(None, "detector", str(err)) from None


def _file_signature(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class _Pipeline:
    """One model with its own front end and detector, fed from one audio epoch."""

    def __init__(self, model, settings, epoch, channel, offset_s, history):
        self.model = model
        self.settings = settings
        self.epoch = epoch
        self.offset_s = offset_s          # global stream time of this front end's sample 0
        self.stream = FeatureStream(model.profile, epoch.rate, settings.hop_s, channel)
        self.detector = Detector(settings, model.keyword)
        for block in history:             # prime with recent audio: no gap after a swap
            self.stream.push(block)


class Service:
    """The daemon. ``run()`` blocks until SIGTERM/SIGINT (or the end of ``input_file``).

    Args:
        cfg: a validated config (:func:`kwsd.config.load_config`).
        config_path: re-read on SIGHUP (None: SIGHUP reloads the model only).
        input_file: replay this audio file in real time instead of capturing.
        notifier: a :class:`kwsd.systemd.Notifier` (default: from the environment).
        on_score: called from the inference loop with ``(time, score, smoothed, detection)``.
        actions: False to run no actions (``kwsd listen``).
        model_override: a model path that wins over the config's, also after SIGHUP.
    """

    def __init__(self, cfg, config_path=None, input_file=None, notifier=None, on_score=None,
                 actions=True, model_override=None):
        self.cfg = cfg
        self.model_override = model_override
        self.config_path = config_path
        self.input_file = input_file
        self.notifier = notifier or Notifier()
        self.on_score = on_score
        self.use_actions = actions
        self.model = None
        self.settings = None
        self.actions = None
        self.source = None
        self.detections = 0
        self.last_detection = None
        self.rejected = None              # reason the last candidate model/config was refused
        self.windows_done = 0
        self.windows_skipped = 0
        self.audio_state = "starting"
        self._epoch = None
        self._want = None                 # (model, settings, channel) the worker should run
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signals = collections.deque()
        self._finished = False
        self._stream_now = 0.0            # global stream seconds pushed by the worker
        self._model_sig = None
        self._bad_sig = None
        self._threads = []

    # ------------------------------------------------------------------ loading
    def _load_model(self, cfg):
        model = load_model(cfg["model"], profile=cfg["profile"])
        return model, detector_settings(model, cfg)

    def _publish(self, model, settings):
        self.model, self.settings = model, settings
        self._model_sig = _file_signature(model.path)
        self._want = (model, settings, self.cfg["audio"]["channel"])

    # ------------------------------------------------------------------ audio epochs
    def _on_epoch(self, epoch):
        self._epoch = epoch
        self._wake.set()

    def _on_audio_state(self, state, reason):
        if state != self.audio_state or reason != getattr(self, "_audio_reason", None):
            self.audio_state = state
            self._audio_reason = reason
            self._wake.set()

    def _on_file_end(self):
        self._epoch.ended = True
        self._epoch.ring.data_ready.set()

    def _start_source(self):
        a = self.cfg["audio"]
        if self.input_file:
            samples, rate = self._input_audio
            self.source = FileSource(samples, rate, self._on_epoch, self._on_file_end,
                                     block_s=a["block_s"], tail_s=self.model.profile.window_s,
                                     ring_s=a["ring_s"])
        else:
            self.source = Capture(a, self.model.profile.sample_rate, self._on_epoch,
                                  self._on_audio_state)
        self.source.start()

    # ------------------------------------------------------------------ MFCC worker
    def _worker(self):
        pipe = None
        built_for = None
        history = collections.deque()
        history_frames = 0
        epoch_frames = 0
        epoch_base = 0.0                  # global stream time at the current epoch's start
        while not self._stop.is_set():
            epoch = self._epoch
            if epoch is None:
                self._wake.wait(0.1)
                continue
            if pipe is None or pipe.epoch is not epoch:
                if pipe is not None:      # a new device epoch: audio had a gap
                    epoch_base = self._stream_now
                history.clear()
                history_frames = epoch_frames = 0
                built_for = None
            want = self._want
            if built_for is not want:
                model, settings, channel = want
                keep = int(epoch.rate * (model.profile.window_s + settings.hop_s))
                while history_frames > keep and len(history) > 1:
                    history_frames -= history.popleft().shape[0]
                offset = epoch_base + (epoch_frames - history_frames) / epoch.rate
                pipe = _Pipeline(model, settings, epoch, channel, offset, list(history))
                built_for = want
            ring = epoch.ring
            if not ring.wait(0.1):
                if getattr(epoch, "ended", False) and ring.available() == 0:
                    with self._cond:
                        self._queue.append(_END)
                        self._cond.notify()
                    return
                continue
            block = ring.read()
            n = block.shape[0]
            epoch_frames += n
            self._stream_now = epoch_base + epoch_frames / epoch.rate
            history.append(block.copy())
            history_frames += n
            keep = int(epoch.rate * 1.5 * pipe.model.profile.window_s)
            while history_frames - history[0].shape[0] >= keep:
                history_frames -= history.popleft().shape[0]
            arrived = time.monotonic()     # when the window's last samples reached us
            windows = pipe.stream.push(block)
            if windows:
                with self._cond:
                    for w in windows:
                        self._queue.append((pipe, pipe.offset_s + w.time, w.features, arrived))
                    self._cond.notify()

    # ------------------------------------------------------------------ inference loop
    def _inference(self):
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.2)
                if self._stop.is_set():
                    return
                item = self._queue.popleft()
            if item is _END:
                self._finished = True
                self._wake.set()
                return
            pipe, t, feats, arrived = item
            if self._stream_now - t > self.cfg["detector"]["max_lag_s"]:
                self.windows_skipped += 1
                continue
            score = pipe.model.score(feats)
            det = pipe.detector.update(t, score)
            self.windows_done += 1
            if self.on_score is not None:
                self.on_score(t, score, pipe.detector.smoothed, det)
            if det is not None:
                self._on_detection(det, pipe.model, arrived)

    def _on_detection(self, det: Detection, model, arrived):
        wall = time.time()
        self.detections += 1
        self.last_detection = (wall, det.score)
        det_obj = _WallDetection(det, wall)
        log.info("detected %r (score %.3f) at stream time %.2f s", det.keyword, det.score,
                 det.time, extra={"kwsd_event": "detection", "kwsd_keyword": det.keyword,
                                  "kwsd_score": f"{det.score:.3f}",
                                  "kwsd_stream_time": f"{det.time:.3f}",
                                  "kwsd_model": os.path.basename(model.path),
                                  "kwsd_mono": f"{time.monotonic():.6f}",
                                  "kwsd_audio_mono": f"{arrived:.6f}"})
        if self.actions is not None:
            self.actions.fire(det_obj)
        self._wake.set()

    # ------------------------------------------------------------------ status
    def status_text(self):
        """The ``STATUS=`` line: model, detections, last detection, audio, rejections."""
        parts = []
        if self.model is not None:
            parts.append(f"model {os.path.basename(self.model.path)} "
                         f"({self.model.profile.name})")
        parts.append(f"detections {self.detections}")
        if self.last_detection:
            wall, score = self.last_detection
            parts.append("last " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
                         + f" score {score:.2f}")
        audio = f"audio {self.audio_state}"
        if self.audio_state == "lost" and getattr(self, "_audio_reason", None):
            audio += f" ({self._audio_reason})"
        parts.append(audio)
        src = self.source
        if src is not None and (src.epoch is not None):
            ring = src.epoch.ring
            if ring.overflow_frames or getattr(src, "status_flags", 0) or self.windows_skipped:
                parts.append(f"overflows {ring.overflow_blocks}+{src.status_flags} "
                             f"skipped {self.windows_skipped}")
        if self.rejected:
            parts.append(f"rejected {self.rejected}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ reload / hot swap
    def _try_model(self, cfg, why):
        """Load cfg's model; swap it in if valid. Returns True on success."""
        try:
            model, settings = self._load_model(cfg)
        except (ModelError, ConfigError) as err:
            self.rejected = f"{os.path.basename(cfg['model'])}: {getattr(err, 'reason', err)}"
            self._bad_sig = _file_signature(cfg["model"])
            log.error("new model rejected, keeping %s: %s",
                      os.path.basename(self.model.path), err,
                      extra={"kwsd_event": "model_rejected", "kwsd_model": cfg["model"],
                             "kwsd_reason": getattr(err, "reason", str(err))})
            return False
        self.cfg = cfg
        self._publish(model, settings)
        self.rejected = None
        self._bad_sig = None
        log.info("model %s (%s)", model.describe(), why,
                 extra={"kwsd_event": "model_loaded", "kwsd_model": model.path})
        return True

    def _reload(self):
        """SIGHUP: re-read the config and the model; keep everything on any failure."""
        self.notifier.reloading()
        cfg = self.cfg
        if self.config_path:
            try:
                cfg = load_config(self.config_path)
                if self.model_override:
                    cfg["model"] = self.model_override
            except ConfigError as err:
                self.rejected = f"config: {err}"
                log.error("config rejected, keeping the running one: %s", err,
                          extra={"kwsd_event": "config_rejected", "kwsd_reason": str(err)})
                self.notifier.ready(self.status_text())
                return
        old = self.cfg
        if self._try_model(cfg, "reloaded"):
            if self.use_actions and (cfg["actions"] != old["actions"]
                                     or cfg["gpio"] != old["gpio"]):
                self._restart_actions()
            if cfg["audio"] != old["audio"] and not self.input_file:
                log.info("audio settings changed: reopening the device")
                self.source.stop()
                self._start_source()
        self.notifier.ready(self.status_text())

    def _restart_actions(self):
        if self.actions is not None:
            self._log_pin_history(self.actions)
            self.actions.close()
        self.actions = Actions(self.cfg["actions"], self.cfg["gpio"]["pin_factory"])

    def _watch_model(self):
        sig = _file_signature(self.cfg["model"])
        if sig is None or sig == self._model_sig or sig == self._bad_sig:
            return
        log.info("model file changed: %s", self.cfg["model"],
                 extra={"kwsd_event": "model_changed"})
        self._try_model(self.cfg, "file changed")

    # ------------------------------------------------------------------ main
    def _on_signal(self, signum, frame):
        self._signals.append(signum)

    def run(self):
        """Start everything and supervise until stopped; returns the exit status (0)."""
        model, settings = self._load_model(self.cfg)
        if self.input_file:       # an unreadable file fails here, before any output moves
            from kwsd.audiofile import read_audio
            self._input_audio = read_audio(self.input_file)
        self._publish(model, settings)
        log.info("using model %s", model.path,
                 extra={"kwsd_event": "model_loaded", "kwsd_model": model.path})
        if self.use_actions:
            self.actions = Actions(self.cfg["actions"], self.cfg["gpio"]["pin_factory"])
        old_handlers = {s: signal.signal(s, self._on_signal)
                        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            for target, name in ((self._worker, "kwsd-mfcc"), (self._inference, "kwsd-infer")):
                t = threading.Thread(target=target, name=name, daemon=True)
                t.start()
                self._threads.append(t)
            self._start_source()
            self._supervise()
        finally:
            self._shutdown()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return 0

    def _supervise(self):
        n = self.notifier
        ready = False
        wd = n.watchdog_interval
        next_ping = time.monotonic()
        seen_blocks = seen_windows = 0
        next_watch = time.monotonic() + self.cfg["watch_interval_s"]
        last_status = None
        last_over = 0
        while True:
            self._wake.wait(0.1)
            self._wake.clear()
            while self._signals:
                sig = self._signals.popleft()
                if sig in (signal.SIGTERM, signal.SIGINT):
                    log.info("%s: stopping", signal.Signals(sig).name,
                             extra={"kwsd_event": "stopping"})
                    return
                log.info("SIGHUP: reloading config and model", extra={"kwsd_event": "reload"})
                self._reload()
                last_status = None
            if self._finished:
                log.info("end of %s", self.input_file, extra={"kwsd_event": "input_end"})
                return
            now = time.monotonic()
            src = self.source
            blocks = src.blocks
            if not ready and blocks > 0:
                ready = True
                self.audio_state = "running" if self.audio_state == "starting" else \
                    self.audio_state
                status = self.status_text()
                n.ready(status)
                last_status = status
                log.info("ready: %s", status, extra={"kwsd_event": "ready"})
            if self.cfg["watch_model"] and now >= next_watch:
                next_watch = now + self.cfg["watch_interval_s"]
                self._watch_model()
            epoch = src.epoch
            over = (epoch.ring.overflow_blocks if epoch else 0) + src.status_flags
            if over > last_over:
                log.warning("audio overflow: %d ring-full blocks, %d PortAudio status flags, "
                            "%d stale windows skipped", epoch.ring.overflow_blocks if epoch
                            else 0, src.status_flags, self.windows_skipped,
                            extra={"kwsd_event": "overflow"})
                last_over = over
            status = self.status_text()
            if ready and status != last_status:
                n.status(status)
                last_status = status
            if wd and now >= next_ping:
                if blocks > seen_blocks and self.windows_done > seen_windows:
                    n.watchdog()
                    seen_blocks, seen_windows = blocks, self.windows_done
                    next_ping = now + wd
                # else: the pipeline is stalled; try again next tick, systemd may restart us

    def _shutdown(self):
        self.notifier.stopping()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(0.5)
        if self.actions is not None:
            self.actions.close()
            self._log_pin_history(self.actions)
            log.info("outputs in their safe state", extra={"kwsd_event": "safe_state"})
        if self.source is not None:
            self.source.stop(0.3)
        log.info("stopped: %d detection(s), %d window(s) scored, %d skipped",
                 self.detections, self.windows_done, self.windows_skipped,
                 extra={"kwsd_event": "stopped", "kwsd_detections": self.detections})

    @staticmethod
    def _log_pin_history(actions):
        for name, states in actions.pin_history().items():
            text = ",".join(f"{int(v)}@{t:.6f}" for t, v in states)
            log.info("pin history %s: %s", name, text,
                     extra={"kwsd_event": "pin_history", "kwsd_output": name,
                            "kwsd_states": text})


class _WallDetection:
    """A :class:`~kwsd.detector.Detection` plus its wall-clock time (for ``KWSD_TIME``)."""

    def __init__(self, det, wall_time):
        self.time, self.score, self.keyword = det.time, det.score, det.keyword
        self.wall_time = wall_time


def run_service(config_path, input_file=None, model=None, verbose=False):
    """The ``kwsd run`` body: load config, set up logging, run; returns the exit status."""
    from kwsd.systemd import setup_logging

    cfg = load_config(config_path)
    model = os.path.abspath(model) if model else None
    if model:
        cfg["model"] = model
    setup_logging("debug" if verbose else cfg["logging"]["level"], cfg["logging"]["journal"])
    return Service(cfg, config_path=config_path, input_file=input_file,
                   model_override=model).run()
