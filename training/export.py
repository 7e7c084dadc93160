"""Exporting a trained Keras model to the single ``.tflite`` file kwsd loads.

Writes ``model_float.tflite`` and ``model_int8.tflite`` (full integer: int8 weights,
activations, input and output, calibrated on a representative sample of training
windows), both with kwsd's metadata embedded (:func:`kwsd.metadata.embed_metadata`)::

    {"format": "kwsd-model/1", "keyword": ..., "profile": profile.to_dict(),
     "detector": {"threshold", "smoothing", "refractory_s", "hop_s"},
     "provenance": {"data", "date", "git_commit", "command", "metrics", "training"}}

then checks parity (int8 vs float scores on the validation windows: max and mean absolute
difference) and loads both through :func:`kwsd.model.load_model`, the daemon's own loader.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from kwsd.detector import DetectorSettings
from kwsd.metadata import FORMAT, embed_metadata
from kwsd.model import load_model_bytes

from .features import to_model_input


@contextlib.contextmanager
def quiet_fds():
    """Silence stdout/stderr at the file-descriptor level (the TFLite converter prints
    pages of signatures and MLIR diagnostics); restored on exit, shown on failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace")[-4000:])
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def git_commit(path=None) -> str:
    """The repository's HEAD commit (with ``-dirty`` if modified), or ``"unknown"``."""
    cwd = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ("-dirty" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def convert(model, representative: np.ndarray | None = None) -> bytes:
    """Keras model -> TFLite bytes: float, or full int8 (int8 input and output) when a
    representative batch of model inputs is given."""
    import tensorflow as tf

    with quiet_fds():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if representative is not None:
            def gen():
                for i in range(len(representative)):
                    yield [representative[i:i + 1].astype(np.float32)]
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = gen
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with warnings.catch_warnings():
            # int8 input with its quantisation computed from the representative data (kwsd
            # applies it on the way in): the converter's "Statistics for quantized inputs
            # were expected" does not apply
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())


def compact(tflite: bytes) -> bytes:
    """The same model with its tensor names shortened to ``t<index>``.

    The converter names tensors after every fused Keras op (hundreds of bytes each, ~10% of
    a small int8 model); interpreters address tensors by index, so nothing else changes.
    """
    import flatbuffers

    from kwsd.metadata import tflite_schema

    schema = tflite_schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(tflite), 0))
    for subgraph in model.subgraphs or []:
        for i, tensor in enumerate(subgraph.tensors or []):
            tensor.name = f"t{i}"
    builder = flatbuffers.Builder(len(tflite))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def build_metadata(keyword, profile, settings: DetectorSettings, provenance: dict) -> dict:
    """The kwsd metadata dict (see module docs)."""
    return {"format": FORMAT, "keyword": keyword, "profile": profile.to_dict(),
            "detector": {"threshold": float(settings.threshold),
                         "smoothing": int(settings.smoothing),
                         "refractory_s": float(settings.refractory_s),
                         "hop_s": float(settings.hop_s)},
            "provenance": provenance}


def score_windows(model, features: np.ndarray) -> np.ndarray:
    """Scores of ``[n, frames, coefs]`` windows through a loaded :class:`kwsd.model.KwsModel`."""
    return np.array([model.score(np.asarray(f, dtype=np.float32)) for f in features])


def read_train_config(model_dir) -> dict:
    """``MODEL_DIR/train_config.json``, after checking that the folder holds a trained model
    (:class:`~training.data.DatasetError` naming the folder or file otherwise)."""
    from .data import DatasetError

    model_dir = Path(model_dir)
    path = model_dir / "train_config.json"
    if not (model_dir / "model.keras").is_file() or not path.is_file():
        raise DatasetError(model_dir, "not a trained model folder: expected model.keras and "
                                      "train_config.json (written by kwsd-train train)")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise DatasetError(path, f"unreadable training configuration: {exc}") from None


