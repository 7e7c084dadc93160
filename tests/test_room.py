"""Captures, meters and the shadow's log on the daemon's own pipeline, in process: real
speech with three "stop"s (kwsd/data/demo.flac), the bundled model, real files."""

import hashlib
import logging
import stat

import numpy as np
import pytest

from kwsd.audiofile import read_audio
from kwsd.captures import CaptureSettings, list_captures
from kwsd.detector import DetectorSettings
from kwsd.meter import load_meters
from kwsd.model import BUNDLED_MODEL, load_model
from kwsd.pipeline import DecisionPath, Generation, Pipeline
from kwsd.room import RoomWatch, model_sha256
from test_captures import _read_only_dir

DEMO = "kwsd/data/demo.flac"


@pytest.fixture(scope="module")
def demo():
    x, rate = read_audio(DEMO)
    return (np.clip(x, -1, 1) * 32767).astype(np.int16), rate   # as a microphone delivers


@pytest.fixture(scope="module")
def model():
    return load_model(BUNDLED_MODEL)


def _replay(samples, rate, model, capture=None, state_dir=None, shadow=None, block_s=0.02):
    """The daemon's two sides in turn, block by block; returns (live detections, watch)."""
    paths = [DecisionPath(model, model.defaults)]
    if shadow is not None:
        paths.append(DecisionPath(shadow[0], shadow[1], role="shadow"))
    pipe = Pipeline(Generation(1, tuple(paths)))
    detections = []
    pipe.on_detection = detections.append
    watch = RoomWatch(pipe, capture, state_dir=state_dir, device="demo-mic")
    pipe.start_epoch(rate)
    step = int(rate * block_s)
    for i in range(0, len(samples), step):
        pipe.push(samples[i:i + step])
        pipe.decide()
    watch.close()
    return detections, watch


def test_one_capture_per_detection_and_per_near_miss_with_sidecars(tmp_path, demo, model,
                                                                   caplog):
    # near_miss 0.2: the word "off" at 17 s comes that close (smoothed 0.25), nothing else
    settings = CaptureSettings(dir=str(tmp_path / "captures"), near_miss=0.2)
    with caplog.at_level(logging.INFO, logger="kwsd"):
        detections, watch = _replay(*demo, model, settings, state_dir=str(tmp_path / "state"))
    assert [round(d.time) for d in detections] == [4, 15, 21]     # the three real stops
    near = [r for r in caplog.records if getattr(r, "kwsd_event", "") == "near_miss"]
    caps = list_captures(tmp_path / "captures")
    kinds = [rec["kind"] for _, _, rec in caps]
    assert kinds.count("detection") == 3 and kinds.count("near_miss") == len(near) >= 1
    assert sorted(rec["detection_time"] for _, _, rec in caps if rec["kind"] == "detection") \
        == [d.time for d in detections]
    sha = model_sha256(model)
    for label, flac, rec in caps:
        assert label == "unlabelled" and stat.S_IMODE(flac.stat().st_mode) == 0o600
        assert rec["model_sha256"] == sha and rec["device"] == "demo-mic"
        assert rec["threshold"] == model.defaults.threshold and rec["rate"] == 16000
        assert rec["seconds"] == 2.0                                # 1.5 s before, 0.5 after
        assert rec["audio_start"] == pytest.approx(rec["time"] - 1.5, abs=1e-3)
        if rec["kind"] == "near_miss":
            assert settings.near_miss <= rec["score"] < model.defaults.threshold
    # the meter kept every live hop, and is on disk for `kwsd stats`
    state = load_meters(tmp_path / "state" / "meter.json")["meters"][sha]
    assert state["hops"] == watch.meters[sha].hops > 200
    assert state["fires"][round(model.defaults.threshold * 100) - 1] == 3


def test_an_unwritable_capture_dir_loses_no_detection(tmp_path, demo, model, caplog):
    root = tmp_path / "captures"
    with _read_only_dir(root):
        with caplog.at_level(logging.INFO, logger="kwsd"):
            detections, watch = _replay(*demo, model, CaptureSettings(dir=str(root)))
    assert len(detections) == 3
    failed = [r for r in caplog.records if getattr(r, "kwsd_event", "") == "capture_failed"]
    assert len(failed) == 1 and watch.writer.failed >= 3 and watch.writer.written == 0


def test_the_cap_holds_while_capturing(tmp_path, demo, model):
    settings = CaptureSettings(dir=str(tmp_path / "captures"), near_miss=0.05, max_mb=0.06)
    _, watch = _replay(*demo, model, settings)
    folder = tmp_path / "captures" / "unlabelled"
    assert watch.writer.written >= 3 and watch.writer.deleted >= 1
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 0.06e6


def test_the_shadow_logs_would_be_detections_and_is_metered_apart(tmp_path, demo, model,
                                                                   caplog):
    tiny = load_model("tests/data/tiny_float.tflite")
    with caplog.at_level(logging.INFO, logger="kwsd"):
        detections, watch = _replay(*demo, model, state_dir=str(tmp_path),
                                    shadow=(tiny, DetectorSettings(threshold=0.2)))
    shadow = [r for r in caplog.records if getattr(r, "kwsd_event", "") == "shadow_detection"]
    assert len(detections) == 3 and watch.shadow_detections == len(shadow) >= 1
    doc = load_meters(tmp_path / "meter.json")
    assert set(doc["meters"]) == {model_sha256(model), model_sha256(tiny)}
    (key, counts), = doc["agreement"].items()
    assert key == f"{model_sha256(model)}:{model_sha256(tiny)}"
    assert counts["both"] + counts["live_only"] == 3
    assert counts["both"] + counts["shadow_only"] == len(shadow)


def test_model_sha256_is_the_files_sha256(model):
    """The meter's and the captures' key, computed without hashlib (kwsd.room avoids mapping
    OpenSSL into the daemon), is the file's SHA-256 as everyone else computes it."""
    with open(model.path, "rb") as fh:
        expected = hashlib.sha256(fh.read()).hexdigest()
    assert model_sha256(model) == expected
