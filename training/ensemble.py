"""Averaging trained models into one (``kwsd-train ensemble``).

Models trained with the same recipe but different seeds disagree on the margins: the same
settings gave other-word false positives of 0.33% and 0.87% on the same held-out clips, and
so calibrated thresholds of 0.52 and 0.74 (MODEL_CARD.md). The mean of their scores varies
less than either. :func:`ensemble` builds one Keras model whose output is the mean of its
members' outputs and writes it as a model folder (``model.keras`` and
``train_config.json``) that ``kwsd-train export`` turns into one ``.tflite`` file, like any
trained model: one graph, so the daemon, ``kwsd detect`` and ``kwsd-train evaluate`` run the
ensemble without knowing it is one.

Members must share the keyword and the feature profile (checked); the work folder, seed and
data of the first member are the ensemble's (its export draws representative windows from
there), and every member's folder, seed, best epoch and size are recorded
(``ensemble``), which the export copies into the model's provenance.

    kwsd-train ensemble runs/seed1/model runs/seed2/model --out runs/ensemble/model
    kwsd-train export runs/ensemble/model
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .data import DatasetError
from .export import load_trained_model, read_train_config


def ensemble(model_dirs, out_dir, command: str = "") -> dict:
    """Write ``out_dir/model.keras``, the mean of the members' outputs, and its
    ``train_config.json``; returns that configuration."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) < 2:
        raise DatasetError(dirs[0] if dirs else Path("."), "an ensemble needs at least two "
                                                           "trained model folders")
    configs = [read_train_config(d) for d in dirs]
    first = configs[0]
    for d, c in zip(dirs[1:], configs[1:]):
        for key in ("keyword", "profile"):
            if c.get(key) != first.get(key):
                raise DatasetError(d, f"its {key} differs from {dirs[0]}'s: every member "
                                      f"must hear the same keyword through the same profile")
    import keras

    members = []
    for i, d in enumerate(dirs):
        m = load_trained_model(d)
        outputs = m.outputs[0] if isinstance(m.outputs, (list, tuple)) else m.outputs
        members.append(keras.Model(m.inputs[0], outputs, name=f"member_{i}"))
    inp = keras.Input(shape=members[0].input_shape[1:], name="features")
    out = keras.layers.Average(name="mean_score")([m(inp) for m in members])
    merged = keras.Model(inp, out, name="ensemble")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save(out_dir / "model.keras")
    config = dict(first, command=command, parameters=int(merged.count_params()),
                  ensemble=[{"model_dir": str(d.resolve()), "seed": c.get("seed"),
                             "best_epoch": c.get("best_epoch"),
                             "parameters": c.get("parameters")}
                            for d, c in zip(dirs, configs)])
    with open(out_dir / "train_config.json", "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=1)
    return config
