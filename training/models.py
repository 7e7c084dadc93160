"""Keras models: the tutorial's CNN (for comparison) and small streaming-friendly nets.

Every model takes one feature window shaped like the profile's input
(``profile.input_shape[1:]``), normalises it inside the model (a ``Normalization`` layer
adapted on training features, so the exported ``.tflite`` takes raw kwsd features) and ends
in one sigmoid unit: the probability of the keyword.

Architectures (``ARCHITECTURES``):

* ``tutorial`` -- the seed model's CNN (3x Conv2D 2x2 + max-pool, Dense 64, dropout 0.5).
* ``dscnn``    -- a depthwise-separable CNN after Zhang et al., "Hello Edge" (DS-CNN-S,
  ~24k parameters with 64 channels): a strided 10x4 conv, then 4 depthwise 3x3 + pointwise
  blocks, global average pooling.
* ``tcsep``    -- a temporal (1-D) separable conv net in the spirit of TC-ResNet: the mel
  bins are channels, 9-tap depthwise convs over time with residual connections (~21k
  parameters at the default width 48, 46 KB as int8); about 5x faster to train on CPU
  than ``dscnn`` and at least as accurate on this project's data.

>>> ARCHITECTURES
('tutorial', 'dscnn', 'tcsep')
"""

from __future__ import annotations

ARCHITECTURES = ("tutorial", "dscnn", "tcsep")


def _normaliser(features, layout_axis):
    from keras import layers

    norm = layers.Normalization(axis=layout_axis, name="normalise")
    norm.adapt(features)
    return norm


def build_model(arch: str, input_shape, layout: str = "time_coef", train_features=None,
                width: int | None = None, dropout: float = 0.2, seed: int = 0):
    """A Keras model (not compiled).

    ``input_shape`` is one window, e.g. ``(49, 40, 1)``, laid out as the profile's
    ``layout`` says (``time_coef`` or ``coef_time``); ``train_features`` (windows of that
    shape) adapts the built-in normalisation, per feature coefficient; ``width`` overrides
    the channel count.
    """
    import keras
    from keras import layers

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} (expected one of "
                         f"{', '.join(ARCHITECTURES)})")
    keras.utils.set_random_seed(seed)
    input_shape = tuple(int(d) for d in input_shape)
    inp = keras.Input(input_shape, name="features")
    x = inp
    if train_features is not None:
        x = _normaliser(train_features, coef_axis(layout))(x)
    if arch == "tutorial":
        for filters in (32, 32, 64):     # the seed model's layers, 'valid' padding as in Keras
            x = layers.Conv2D(filters, 2, activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(64, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif arch == "dscnn":
        ch = width or 64
        x = layers.Conv2D(ch, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        for _ in range(4):
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
            x = layers.Conv2D(ch, 1, use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(dropout)(x)
    else:  # tcsep
        ch = width or 48
        t, c = input_shape[0], input_shape[1]
        if layout == "coef_time":
            x = layers.Permute((2, 1, 3))(x)
            t, c = c, t
        x = layers.Reshape((t, c))(x)
        x = layers.Conv1D(ch, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        for stride in (1, 2, 1, 2, 1):
            y = layers.SeparableConv1D(ch, 9, strides=stride, padding="same", use_bias=False)(x)
            y = layers.BatchNormalization(momentum=0.9)(y)
            if stride == 1:
                y = layers.Add()([y, x])
            x = layers.ReLU()(y)
        x = layers.GlobalAveragePooling1D()(x)
        x = layers.Dropout(dropout)(x)
    out = layers.Dense(1, activation="sigmoid", name="keyword")(x)
    return keras.Model(inp, out, name=arch)


def coef_axis(layout: str) -> int:
    """The batch axis holding the feature coefficients for a profile layout.

    >>> coef_axis("time_coef"), coef_axis("coef_time")
    (2, 1)
    """
    return 1 if layout == "coef_time" else 2


def parameter_count(model) -> int:
    """Trainable + non-trainable parameters."""
    return int(model.count_params())
