"""The decision path for audio in hand: :class:`Spotter` runs :class:`kwsd.pipeline.Pipeline`
(the daemon's own composition) with both of its sides in the calling thread.

>>> from kwsd.model import load_model
>>> spotter = Spotter(load_model("kwsd/models/stop.tflite"), input_rate=16000)  # doctest: +SKIP
>>> for event in spotter.process(block):                                      # doctest: +SKIP
...     if event.kind == "detection":
...         print(event.time, event.score)
"""

from __future__ import annotations

from dataclasses import dataclass

from .detector import DetectorSettings
from .pipeline import DecisionPath, Generation, Pipeline


@dataclass(frozen=True)
class Event:
    """``kind`` is ``"score"`` (every hop: the raw model score and the smoothed one) or
    ``"detection"`` (``score`` is the smoothed score that fired)."""

    kind: str
    time: float
    score: float
    smoothed: float = 0.0


def resolve_settings(model, overrides: dict | None = None) -> DetectorSettings:
    """The model's recommended detector settings with non-None ``overrides`` applied."""
    return model.defaults.with_overrides(**(overrides or {}))


class Spotter:
    """Feed blocks of device audio, get :class:`Event` objects back.

    Args:
        model: a :class:`~kwsd.model.KwsModel`.
        input_rate: the audio's sample rate.
        settings: detector settings (default: the model's own).
        channel: ``"mix"`` or a channel index.
    """

    def __init__(self, model, input_rate: int, settings: DetectorSettings | None = None,
                 channel="mix"):
        self.model = model
        self.settings = settings or model.defaults
        self.pipeline = Pipeline(Generation(1, (DecisionPath(model, self.settings),)),
                                 channel)
        self.pipeline.start_epoch(input_rate)
        self._events = []
        self.pipeline.observers.append(self._on_hop)

    def _on_hop(self, hop):
        self._events.append(Event("score", round(hop.time, 6), hop.score, hop.smoothed))
        if hop.detection is not None:
            d = hop.detection
            self._events.append(Event("detection", d.time, d.score, d.score))

    def process(self, block) -> list:
        """Run one block through; returns the score and detection events it completed."""
        self.pipeline.push(block)
        self.pipeline.decide()
        events, self._events = self._events, []
        return events

    def finish(self) -> list:
        """The end of the audio (a file's end): the events of the windows still held back."""
        self.pipeline.finish()
        self.pipeline.decide()
        events, self._events = self._events, []
        return events
