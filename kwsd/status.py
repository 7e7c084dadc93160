"""The daemon's state in one line, for ``STATUS=`` (``systemctl status kwsd``) and the log.

>>> s = Status()
>>> s.audio("lost", "no audio for 2.1 s")
>>> s.text()
'detections 0; audio lost (no audio for 2.1 s)'
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("kwsd.service")


class Status:
    """Counters and states the parts update; :meth:`text` renders them.

    Attributes:
        detections: live detections so far. last: ``(wall time, score)`` of the last one.
        audio_state: ``"waiting"`` (no audio yet), ``"running"`` or ``"lost"``.
    """

    def __init__(self):
        self.detections = 0
        self.last = None
        self.audio_state = "waiting"
        self.audio_reason = None
        self.config_problem = None
        self._overflows = 0
        self._next_overflow_log = 0.0

    def log_overflows(self, source, pipeline, now):
        """Log a warning when overflows grew (at most every 10 s of ``now``)."""
        epoch = getattr(source, "epoch", None)
        ring = epoch.ring.overflow_blocks if epoch else 0
        over = ring + source.status_flags
        if over > self._overflows and now >= self._next_overflow_log:
            self._overflows, self._next_overflow_log = over, now + 10.0
            log.warning("audio overflow: %d ring-full blocks, %d PortAudio status flags, "
                        "%d late windows skipped", ring, source.status_flags, pipeline.skipped,
                        extra={"kwsd_event": "overflow"})

    def audio(self, state, reason=None):
        """Record the audio state (``"running"`` clears the reason)."""
        self.audio_state, self.audio_reason = state, reason

    def detected(self, wall_time, score):
        """Count one live detection."""
        self.detections += 1
        self.last = (wall_time, score)

    def text(self, generation=None, model_problem=None, pipeline=None, source=None) -> str:
        """The ``STATUS=`` line: model, detections, last one, audio, overflows, problems."""
        parts = []
        if generation is not None:
            live = generation.live
            parts.append(f"model {live.name} ({live.model.profile.name})")
        parts.append(f"detections {self.detections}")
        if self.last:
            wall, score = self.last
            parts.append("last " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
                         + f" score {score:.2f}")
        audio = f"audio {self.audio_state}"
        if self.audio_state == "lost" and self.audio_reason:
            audio += f" ({self.audio_reason})"
        parts.append(audio)
        epoch = getattr(source, "epoch", None)
        if epoch is not None and pipeline is not None:
            flags = getattr(source, "status_flags", 0)
            if epoch.ring.overflow_frames or flags or pipeline.skipped:
                parts.append(f"overflows {epoch.ring.overflow_blocks}+{flags} "
                             f"skipped {pipeline.skipped}")
        if model_problem:
            parts.append(model_problem)
        if self.config_problem:
            parts.append(f"rejected config: {self.config_problem}")
        return "; ".join(parts)