def load_trained_model(model_dir):
    """``MODEL_DIR/model.keras`` as a Keras model; a file Keras cannot read is a
    :class:`~training.data.DatasetError` naming it."""
    import keras

    from .data import DatasetError

    path = Path(model_dir) / "model.keras"
    try:
        return keras.models.load_model(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(path, f"not a readable Keras model ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200]})") from None


def export(model_dir, workdir=None, settings: DetectorSettings | None = None,
           metrics: dict | None = None, representative_size=500, out_name="model",
           progress=True, arrays=None) -> dict:
    """Convert ``MODEL_DIR/model.keras`` to float and int8 ``.tflite`` files with metadata,
    check int8-vs-float parity on the validation windows and load both through kwsd.

    Returns a summary dict (paths, sizes, parity), also written to ``export.json``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kwsd.profiles import FeatureProfile

    model_dir = Path(model_dir)
    config = read_train_config(model_dir)
    workdir = workdir or config["workdir"]
    profile = FeatureProfile.from_dict(config["profile"])
    if arrays is None:
        from .train import load_prepared

        arrays = load_prepared(workdir, progress=progress)[3]
    model = load_trained_model(model_dir)
    tr, va = arrays["training"], arrays["validation"]
    rng = np.random.default_rng(config["seed"])
    # representative windows: both classes, so the int8 ranges cover keyword activations too
    pos, neg = np.nonzero(tr.y == 1)[0], np.nonzero(tr.y == 0)[0]
    half = representative_size // 2
    pick = np.concatenate([rng.choice(pos, min(half, len(pos)), replace=False),
                           rng.choice(neg, min(representative_size - half, len(neg)),
                                      replace=False)])
    representative = to_model_input(tr.x[np.sort(pick)], profile)
    settings = settings or DetectorSettings(threshold=0.5, smoothing=3, refractory_s=1.0,
                                            hop_s=0.1)
    provenance = {
        "data": config.get("data", {}),
        "split": config.get("split", {}),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": config.get("command", ""),
        "training": {k: config[k] for k in ("arch", "epochs", "best_epoch", "batch_size",
                                             "learning_rate", "width", "dropout",
                                             "class_weights", "seed", "parameters",
                                             "augment", "windows", "ensemble")
                     if k in config},
        "metrics": metrics or {},
    }
    meta = build_metadata(config["keyword"], profile, settings, provenance)
    float_bytes = embed_metadata(compact(convert(model)), meta)
    int8_bytes = embed_metadata(compact(convert(model, representative)), meta)
    paths = {"float": model_dir / f"{out_name}_float.tflite",
             "int8": model_dir / f"{out_name}_int8.tflite"}
    paths["float"].write_bytes(float_bytes)
    paths["int8"].write_bytes(int8_bytes)
    # parity, through kwsd's own loader (the daemon's code path)
    loaded = {k: load_model_bytes(p.read_bytes(), str(p)) for k, p in paths.items()}
    check = va.x if len(va.x) else tr.x[:500]
    keras_scores = model.predict(to_model_input(check, profile), verbose=0,
                                 batch_size=256).reshape(-1)
    float_scores = score_windows(loaded["float"], check)
    int8_scores = score_windows(loaded["int8"], check)
    diff = np.abs(int8_scores - float_scores)
    summary = {
        "float": {"path": str(paths["float"]), "bytes": len(float_bytes)},
        "int8": {"path": str(paths["int8"]), "bytes": len(int8_bytes)},
        "parity": {"windows": int(len(check)),
                   "int8_vs_float_max_abs": round(float(diff.max()), 5),
                   "int8_vs_float_mean_abs": round(float(diff.mean()), 5),
                   "tflite_float_vs_keras_max_abs":
                       round(float(np.abs(float_scores - keras_scores).max()), 6)},
        "loaded": {k: m.describe() for k, m in loaded.items()},
        "detector": meta["detector"],
    }
    with open(model_dir / "export.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    return summary
