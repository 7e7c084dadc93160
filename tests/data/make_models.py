"""Build the tiny test models in this folder (needs TensorFlow: ``pip install .[train]``).

    python tests/data/make_models.py

The models are untrained (fixed random weights): they exist to exercise loading,
validation, quantisation and hot swap, not to spot anything. The files are committed so
the runtime tests also run where TensorFlow is absent (the tflite-runtime CI pass).
"""

import os

import numpy as np
import tensorflow as tf

from kwsd.metadata import FORMAT, embed_metadata
from kwsd.profiles import get_profile

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny(input_shape, seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape=input_shape[1:], batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid")(x)
    return tf.keras.Model(inp, out)


def convert(model, int8, input_shape):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(20):
                yield [rng.normal(-5, 3, input_shape).astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def meta(profile, threshold):
    return {"format": FORMAT, "keyword": "stop", "profile": profile.to_dict(),
            "detector": {"threshold": threshold, "smoothing": 2, "refractory_s": 1.0, "hop_s": 0.1},
            "provenance": {"note": "untrained test model from tests/data/make_models.py"}}


def main():
    p = get_profile("logmel40")
    m = tiny(p.input_shape, 0)
    outputs = {
        "tiny_float.tflite": embed_metadata(convert(m, False, p.input_shape), meta(p, 0.6)),
        "tiny_int8.tflite": embed_metadata(convert(m, True, p.input_shape), meta(p, 0.6)),
        # input shape of no known profile, no metadata
        "unknown_shape.tflite": convert(tiny((1, 10, 10, 1), 1), False, (1, 10, 10, 1)),
        # metadata says logmel40 but the input is 10x10
        "wrong_shape.tflite": embed_metadata(convert(tiny((1, 10, 10, 1), 1), False, (1, 10, 10, 1)),
                                             meta(p, 0.6)),
    }
    for name, data in outputs.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(name, len(data), "bytes")


if __name__ == "__main__":
    main()
