"""``kwsd-train ensemble`` over members with different windows: a 1 s and a 1.5 s model of
the same features become one model that hears 1.5 s; the 1 s member hears its last second."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kwsd.profiles import get_profile  # noqa: E402
from training.__main__ import main  # noqa: E402


def member(folder, profile_name, seed):
    """A small trained-model folder (model.keras + train_config.json) on ``profile_name``."""
    profile = get_profile(profile_name)
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=profile.input_shape[1:])
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    folder.mkdir()
    keras.Model(inp, out).save(folder / "model.keras")
    (folder / "train_config.json").write_text(json.dumps(
        {"keyword": "stop", "profile": profile.to_dict(), "seed": seed, "workdir": str(folder)}))
    return folder


def test_a_1s_and_a_15s_member_average_into_one_model_that_hears_15s(tmp_path):
    short = member(tmp_path / "one_second", "logmel40", 1)
    long = member(tmp_path / "one_and_a_half", "logmel40-1500ms", 2)
    assert main(["ensemble", str(short), str(long), "--out", str(tmp_path / "ens")]) == 0

    ens = keras.models.load_model(tmp_path / "ens" / "model.keras")
    config = json.loads((tmp_path / "ens" / "train_config.json").read_text())
    assert ens.input_shape == (None, 74, 40, 1) and config["profile"]["name"] == "logmel40-1500ms"
    assert [m["profile"] for m in config["ensemble"]] == ["logmel40", "logmel40-1500ms"]

    x = np.random.default_rng(0).standard_normal((8, 74, 40, 1)).astype(np.float32)
    a = keras.models.load_model(short / "model.keras").predict(x[:, -49:], verbose=0)
    b = keras.models.load_model(long / "model.keras").predict(x, verbose=0)
    assert np.abs(a - b).max() > 0.01                       # the members disagree ...
    assert np.allclose(ens.predict(x, verbose=0), (a + b) / 2, atol=1e-6)   # ... the mean


def test_members_that_compute_other_features_are_refused_by_name(tmp_path, capsys):
    good = member(tmp_path / "logmel", "logmel40", 1)
    other = member(tmp_path / "tutorial", "tutorial-mfcc16", 2)
    assert main(["ensemble", str(good), str(other), "--out", str(tmp_path / "never")]) == 65
    err = capsys.readouterr().err
    assert str(other) in err and "'tutorial-mfcc16'" in err and "same features" in err
    assert not (tmp_path / "never").exists()

    broken = member(tmp_path / "broken", "logmel40", 3)
    (broken / "train_config.json").write_text(json.dumps({"keyword": "stop"}))
    assert main(["ensemble", str(good), str(broken), "--out", str(tmp_path / "never")]) == 65
    err = capsys.readouterr().err
    assert str(broken / "train_config.json") in err and "no usable feature profile" in err
    assert not (tmp_path / "never").exists()
