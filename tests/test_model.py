"""Loading models: runtimes, metadata, validation, quantisation."""

import shutil

import numpy as np
import pytest

from conftest import TEST_DATA
from kwsd.errors import ModelError
from kwsd.metadata import embed_metadata, read_metadata
from kwsd.model import load_model
from kwsd.profiles import get_profile


def _can_write_metadata():
    try:
        import ai_edge_litert.schema_py_generated  # noqa: F401
        return True
    except ImportError:
        return False


needs_writer = pytest.mark.skipif(not _can_write_metadata(),
                                  reason="writing metadata needs ai-edge-litert")


def test_tutorial_model_loads_without_metadata_by_its_input_shape(seed_model_path):
    model = load_model(seed_model_path)
    assert model.profile.name == "tutorial-mfcc16"
    assert model.metadata == {}
    assert model.defaults.threshold == 0.5
    assert model.runtime in ("ai_edge_litert", "tflite_runtime", "tensorflow")


def test_metadata_travels_inside_the_file_and_sets_defaults():
    model = load_model(TEST_DATA / "tiny_float.tflite")
    assert model.profile == get_profile("logmel40")
    assert model.defaults.threshold == 0.6 and model.defaults.smoothing == 2
    assert model.keyword == "stop"


def _tiny_with_threshold(tmp_path, threshold):
    """tiny_float.tflite with its metadata's threshold rewritten."""
    data = (TEST_DATA / "tiny_float.tflite").read_bytes()
    meta = read_metadata(data)
    meta["detector"]["threshold"] = threshold
    out = tmp_path / "m.tflite"
    out.write_bytes(embed_metadata(data, meta))
    return out


@needs_writer
def test_metadata_roundtrip_keeps_the_model_working(tmp_path):
    out = _tiny_with_threshold(tmp_path, 0.9)
    before, after = load_model(TEST_DATA / "tiny_float.tflite"), load_model(out)
    assert after.defaults.threshold == 0.9
    feats = np.random.default_rng(0).normal(-5, 2, (49, 40)).astype(np.float32)
    assert after.score(feats) == before.score(feats)


@needs_writer
def test_rewriting_the_metadata_replaces_it_instead_of_piling_it_up(tmp_path):
    """`kwsd-train evaluate --write-threshold` run twice on one model: the second write
    replaces the first's metadata, so the file is the size the first write made it."""
    data = (TEST_DATA / "tiny_float.tflite").read_bytes()
    meta = read_metadata(data)
    once = embed_metadata(data, meta)
    twice = embed_metadata(once, meta)
    assert len(twice) == len(once) and read_metadata(twice) == meta
    meta["detector"]["threshold"] = 0.9
    assert read_metadata(embed_metadata(twice, meta))["detector"]["threshold"] == 0.9


def test_int8_model_scores_like_its_float_twin():
    f, q = load_model(TEST_DATA / "tiny_float.tflite"), load_model(TEST_DATA / "tiny_int8.tflite")
    assert q.quantized and not f.quantized
    rng = np.random.default_rng(1)
    diffs = [abs(f.score(x) - q.score(x)) for x in rng.normal(-5, 3, (20, 49, 40)).astype(np.float32)]
    assert max(diffs) < 0.05


@pytest.mark.parametrize("name, content, reason", [
    ("empty.tflite", b"", "empty"),
    ("text.tflite", b"this is not a model at all", "not a TFLite model"),
    ("truncated.tflite", None, ""),
])
def test_broken_files_give_a_clear_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        content = (TEST_DATA / "tiny_float.tflite").read_bytes()[:900]
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_model(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_wrong_shapes_and_unknown_profiles_are_refused():
    with pytest.raises(ModelError, match=r"input shape \[1, 10, 10, 1\] does not match profile 'logmel40'"):
        load_model(TEST_DATA / "wrong_shape.tflite")
    with pytest.raises(ModelError, match="matches no known feature profile"):
        load_model(TEST_DATA / "unknown_shape.tflite")
    with pytest.raises(ModelError, match="trained on profile 'logmel40', not 'tutorial-mfcc16'"):
        load_model(TEST_DATA / "tiny_float.tflite", profile="tutorial-mfcc16")


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="cannot read the model file"):
        load_model(tmp_path / "nope.tflite")


@needs_writer
def test_bad_metadata_is_refused(tmp_path):
    with pytest.raises(ModelError, match="detector defaults are invalid"):
        load_model(_tiny_with_threshold(tmp_path, 7))
