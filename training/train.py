"""Training a keyword model on a prepared work folder (``kwsd-train train``).

Reads the index written by ``kwsd-train prepare``, gets the feature windows (from the
cache), balances the rare keyword class with class weights, trains with Adam and a cosine
learning-rate decay, keeps the weights of the epoch with the lowest (class-weighted)
validation loss, and writes ``MODEL_DIR/model.keras``, ``history.json``,
``training_curves.png`` and ``train_config.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from kwsd.profiles import FeatureProfile

from .augment import AugmentConfig
from .data import LoadProblems, load_index
from .features import Arrays, build_features, to_model_input


def load_prepared(workdir, progress=True, workers=None):
    """``(items, meta, profile, arrays)`` of a prepared work folder (features from cache)."""
    workdir = Path(workdir)
    items, meta = load_index(workdir / "index.json")
    profile = FeatureProfile.from_dict(meta["profile"])
    aug = AugmentConfig.from_dict(meta["augment"])
    problems = LoadProblems()
    arrays = build_features(items, profile, aug, meta["seed"], workdir,
                            ir_files=meta.get("ir_files", []), workers=workers,
                            progress=progress, problems=problems)
    return items, meta, profile, arrays


def class_weights(y: np.ndarray, positive_weight: float | None = None) -> dict:
    """``{0: w0, 1: w1}`` making both classes weigh the same in total (or w1/w0 as given).

    >>> class_weights(np.array([0, 0, 0, 1]))
    {0: 0.6667, 1: 2.0}
    """
    n = len(y)
    npos = max(1, int(np.sum(y == 1)))
    nneg = max(1, n - npos)
    if positive_weight is None:
        return {0: round(n / (2 * nneg), 4), 1: round(n / (2 * npos), 4)}
    return {0: 1.0, 1: float(positive_weight)}


def sample_weights(y, weights):
    """Per-window weights from class weights."""
    return np.where(y == 1, weights[1], weights[0]).astype(np.float32)


def train(workdir, out_dir, arch="dscnn", epochs=30, batch_size=128, learning_rate=2e-3,
          width=None, dropout=0.2, positive_weight=None, seed=None, progress=True,
          workers=None, command=None) -> dict:
    """Train one model; returns the training summary (also written to ``train_config.json``)."""
    items, meta, profile, arrays = load_prepared(workdir, progress, workers)
    seed = meta["seed"] if seed is None else seed
    tr, va = arrays["training"], arrays["validation"]
    if np.sum(tr.y == 1) == 0 or np.sum(tr.y == 0) == 0:
        raise SystemExit(f"kwsd-train: {workdir}: the training split needs both keyword and "
                         f"other windows (got {tr.counts()})")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from .models import build_model, parameter_count

    keras.utils.set_random_seed(seed)
    x_tr = to_model_input(tr.x, profile)
    x_va = to_model_input(va.x, profile)
    weights = class_weights(tr.y, positive_weight)
    rng = np.random.default_rng(seed)
    adapt = x_tr[rng.choice(len(x_tr), size=min(len(x_tr), 4000), replace=False)]
    model = build_model(arch, x_tr.shape[1:], profile.layout, adapt, width=width,
                        dropout=dropout, seed=seed)
    steps = max(1, int(np.ceil(len(x_tr) / batch_size))) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc"),
                           keras.metrics.BinaryAccuracy(name="accuracy")])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [keras.callbacks.ModelCheckpoint(str(out_dir / "best.weights.h5"),
                                                 monitor="val_loss", save_best_only=True,
                                                 save_weights_only=True)]
    validation = None
    if len(x_va) and np.any(va.y == 1) and np.any(va.y == 0):
        validation = (x_va, va.y.astype(np.float32), sample_weights(va.y, weights))
    else:
        callbacks = []
        print("warning: no validation windows with both classes; keeping the last epoch",
              file=sys.stderr)
    t0 = time.time()
    history = model.fit(x_tr, tr.y.astype(np.float32), sample_weight=sample_weights(tr.y, weights),
                        batch_size=batch_size, epochs=epochs, shuffle=True,
                        validation_data=validation, callbacks=callbacks,
                        verbose=(1 if sys.stderr.isatty() else 2) if progress else 0)
    seconds = time.time() - t0
    if callbacks:
        model.load_weights(str(out_dir / "best.weights.h5"))
    model.save(out_dir / "model.keras")
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best_epoch = int(np.argmin(hist["val_loss"])) + 1 if "val_loss" in hist else epochs
    summary = {
        "workdir": str(Path(workdir).resolve()),
        "arch": arch, "epochs": epochs, "best_epoch": best_epoch, "batch_size": batch_size,
        "learning_rate": learning_rate, "width": width, "dropout": dropout,
        "class_weights": {str(k): v for k, v in weights.items()}, "seed": seed,
        "parameters": parameter_count(model), "train_seconds": round(seconds, 1),
        "windows": {split: arrays[split].counts() for split in arrays},
        "profile": profile.to_dict(), "augment": meta["augment"],
        "data": meta.get("data", {}), "split": meta.get("split", {}),
        "command": command or " ".join(sys.argv),
        "keyword": meta["keyword"],
    }
    with open(out_dir / "history.json", "w", encoding="utf-8") as fh:
        json.dump(hist, fh, indent=1)
    with open(out_dir / "train_config.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    try:
        from .report import plot_history

        plot_history(hist, out_dir / "training_curves.png")
    except Exception as exc:  # noqa: BLE001 - a plot never fails a training run
        print(f"warning: could not plot the training curves ({exc})", file=sys.stderr)
    return summary


__all__ = ["train", "load_prepared", "class_weights", "Arrays"]
