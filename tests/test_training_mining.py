"""Hard-negative mining: the windows of the training split's long audio that the model scores
highest, across every file, highest first; never the held-out files' windows."""

import numpy as np
import pytest
import soundfile

keras = pytest.importorskip("keras")

from kwsd.frontend import FeatureStream  # noqa: E402
from kwsd.profiles import get_profile  # noqa: E402
from training.data import Item  # noqa: E402
from training.features import to_model_input  # noqa: E402
from training.train import mine_hard_negatives  # noqa: E402


def loudness_model(profile):
    """A real Keras model whose score rises with a window's mean log-mel energy."""
    shape = to_model_input(np.zeros((1, profile.frames_per_window, profile.ncoef)), profile).shape
    inp = keras.Input(shape[1:])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inp))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.ones((1, 1)), np.array([0.0])])
    return model


def test_mining_keeps_the_highest_scoring_training_windows_across_all_files(tmp_path):
    profile = get_profile("logmel40")
    rng = np.random.default_rng(3)
    items = []
    for i, (split, amp) in enumerate([("training", 0.02), ("training", 0.3), ("validation", 0.9),
                                      ("training", 0.1), ("training", 0.0)]):
        t = np.arange(3 * 16000) / 16000
        audio = amp * rng.standard_normal(t.size) * (0.2 + np.abs(np.sin(2 * np.pi * (i + 1) * t / 3)))
        path = tmp_path / f"long{i}.wav"
        soundfile.write(path, audio.astype(np.float32), 16000)
        items.append(Item(path=str(path), role="long", split=split, sha1=f"file{i}"))
    model = loudness_model(profile)

    # what mining must return: all training windows scored at once, the best first
    windows = np.concatenate([
        np.stack([w.features for w in FeatureStream(profile, 16000, 0.1).push(
            soundfile.read(it.path, dtype="float32")[0])]).astype(np.float16)
        for it in items if it.split == "training"])
    scores = model.predict(to_model_input(windows, profile), verbose=0).reshape(-1)
    order = np.argsort(-scores)
    min_score = float(np.quantile(scores, 0.3))
    expected = windows[order[scores[order] >= min_score][:40]]

    mined = mine_hard_negatives(model, items, profile, tmp_path / "work", min_score=min_score,
                                limit=40, workers=1, progress=False)
    assert mined.dtype == np.float16 and len(mined) == 40
    np.testing.assert_array_equal(mined, expected)
    # the loudest file is held out: none of its windows may be mined
    held = np.stack([w.features for w in FeatureStream(profile, 16000, 0.1).push(
        soundfile.read(items[2].path, dtype="float32")[0])]).astype(np.float16)
    assert not any((held == m).all(axis=(1, 2)).any() for m in mined)
