"""Averaging trained models into one (``kwsd-train ensemble``).

Models trained with the same recipe but different seeds disagree on the margins: the same
settings gave other-word false positives of 0.33% and 0.87% on the same held-out clips, and
so calibrated thresholds of 0.52 and 0.74 (MODEL_CARD.md). The mean of their scores varies
less than either. :func:`ensemble` builds one Keras model whose output is the mean of its
members' outputs and writes it as a model folder (``model.keras`` and
``train_config.json``) that ``kwsd-train export`` turns into one ``.tflite`` file, like any
trained model: one graph, so the daemon, ``kwsd detect`` and ``kwsd-train evaluate`` run the
ensemble without knowing it is one.

Members must share the keyword and the features; their windows may differ in length (a 1 s
and a 1.5 s member of ``logmel40``): the ensemble hears the longest window, and a member with a
shorter one reads its last frames, which are the very features that member computes for
itself (checked numerically when the ensemble is built). The work folder, seed and data of the
first member with the longest window are the ensemble's (its export draws representative
windows from there), and every member's folder, profile, seed, best epoch and size are
recorded (``ensemble``), which the export copies into the model's provenance.

    kwsd-train ensemble runs/seed1/model runs/seed2/model --out runs/ensemble/model
    kwsd-train ensemble runs/x3/model runs/x15/model --out runs/mixed/model   # 1 s + 1.5 s
    kwsd-train export runs/ensemble/model
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .data import DatasetError
from .export import load_trained_model, read_train_config


def tail_frames(longer, shorter) -> int | None:
    """The number of frames ``shorter`` (a :class:`~kwsd.profiles.FeatureProfile`) computes,
    if they are the last frames of ``longer``'s window for the same audio; else None.

    >>> from kwsd.profiles import get_profile
    >>> tail_frames(get_profile("logmel40-1500ms"), get_profile("logmel40"))
    49
    >>> tail_frames(get_profile("logmel40"), get_profile("tutorial-mfcc16")) is None
    True
    """
    def rest(p):
        return {k: v for k, v in p.to_dict().items() if k not in ("name", "window_s")}
    if rest(longer) != rest(shorter) or shorter.window_s > longer.window_s:
        return None
    x = np.random.default_rng(0).standard_normal(longer.window_samples + 1) * 0.1
    a, b = longer.features(x), shorter.features(x)
    k = b.shape[0]
    return k if np.allclose(a[-k:], b, atol=1e-4) else None


def _profile(model_dir, config):
    """The feature profile a trained model folder's configuration names, or a
    :class:`~training.data.DatasetError` naming its ``train_config.json``."""
    from kwsd.profiles import FeatureProfile

    try:
        return FeatureProfile.from_dict(config["profile"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(Path(model_dir) / "train_config.json",
                           f"no usable feature profile ({type(exc).__name__}: {exc}); "
                           "expected the one kwsd-train train writes") from None


def ensemble(model_dirs, out_dir, command: str = "") -> dict:
    """Write ``out_dir/model.keras``, the mean of the members' outputs, and its
    ``train_config.json``; returns that configuration."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) < 2:
        raise DatasetError(dirs[0] if dirs else Path("."), "an ensemble needs at least two "
                                                           "trained model folders")
    configs = [read_train_config(d) for d in dirs]
    profiles = [_profile(d, c) for d, c in zip(dirs, configs)]
    main = max(range(len(dirs)), key=lambda i: (profiles[i].window_s, -i))
    base = configs[main]
    frames = []
    for d, c, p in zip(dirs, configs, profiles):
        if c.get("keyword") != base.get("keyword"):
            raise DatasetError(d, f"its keyword differs from {dirs[main]}'s "
                                  f"({c.get('keyword')!r} against {base.get('keyword')!r}): "
                                  "every member must hear the same keyword")
        frames.append(tail_frames(profiles[main], p))
        if frames[-1] is None:
            raise DatasetError(d, f"its profile {p.name!r} does not hear what "
                                  f"{dirs[main]}'s {profiles[main].name!r} hears over a shorter "
                                  "window: every member must compute the same features")
    import keras

    members = []
    for i, d in enumerate(dirs):
        m = load_trained_model(d)
        outputs = m.outputs[0] if isinstance(m.outputs, (list, tuple)) else m.outputs
        members.append(keras.Model(m.inputs[0], outputs, name=f"member_{i}"))
    inp = keras.Input(shape=members[main].input_shape[1:], name="features")
    total = profiles[main].frames_per_window
    heard = []
    for i, (m, k) in enumerate(zip(members, frames)):
        x = inp
        if k < total:   # a shorter window: the longest window's last k frames
            skip = ((total - k, 0), (0, 0))
            x = keras.layers.Cropping2D(skip[::-1] if profiles[main].layout == "coef_time"
                                        else skip, name=f"last_{k}_frames_{i}")(inp)
        heard.append(m(x))
    out = keras.layers.Average(name="mean_score")(heard)
    merged = keras.Model(inp, out, name="ensemble")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save(out_dir / "model.keras")
    config = dict(base, command=command, parameters=int(merged.count_params()),
                  ensemble=[{"model_dir": str(d.resolve()), "profile": p.name,
                             "seed": c.get("seed"), "best_epoch": c.get("best_epoch"),
                             "parameters": c.get("parameters")}
                            for d, c, p in zip(dirs, configs, profiles)])
    with open(out_dir / "train_config.json", "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=1)
    return config
