"""What a live detection does in the daemon: the journal line and the configured actions.

:class:`Outputs` is the pipeline's ``on_detection`` (decision thread): it logs the detection
with its fields (``KWSD_EVENT=detection``) and fires the :class:`~kwsd.actions.Actions`.
On shutdown or a config change it puts every output in its safe state first.

>>> from kwsd.config import parse_config
>>> from kwsd.detector import Detection
>>> from kwsd.pipeline import Hop
>>> from kwsd.status import Status
>>> cfg = parse_config({"gpio": {"pin_factory": "mock"},
...                     "actions": [{"type": "led", "pin": 17, "on_time": 5}]})
>>> outputs = Outputs(cfg, status=Status())
>>> outputs(Hop(1.4, 0.93, 0.93, Detection(1.4, 0.93), "stop.tflite", 1, "live", None))
>>> outputs.status.detections           # and the LED is lit for 5 s
1
>>> outputs.close()                     # LED off, pin released
"""

from __future__ import annotations

import logging
import time

from kwsd.actions import Actions

log = logging.getLogger("kwsd.service")


class WallDetection:
    """A :class:`~kwsd.detector.Detection` plus its wall-clock time (for ``KWSD_TIME``)."""

    def __init__(self, det, wall_time):
        self.time, self.score, self.keyword = det.time, det.score, det.keyword
        self.wall_time = wall_time


class Outputs:
    """The detection handler. ``config`` None: log only (``kwsd listen`` without --actions).

    Args:
        config: the :class:`~kwsd.config.Config` whose ``actions`` and ``gpio`` to set up.
        status: the :class:`~kwsd.status.Status` that counts detections.
        on_change: called after each detection (wakes the supervisor to update STATUS=).
    """

    def __init__(self, config, status, on_change=lambda: None):
        self.status = status
        self.on_change = on_change
        self.actions = None
        self.closed = False
        if config is not None:
            self.actions = Actions(config.actions, config.gpio.pin_factory)

    def __call__(self, hop):
        """Handle one live detection (a :class:`~kwsd.pipeline.Hop`)."""
        wall, det = time.time(), hop.detection
        self.status.detected(wall, det.score)
        log.info("detected %r (score %.3f) at stream time %.2f s", det.keyword, det.score,
                 det.time, extra={"kwsd_event": "detection", "kwsd_keyword": det.keyword,
                                  "kwsd_score": f"{det.score:.3f}", "kwsd_model": hop.model,
                                  "kwsd_stream_time": f"{det.time:.3f}",
                                  "kwsd_mono": f"{time.monotonic():.6f}",
                                  "kwsd_audio_mono": f"{hop.arrived or 0:.6f}"})
        actions = self.actions
        if actions is not None and not self.closed:
            actions.fire(WallDetection(det, wall))
        self.on_change()

    def replace(self, config):
        """New actions for a reloaded config (the old outputs go safe first)."""
        self.close(final=False)
        self.actions = Actions(config.actions, config.gpio.pin_factory)

    def close(self, final=True):
        """Every output to its safe state, commands stopped; the pin history logged."""
        self.closed = final
        actions, self.actions = self.actions, None
        if actions is None:
            return
        actions.close()
        histories = actions.pin_history()
        start = min((states[0][0] for states in histories.values() if states), default=0.0)
        for name, states in histories.items():
            text = ",".join(f"{int(v)}@{t:.6f}" for t, v in states)     # monotonic times
            readable = ", ".join(f"{'on' if v else 'off'} at {t - start:.3f} s"
                                 for t, v in states)
            log.info("pin history %s (from the start): %s", name, readable, extra={
                "kwsd_event": "pin_history", "kwsd_output": name, "kwsd_states": text})
        if final:
            log.info("outputs in their safe state", extra={"kwsd_event": "safe_state"})
