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
from kwsd.metadata import DetTable
from kwsd.model import load_model
from kwsd.pipeline import DecisionPath, Generation
from kwsd.spotter import resolve_settings

log = logging.getLogger("kwsd.models")


def detector_settings(model, cfg):
    """The model's detector defaults with the config's non-null ``detector`` keys applied.

    ``detector.max_false_accepts_per_hour`` (when ``threshold`` is null) takes the threshold
    from the model's held-out table (:meth:`kwsd.metadata.DetTable.threshold_for`).
    """
    overrides = cfg.detector.overrides()
    target = cfg.detector.max_false_accepts_per_hour
    if target is not None and overrides.get("threshold") is None:
        key = "detector.max_false_accepts_per_hour"
        try:
            table = DetTable.from_metadata(model.metadata)
            if table is None:
                raise ValueError("the model has no held-out table (det_table) in its "
                                 "metadata to choose a threshold from; set "
                                 "detector.threshold instead")
            overrides["threshold"] = table.threshold_for(target)
        except ValueError as err:
            raise ConfigError(None, key, f"{os.path.basename(model.path)}: {err}") from None
    try:
        return resolve_settings(model, overrides)
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
        self._shadow_sig = None           # the running shadow file's signature
        self._shadow_bad_sig = None       # a shadow file refused (not retried until changed)

    def _load(self, cfg):
        model = load_model(cfg.model, profile=cfg.profile)
        return model, detector_settings(model, cfg)

    def build(self, cfg, model, settings, previous=None) -> Generation:
        """The generation for a loaded model: its live path, and the shadow path when
        ``shadow_model`` is configured (see :meth:`shadow_path`)."""
        live = DecisionPath(model, settings, "live",
                            previous=previous.live if previous else None)
        shadow = self.shadow_path(cfg, previous)
        return Generation((previous.number + 1) if previous else 1,
                          (live,) if shadow is None else (live, shadow), cfg)

    def shadow_path(self, cfg, previous=None):
        """The shadow :class:`~kwsd.pipeline.DecisionPath` for ``cfg`` (None: none).

        The candidate model is validated like the live one and gets its detector settings
        by the same rule (what it would do if promoted with this config). The running
        shadow is kept, the same object, while its file is unchanged. A bad file is refused
        (``KWSD_EVENT=model_rejected``, ``KWSD_ROLE=shadow``): the previous shadow of that
        file, if any, runs on, and the live model is never touched.
        """
        old = next((p for p in (previous.paths if previous else ()) if p.role == "shadow"),
                   None)
        path = cfg.shadow_model
        if not path:
            self._shadow_sig = None
            return None
        if old is not None and old.model.path != path:
            old = None
        sig, _ = probe_file(path)
        if old is not None and (sig is None or sig == self._shadow_sig
                                or sig == self._shadow_bad_sig):
            return old
        if sig is not None and sig == self._shadow_bad_sig:
            return None
        try:
            model = load_model(path, profile=None)
            settings = detector_settings(model, cfg)
        except (ModelError, ConfigError) as err:
            reason = getattr(err, "reason", str(err))
            self.problem = f"rejected shadow {os.path.basename(path)}: {reason}"
            self._shadow_bad_sig = sig
            log.error("shadow model rejected%s: %s", f", keeping {old.name}" if old else "",
                      err, extra={"kwsd_event": "model_rejected", "kwsd_model": path,
                                  "kwsd_role": "shadow", "kwsd_reason": reason})
            return old
        self._shadow_sig, self._shadow_bad_sig = sig, None
        log.info("shadow model %s beside the live one (drives nothing)", model.describe(),
                 extra={"kwsd_event": "shadow_loaded", "kwsd_model": model.path})
        return DecisionPath(model, settings, "shadow", previous=old)

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
        if sig != self._running_sig and sig != self._bad_sig:
            log.info("model file changed: %s", path, extra={"kwsd_event": "model_changed"})
            self.try_load(self.config, "file changed")
            return
        self.poll_shadow()

    def poll_shadow(self):
        """Check the shadow model's file once; a changed one is loaded (or refused) and a
        new generation published with the same live path."""
        path = self.config.shadow_model
        if not path:
            return
        sig, _ = probe_file(path)
        if sig is None or sig == self._shadow_sig or sig == self._shadow_bad_sig:
            return
        gen = self.generation
        shadow = self.shadow_path(self.config, gen)
        current = next((p for p in gen.paths if p.role == "shadow"), None)
        if shadow is not current:
            paths = (gen.live,) if shadow is None else (gen.live, shadow)
            self._set(Generation(gen.number + 1, paths, self.config))
