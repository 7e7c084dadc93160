"""The whole decision path in one object: device audio -> features -> model -> detector.

:class:`Spotter` is what ``kwsd detect`` runs file blocks through. The daemon runs the same
three parts (:class:`~kwsd.frontend.FeatureStream`, :meth:`KwsModel.score
<kwsd.model.KwsModel.score>`, :class:`~kwsd.detector.Detector`) on its worker threads.

>>> from kwsd.model import load_model
>>> spotter = Spotter(load_model("kwsd/models/stop.tflite"), input_rate=16000)  # doctest: +SKIP
>>> for event in spotter.process(block):                                      # doctest: +SKIP
...     if event.kind == "detection":
...         print(event.time, event.score)
"""

from __future__ import annotations

from dataclasses import dataclass

from .detector import Detector, DetectorSettings
from .frontend import FeatureStream


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
        self.stream = FeatureStream(model.profile, input_rate, self.settings.hop_s, channel)
        self.detector = Detector(self.settings, model.keyword)

    def process(self, block) -> list:
        """Run one block through; returns the score and detection events it completed."""
        events = []
        for window in self.stream.push(block):
            score = self.model.score(window.features)
            detection = self.detector.update(window.time, score)
            events.append(Event("score", round(window.time, 6), score, self.detector.smoothed))
            if detection is not None:
                events.append(Event("detection", detection.time, detection.score, detection.score))
        return events
