"""The model supervisor: loads and validates the model, watches its file, and publishes each
good one as a new :class:`~kwsd.pipeline.Generation`.

A candidate (a changed file, or SIGHUP) is validated with :func:`kwsd.model.load_model`
before anything changes; a bad one is logged (``KWSD_EVENT=model_rejected``), kept in
:attr:`ModelSupervisor.problem` for ``STATUS=``, and the running generation goes on. A model
file that goes missing or unreadable while running (deleted, ``chmod 000``, a dangling
symlink or a symlink loop, something that is not a regular file) is reported at once
(``KWSD_EVENT=model_file_problem``) without touching the loaded model, which keeps running;
it would only fail at the next restart.

A new generation's live path takes over the old one's detector history
(:class:`~kwsd.pipeline.DecisionPath` ``previous=``): a swap or a reload never repeats a
detection.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from kwsd.errors import ConfigError, ModelError
from kwsd.model import load_model
from kwsd.pipeline import DecisionPath, Generation
from kwsd.spotter import resolve_settings

log = logging.getLogger("kwsd.models")


def detector_settings(model, cfg):
    """The model's detector defaults with the config's non-null ``detector`` keys applied."""
    try:
        return resolve_settings(model, cfg.detector.overrides())
    except ValueError as err:
        raise ConfigError(None, "detector", str(err)) from None


def probe_file(path):
    """``(signature, None)`` for a readable regular file, else ``(None, problem)``.

    The signature (mtime, inode, size, device) changes when the file is replaced.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "dangling symlink" if os.path.islink(path) else "missing (deleted?)"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return None, "a symlink loop"
        return None, f"cannot be read ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if not os.access(path, os.R_OK):
        return None, "not readable (permission denied)"
    return (st.st_mtime_ns, st.st_ino, st.st_size, st.st_dev), None


class ModelSupervisor:
    """Owns the running :class:`~kwsd.pipeline.Generation`.

    Args:
        config: the :class:`~kwsd.config.Config` (its ``model``, ``profile``, ``detector``).
        publish: called with each new generation (the pipeline's ``publish``).
    """

    def __init__(self, config, publish):
        self.config = config
        self.publish = publish
        self.generation = None
        self.problem = None               # why the last candidate was refused / file trouble
        self._running_sig = None
        self._bad_sig = None
        self._file_problem = None

    def _load(self, cfg):
        model = load_model(cfg.model, profile=cfg.profile)
        return model, detector_settings(model, cfg)

    def build(self, cfg, model, settings, previous=None) -> Generation:
        """The generation for a loaded model: its live path (a shadow path would join here)."""
        live = DecisionPath(model, settings, "live",
                            previous=previous.live if previous else None)
        return Generation((previous.number + 1) if previous else 1, (live,), cfg)

    def start(self):
        """Load the configured model and publish generation 1 (raises ModelError /
        ConfigError: at start-up a bad model is fatal)."""
        model, settings = self._load(self.config)
        self._running_sig, _ = probe_file(self.config.model)
        self._set(self.build(self.config, model, settings))
        log.info("using model %s", model.path,
                 extra={"kwsd_event": "model_loaded", "kwsd_model": model.path})
        return self.generation

    def _set(self, gen):
        self.generation = gen
        self.config = gen.config
        self.publish(gen)

    def try_load(self, cfg, why) -> bool:
        """Validate ``cfg``'s model and publish it; on failure keep running, say why."""
        sig, _ = probe_file(cfg.model)
        try:
            model, settings = self._load(cfg)
        except (ModelError, ConfigError) as err:
            reason = getattr(err, "reason", str(err))
            self.problem = f"rejected {os.path.basename(cfg.model)}: {reason}"
            self._bad_sig = sig
            log.error("new model rejected, keeping %s: %s", self.generation.live.name, err,
                      extra={"kwsd_event": "model_rejected", "kwsd_model": cfg.model,
                             "kwsd_reason": reason})
            return False
        self._running_sig, self._bad_sig, self.problem = sig, None, None
        self._file_problem = None
        self._set(self.build(cfg, model, settings, self.generation))
        log.info("model %s (%s)", model.describe(), why,
                 extra={"kwsd_event": "model_loaded", "kwsd_model": model.path})
        return True

    def poll(self):
        """Check the model file once (the daemon calls this every ``watch_interval_s``)."""
        path = self.config.model
        sig, problem = probe_file(path)
        if problem:
            if problem != self._file_problem:
                self._file_problem = problem
                self.problem = f"model file {problem}; running the loaded model"
                log.error("model file %s: %s; the loaded model keeps running", path, problem,
                          extra={"kwsd_event": "model_file_problem", "kwsd_model": path,
                                 "kwsd_reason": problem})
            return
        if self._file_problem:
            self._file_problem = None
            self.problem = None
            log.info("model file %s is back", path, extra={"kwsd_event": "model_file_ok"})
        if sig == self._running_sig or sig == self._bad_sig:
            return
        log.info("model file changed: %s", path, extra={"kwsd_event": "model_changed"})
        self.try_load(self.config, "file changed")
