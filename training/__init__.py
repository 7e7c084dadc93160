"""kwsd-train: the training package (TensorFlow lives only here, never on the Pi).

Modules: :mod:`~training.data` (finding, splitting, loading audio), :mod:`~training.augment`
(waveform augmentation and windows), :mod:`~training.features` (cached, parallel features
through kwsd's own profiles), :mod:`~training.models` (Keras nets), :mod:`~training.train`,
:mod:`~training.export` (``.tflite`` with kwsd metadata), :mod:`~training.evaluate`
(streaming evaluation with kwsd's own detector), :mod:`~training.report`,
:mod:`~training.download`, :mod:`~training.synth`; the CLI is :mod:`training.__main__`.
"""
