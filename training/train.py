"""Training a keyword model on a prepared work folder (``kwsd-train train``).

Reads the index written by ``kwsd-train prepare``, gets the feature windows (from the
cache), balances the rare keyword class with class weights, trains with Adam and a cosine
learning-rate decay, keeps the weights of the epoch with the lowest (class-weighted)
validation loss, then mines hard negatives: streams the training split's long recordings
through the model as the daemon would (every 0.1 s) and trains on with the windows it
fires on. Writes ``MODEL_DIR/model.keras``, ``history.json``,
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


def mask_features(x: np.ndarray, rng: np.random.Generator, fill: np.ndarray, coef_axis: int,
                  freq_masks=2, freq_width=4, time_masks=1, time_width=3) -> np.ndarray:
    """SpecAugment-style masking of a batch ``[n, a, b, 1]`` in place: per window,
    ``freq_masks`` bands of up to ``freq_width`` coefficients and ``time_masks`` spans of up
    to ``time_width`` frames set to ``fill`` (the per-coefficient training mean, i.e. zero
    after the model's normalisation)."""
    n = x.shape[0]
    ncoef, nframes = x.shape[coef_axis], x.shape[3 - coef_axis]
    for i in range(n):
        for _ in range(freq_masks):
            w = int(rng.integers(0, freq_width + 1))
            c0 = int(rng.integers(0, ncoef - w + 1))
            if coef_axis == 2:
                x[i, :, c0:c0 + w, 0] = fill[c0:c0 + w]
            else:
                x[i, c0:c0 + w, :, 0] = fill[c0:c0 + w, None]
        for _ in range(time_masks):
            w = int(rng.integers(0, time_width + 1))
            t0 = int(rng.integers(0, nframes - w + 1))
            if coef_axis == 2:
                x[i, t0:t0 + w, :, 0] = fill
            else:
                x[i, :, t0:t0 + w, 0] = fill[:, None]
    return x


def _batches(x, y, w, batch_size, seed, fill, coef_axis):
    """A Keras ``PyDataset``: shuffled batches, masked afresh every epoch."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return int(np.ceil(len(x) / batch_size))

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            return mask_features(x[idx].copy(), self.rng, fill, coef_axis), y[idx], w[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

    return Batches()


def _fit(model, x, y, weights, x_va, va_y, epochs, batch_size, learning_rate, out_dir,
         progress, phase, spec_augment=None):
    """One training phase (fresh Adam + cosine decay); keeps the best validation epoch.
    ``spec_augment``: None, or ``(fill, coef_axis, seed)`` to mask features every epoch."""
    import keras

    steps = max(1, int(np.ceil(len(x) / batch_size))) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc"),
                           keras.metrics.BinaryAccuracy(name="accuracy")])
    best = str(Path(out_dir) / f"best_{phase}.weights.h5")
    callbacks, validation = [], None
    if len(x_va) and np.any(va_y == 1) and np.any(va_y == 0):
        validation = (x_va, va_y.astype(np.float32), sample_weights(va_y, weights))
        callbacks = [keras.callbacks.ModelCheckpoint(best, monitor="val_loss",
                                                     save_best_only=True,
                                                     save_weights_only=True)]
    elif phase == "main":
        print("warning: no validation windows with both classes; keeping the last epoch",
              file=sys.stderr)
    verbose = (1 if sys.stderr.isatty() else 2) if progress else 0
    if spec_augment is not None:
        fill, axis, seed = spec_augment
        data = _batches(x, y.astype(np.float32), sample_weights(y, weights), batch_size, seed,
                        fill, axis)
        history = model.fit(data, epochs=epochs, validation_data=validation,
                            callbacks=callbacks, verbose=verbose)
    else:
        history = model.fit(x, y.astype(np.float32), sample_weight=sample_weights(y, weights),
                            batch_size=batch_size, epochs=epochs, shuffle=True,
                            validation_data=validation, callbacks=callbacks, verbose=verbose)
    if callbacks:
        model.load_weights(best)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def mine_hard_negatives(model, items, profile, workdir, hop_s=0.1, min_score=0.05,
                        limit=4000, workers=None, progress=True) -> np.ndarray:
    """The windows of the training split's long recordings and noise (every ``hop_s``, as
    the daemon streams them) that ``model`` scores at least ``min_score``, highest first,
    at most ``limit``: the false accepts of tomorrow."""
    from .features import stream_features

    sources = [it for it in items if it.split == "training" and it.role in ("long", "noise")]
    files = stream_features(sources, profile, hop_s, workdir, workers, progress)
    # Scored in chunks read from the cache, the kept windows gathered at the end: never all
    # windows in memory at once (a 1.5 s training that held them, and their float32 copy,
    # peaked at 11.8 GiB; two trainings side by side were killed for memory).
    parts = [np.load(f, mmap_mode="r") for f in files]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, profile.frames_per_window, profile.ncoef), np.float16)
    scores, chunk = [], []
    for i, p in enumerate(parts):          # in chunks of about 16,000 windows
        chunk.append(p)
        if sum(map(len, chunk)) >= 16384 or i == len(parts) - 1:
            x = to_model_input(np.concatenate(chunk), profile)
            scores.append(model.predict(x, batch_size=512, verbose=0).reshape(-1))
            chunk = []
    scores = np.concatenate(scores)
    order = np.argsort(-scores)
    keep = order[scores[order] >= min_score][:limit]
    starts = np.cumsum([0] + [len(p) for p in parts])
    which = np.searchsorted(starts, keep, side="right") - 1
    print(f"mined {len(keep)} hard negatives from {len(scores)} streamed windows "
          f"({len(sources)} files; scores >= {min_score})", file=sys.stderr)
    shape = (len(keep),) + parts[0].shape[1:]
    return np.array([parts[w][k - starts[w]] for w, k in zip(which, keep)],
                    dtype=np.float16).reshape(shape)


def train(workdir, out_dir, arch="tcsep", epochs=30, batch_size=128, learning_rate=2e-3,
          width=None, dropout=0.2, positive_weight=None, seed=None, progress=True,
          workers=None, command=None, mine_rounds=2, mine_epochs=None, mine_min_score=0.05,
          mine_limit=4000, spec_augment=True, exclude=()) -> dict:
    """Train one model; returns the training summary (also written to ``train_config.json``).

    ``exclude``: indices of index items whose windows are left out of training (the
    held-out fold of :mod:`training.crossval`).

    After the main phase, ``mine_rounds`` times: stream the training split's long
    recordings through the model, add the windows it scores >= ``mine_min_score`` as
    negatives, and train ``mine_epochs`` more epochs at a lower learning rate.
    """
    from .data import DatasetError

    items, meta, profile, arrays = load_prepared(workdir, progress, workers)
    seed = meta["seed"] if seed is None else seed
    tr, va = arrays["training"], arrays["validation"]
    if len(exclude):
        keep = ~np.isin(tr.group, np.fromiter(exclude, dtype=np.int64))
        tr = Arrays(tr.x[keep], tr.y[keep], tr.kind[keep], tr.group[keep])
    if np.sum(tr.y == 1) == 0 or np.sum(tr.y == 0) == 0:
        raise DatasetError(workdir, f"the training split needs both keyword and other windows "
                                    f"(got {tr.counts()})")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from .models import build_model, parameter_count

    keras.utils.set_random_seed(seed)
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()   # same seed, same model
    x_tr = to_model_input(tr.x, profile)
    y_tr = tr.y
    x_va = to_model_input(va.x, profile)
    weights = class_weights(y_tr, positive_weight)
    rng = np.random.default_rng(seed)
    adapt = x_tr[rng.choice(len(x_tr), size=min(len(x_tr), 4000), replace=False)]
    model = build_model(arch, x_tr.shape[1:], profile.layout, adapt, width=width,
                        dropout=dropout, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .models import coef_axis

    axis = coef_axis(profile.layout)
    masking = None
    if spec_augment:
        fill = adapt.mean(axis=(0, 3 - axis, 3)).astype(np.float32)
        masking = (fill, axis, seed)
    t0 = time.time()
    hist = _fit(model, x_tr, y_tr, weights, x_va, va.y, epochs, batch_size, learning_rate,
                out_dir, progress, "main", masking)
    phases = [{"phase": "main", "epochs": epochs, "windows": int(len(x_tr)),
               "best_epoch": int(np.argmin(hist["val_loss"])) + 1 if "val_loss" in hist
               else epochs}]
    mine_epochs = mine_epochs or max(3, epochs // 3)
    mined_total = 0
    for round_ in range(mine_rounds):
        mined = mine_hard_negatives(model, items, profile, workdir, min_score=mine_min_score,
                                    limit=mine_limit, workers=workers, progress=progress)
        if not len(mined):
            break
        mined_total += len(mined)
        x_tr = np.concatenate([x_tr, to_model_input(mined, profile)])
        y_tr = np.concatenate([y_tr, np.zeros(len(mined), y_tr.dtype)])
        weights = class_weights(y_tr, positive_weight)
        more = _fit(model, x_tr, y_tr, weights, x_va, va.y, mine_epochs, batch_size,
                    learning_rate / 4, out_dir, progress, f"mine{round_ + 1}", masking)
        for k, v in more.items():
            hist.setdefault(k, []).extend(v)
        phases.append({"phase": f"mine{round_ + 1}", "epochs": mine_epochs,
                       "mined": int(len(mined)), "windows": int(len(x_tr)),
                       "best_epoch": int(np.argmin(more["val_loss"])) + 1
                       if "val_loss" in more else mine_epochs})
    seconds = time.time() - t0
    model.save(out_dir / "model.keras")
    windows = {split: arrays[split].counts() for split in arrays}
    windows["training"] = tr.counts()
    windows["training"]["mined"] = mined_total
    windows["training"]["negative"] += mined_total
    summary = {
        "workdir": str(Path(workdir).resolve()),
        "arch": arch, "epochs": epochs, "best_epoch": phases[0]["best_epoch"],
        "phases": phases, "mine": {"rounds": mine_rounds, "epochs": mine_epochs,
                                   "min_score": mine_min_score, "limit": mine_limit},
        "batch_size": batch_size, "spec_augment": bool(spec_augment),
        "learning_rate": learning_rate, "width": width, "dropout": dropout,
        "class_weights": {str(k): v for k, v in weights.items()}, "seed": seed,
        "parameters": parameter_count(model), "train_seconds": round(seconds, 1),
        "windows": windows,
        "profile": profile.to_dict(), "augment": meta["augment"],
        "data": meta.get("data", {}), "split": meta.get("split", {}),
        "command": command or " ".join(sys.argv), "excluded_items": len(exclude),
        "keyword": meta["keyword"],
    }
    with open(out_dir / "history.json", "w", encoding="utf-8") as fh:
        json.dump(hist, fh, indent=1)
    with open(out_dir / "train_config.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    try:
        from .report import plot_history

        plot_history(hist, out_dir / "training_curves.png",
                     marks=[p["epochs"] for p in phases[:-1]])
    except Exception as exc:  # noqa: BLE001 - a plot never fails a training run
        print(f"warning: could not plot the training curves ({exc})", file=sys.stderr)
    return summary


__all__ = ["train", "load_prepared", "class_weights", "Arrays"]
