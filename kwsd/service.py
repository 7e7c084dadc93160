"""``kwsd run``: the parts of the always-on service, put together (see README, "How it works").

    audio source --ring--> kwsd-features --windows--> kwsd-decide --> actions, observers
    (kwsd.capture)          (Pipeline.push)           (Pipeline.decide)
    main thread: kwsd.supervisor (signals, READY/STATUS/WATCHDOG, thread health) and
                 kwsd.model_supervisor (model file watch, reload, generations)

For a deterministic test, pass an :class:`~kwsd.sources.ArraySource`, call :meth:`start`
with ``threads=False`` and drive it with ``source.feed()`` and :meth:`step`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from kwsd.config import load_config
from kwsd.errors import ConfigError
from kwsd.model_supervisor import ModelSupervisor
from kwsd.outputs import Outputs
from kwsd.pipeline import Pipeline
from kwsd.sources import open_source
from kwsd.room import RoomWatch
from kwsd.status import Status
from kwsd.supervisor import Notifier, Supervisor
from kwsd.workers import Feeder, Worker

log = logging.getLogger("kwsd.service")


class Service:
    """The daemon. :meth:`run` blocks until SIGTERM/SIGINT, the end of the input, or a dead
    thread, and returns the exit status.

    Args:
        config: a :class:`~kwsd.config.Config`. config_path: re-read on SIGHUP.
        source: an audio source (default: the configured device, or ``input_file``).
        input_file: replay this audio file in real time instead of capturing.
        notifier: a :class:`~kwsd.systemd.Notifier` (default: from the environment).
        actions: False to run no actions (``kwsd listen``).
        model_override: a model path that wins over the config's, also after SIGHUP.
        clock: monotonic seconds for the watchdog and the model poll (tests: a fake one).
    """

    def __init__(self, config, config_path=None, source=None, input_file=None, notifier=None,
                 actions=True, model_override=None, clock=time.monotonic):
        self.config, self.config_path, self.source = config, config_path, source
        self.input_file, self.use_actions, self.clock = input_file, actions, clock
        self.model_override = model_override
        self.supervisor = Supervisor(notifier or Notifier(), clock)
        self.status = Status()
        self.pipeline = Pipeline(None, config.audio.channel, config.detector.max_lag_s)
        self.models = ModelSupervisor(config, self.pipeline.publish)
        self.feeder = Feeder(self.pipeline, self.status, self.supervisor.on_fatal,
                             self.supervisor.wake, clock)
        self.outputs, self.workers, self._next_poll = None, [], 0.0
        self.room = None                  # captures, meter, shadow log (kwsd.room)

    def status_text(self):
        """The ``STATUS=`` line."""
        return self.status.text(self.models.generation, self.models.problem, self.pipeline,
                                self.source)

    def heartbeats(self):
        """``{thread: heartbeat}`` of every thread the watchdog vouches for."""
        beats = {w.name: w.heartbeat for w in self.workers}
        if getattr(self.source, "heartbeat", None) is not None:
            beats["source"] = self.source.heartbeat
        return beats

    def _make_source(self):
        return open_source(self.config.audio, self.models.generation.live.model.profile,
                           self.input_file)

    def start(self, threads=True):
        """Load the model, open the input, set up outputs, start the threads; READY=1."""
        self.models.start()
        self.source = self.source or self._make_source()   # a bad --input fails here
        self.outputs = Outputs(self.config if self.use_actions else None, self.status,
                               self.supervisor.wake.set)
        self.pipeline.on_detection = self.outputs
        self.room = RoomWatch.from_config(self.pipeline, self.config, self._device)
        if threads:
            self.workers = [Worker("kwsd-features", self.feeder.step, self.supervisor.on_fatal),
                            Worker("kwsd-decide", self.feeder.decide_step,
                                   self.supervisor.on_fatal)]
            for w in self.workers:
                w.start()
        self.source.start(self.feeder)
        self.supervisor.ready(self.status_text())

    def _device(self):
        return getattr(getattr(self.source, "epoch", None), "device", "") or ""

    def step(self):
        """One pass of everything, in this thread (deterministic tests)."""
        self.feeder.step(0)
        self.feeder.decide_step(0)
        self.poll()
        self.supervisor.tick(self.status_text(), self.heartbeats())

    def poll(self):
        """The model file watch every ``watch_interval_s``; overflows logged as they grow."""
        now = self.clock()
        if self.config.watch_model and now >= self._next_poll:
            self._next_poll = now + self.config.watch_interval_s
            self.models.poll()
        if self.room is not None:
            self.room.tick(now)
        self.status.log_overflows(self.source, self.pipeline, now)

    def reload(self):
        """SIGHUP: re-read the config and the model; keep everything on any failure."""
        cfg = self.config
        if self.config_path:
            try:
                cfg = load_config(self.config_path)
            except ConfigError as err:
                self.status.config_problem = str(err)
                log.error("config rejected, keeping the running one: %s", err,
                          extra={"kwsd_event": "config_rejected", "kwsd_reason": str(err)})
                return
            if self.model_override:
                cfg = dataclasses.replace(cfg, model=self.model_override)
        self.status.config_problem = None
        old = self.config
        if not self.models.try_load(cfg, "reloaded"):
            return
        self.config = cfg
        self.pipeline.max_lag_s = cfg.detector.max_lag_s
        if self.room is None or not self.room.wanted(cfg):
            if self.room is not None:
                self.room.close()
            self.room = RoomWatch.from_config(self.pipeline, cfg, self._device)
        if self.use_actions and (cfg.actions, cfg.gpio) != (old.actions, old.gpio):
            self.outputs.replace(cfg)
        if cfg.audio != old.audio and not self.input_file:
            log.info("audio settings changed: reopening the device")
            self.source.stop()
            self.pipeline.channel = cfg.audio.channel
            self.source = self._make_source()
            self.source.start(self.feeder)

    def run(self):
        """Start, supervise until stopped; return the exit status."""
        try:
            self.start()
            return self.supervisor.run(self)
        finally:
            self.shutdown()

    def shutdown(self):
        """Outputs safe first, then threads and audio stopped; ``STOPPING=1``."""
        self.supervisor.notifier.stopping()
        if self.outputs is None:           # start() failed before anything ran
            return
        self.outputs.close()
        for w in self.workers:
            w.stop()
        if self.room is not None:
            self.room.close()             # the meter saved, queued captures written
        if self.source is not None:
            self.source.stop(0.3)
        log.info("stopped: %d detection(s), %d window(s) scored, %d skipped",
                 self.status.detections, self.pipeline.decided, self.pipeline.skipped,
                 extra={"kwsd_event": "stopped", "kwsd_detections": self.status.detections})


def run_service(config_path, input_file=None, model=None, verbose=False):
    """The ``kwsd run`` body: load config, set up logging, run; returns the exit status."""
    from kwsd.systemd import setup_logging

    cfg = load_config(config_path)
    model = os.path.abspath(model) if model else None
    if model:
        cfg = dataclasses.replace(cfg, model=model)
    setup_logging("debug" if verbose else cfg.logging.level, cfg.logging.journal)
    return Service(cfg, config_path=config_path, input_file=input_file,
                   model_override=model).run()
