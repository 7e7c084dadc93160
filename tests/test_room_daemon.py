"""Learning from the room in the daemon itself (in process, deterministic: an array source,
the real threads' step functions in the test's thread, gpiozero mock pins, real TFLite),
replaying real speech with three "stop"s (kwsd/data/demo.flac)."""

import logging
import os
import shutil

import numpy as np
import pytest

from kwsd.audiofile import read_audio
from kwsd.captures import list_captures
from kwsd.config import parse_config
from kwsd.errors import ConfigError
from kwsd.meter import load_meters
from kwsd.model import BUNDLED_MODEL, load_model
from kwsd.model_supervisor import detector_settings
from kwsd.room import model_sha256
from test_captures import _read_only_dir
from test_daemon_inprocess import Clock, make_service, play
from test_meter import TABLE, _model_with_table

TINY = "tests/data/tiny_float.tflite"


@pytest.fixture(scope="module")
def demo():
    x, rate = read_audio("kwsd/data/demo.flac")
    assert rate == 16000
    return (np.clip(x[:, 0], -1, 1) * 32767).astype(np.int16)


def _events(caplog, name):
    return [r for r in caplog.records if getattr(r, "kwsd_event", "") == name]


def _run(model, samples, caplog, **sections):
    clock = Clock()
    svc, src = make_service(model, samples, clock, **sections)
    with caplog.at_level(logging.INFO, logger="kwsd"):
        svc.start(threads=False)
        play(svc, src, len(samples) / 16000 + 1, clock)
        svc.shutdown()
    return svc


def _pin_ever_high(caplog):
    """Whether any output pin went high (from the pin histories logged at shutdown)."""
    return any(s.startswith("1@") for r in _events(caplog, "pin_history")
               for s in r.kwsd_states.split(","))


def test_captures_one_per_detection_and_near_miss_and_the_meter_survives(tmp_path, demo,
                                                                         caplog):
    # near_miss 0.2: the word "off" at 17 s comes that close (smoothed 0.25), nothing else
    capture = {"dir": str(tmp_path / "captures"), "near_miss": 0.2, "max_mb": 50}
    svc = _run(BUNDLED_MODEL, demo, caplog, capture=capture, state_dir=str(tmp_path / "state"))
    assert svc.status.detections == 3
    caps = list_captures(tmp_path / "captures")
    kinds = [rec["kind"] for _, _, rec in caps]
    assert kinds.count("detection") == 3
    assert kinds.count("near_miss") == len(_events(caplog, "near_miss")) >= 1
    assert all(flac.with_suffix(".json").exists() for _, flac, _ in caps)
    sha = model_sha256(load_model(BUNDLED_MODEL))
    state = load_meters(tmp_path / "state" / "meter.json")["meters"][sha]
    hops = state["hops"]
    assert hops > 200 and state["detections"] == 3
    # a restart continues the same model's meter
    caplog.clear()
    _run(BUNDLED_MODEL, demo, caplog, state_dir=str(tmp_path / "state"))
    assert load_meters(tmp_path / "state" / "meter.json")["meters"][sha]["hops"] == 2 * hops


def test_a_read_only_capture_dir_loses_no_detection(tmp_path, demo, caplog):
    root = tmp_path / "captures"
    with _read_only_dir(root):
        svc = _run(BUNDLED_MODEL, demo, caplog, capture={"dir": str(root)})
    assert svc.status.detections == 3 and len(_events(caplog, "action")) == 3
    assert len(_events(caplog, "capture_failed")) == 1


def test_the_shadow_logs_would_be_detections_and_changes_no_pin(tmp_path, demo, caplog):
    # live: the tiny test model, which hears no "stop" in the demo; shadow: the real model
    svc = _run(TINY, demo, caplog, shadow_model=BUNDLED_MODEL, state_dir=str(tmp_path))
    shadow = _events(caplog, "shadow_detection")
    assert len(shadow) == 3 and svc.status.detections == 0
    assert not _pin_ever_high(caplog) and _events(caplog, "pin_history")
    assert not _events(caplog, "detection") and not _events(caplog, "action")
    doc = load_meters(tmp_path / "meter.json")
    counts = doc["agreement"][f"{model_sha256(load_model(TINY))}:"
                              f"{model_sha256(load_model(BUNDLED_MODEL))}"]
    assert counts == {"both": 0, "live_only": 0, "shadow_only": 3}


def test_a_bad_shadow_file_is_refused_and_the_live_model_runs_on(tmp_path, demo, caplog):
    bad = tmp_path / "candidate.tflite"
    bad.write_bytes(b"not a model")
    svc = _run(BUNDLED_MODEL, demo, caplog, shadow_model=str(bad))
    rejected = _events(caplog, "model_rejected")
    assert len(rejected) == 1 and str(bad) in rejected[0].kwsd_model
    assert svc.status.detections == 3 and len(_events(caplog, "action")) == 3
    assert not _events(caplog, "shadow_detection")


def test_max_false_accepts_per_hour_picks_the_threshold_the_metadata_says(tmp_path):
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = _model_with_table(tmp_path, TABLE)
    for target, threshold in ((0.5, 0.6), (0.35, 0.7), (100, 0.3), (0.0, 0.9)):
        cfg = parse_config({"model": str(model),
                            "detector": {"max_false_accepts_per_hour": target}})
        assert detector_settings(load_model(model), cfg).threshold == threshold
    # in the daemon, and a numeric threshold still wins
    for detector, threshold in (({"max_false_accepts_per_hour": 0.5}, 0.6),
                                ({"max_false_accepts_per_hour": 0.5, "threshold": 0.9}, 0.9)):
        svc, _ = make_service(model, np.zeros(1600, np.int16),
                              detector=dict(detector, max_lag_s=60.0))
        svc.start(threads=False)
        assert svc.models.generation.live.settings.threshold == threshold
        svc.shutdown()
    # a model without a table, or a target no row meets: a config error naming the key
    (tmp_path / "strict").mkdir()
    strict = _model_with_table(tmp_path / "strict", dict(TABLE, rows=[[0.9, 0.1, 0.8]]))
    for m, why in ((TINY, "has no held-out table"), (strict, "the fewest is 0.1/h")):
        cfg = parse_config({"model": str(m), "detector": {"max_false_accepts_per_hour": 0.01}})
        with pytest.raises(ConfigError, match="detector.max_false_accepts_per_hour: .*" + why):
            detector_settings(load_model(m), cfg)


def test_a_shadow_file_is_swapped_in_and_a_bad_one_refused_while_running(tmp_path, demo,
                                                                         caplog):
    candidate = tmp_path / "candidate.tflite"
    shutil.copyfile(TINY, candidate)
    clock = Clock()
    svc, src = make_service(BUNDLED_MODEL, demo, clock, shadow_model=str(candidate))
    with caplog.at_level(logging.INFO, logger="kwsd"):
        svc.start(threads=False)
        play(svc, src, 5.0, clock)                      # the tiny candidate hears nothing
        live = svc.models.generation.live
        shutil.copyfile(BUNDLED_MODEL, tmp_path / "new.tflite")
        os.replace(tmp_path / "new.tflite", candidate)  # a new candidate, by the usual swap
        play(svc, src, 5.0, clock)
        (tmp_path / "bad.tflite").write_bytes(b"\0" * 64)
        os.replace(tmp_path / "bad.tflite", candidate)  # a broken one: refused
        play(svc, src, 20.0, clock)
        svc.shutdown()
    assert len(_events(caplog, "shadow_loaded")) == 2
    rejected = _events(caplog, "model_rejected")
    assert len(rejected) == 1 and rejected[0].kwsd_role == "shadow"
    assert svc.models.generation.live is live                 # the live path never changed
    assert svc.status.detections == 3
    shadow = [float(r.kwsd_stream_time) for r in _events(caplog, "shadow_detection")]
    assert [round(t) for t in shadow] == [15, 21]             # the kept candidate heard on


def test_captures_switched_on_by_a_reload(tmp_path, demo, caplog):
    import yaml
    from kwsd.config import load_config
    from kwsd.service import Service
    from kwsd.sources import ArraySource
    from kwsd.systemd import Notifier

    data = {"model": BUNDLED_MODEL, "gpio": {"pin_factory": "mock"},
            "detector": {"max_lag_s": 60.0}}
    path = tmp_path / "kwsd.yaml"
    path.write_text(yaml.safe_dump(data))
    clock, src = Clock(), ArraySource(demo, 16000)
    svc = Service(load_config(path), config_path=str(path), source=src,
                  notifier=Notifier(env={}), clock=clock)
    with caplog.at_level(logging.INFO, logger="kwsd"):
        svc.start(threads=False)
        play(svc, src, 10.0, clock)                    # the first stop: nothing recorded
        data["capture"] = {"dir": str(tmp_path / "captures"), "near_miss": None}
        path.write_text(yaml.safe_dump(data))
        svc.reload()                                   # what SIGHUP does
        play(svc, src, 20.0, clock)
        svc.shutdown()
    assert svc.status.detections == 3
    times = sorted(rec["detection_time"] for _, _, rec in list_captures(tmp_path / "captures"))
    assert [round(t) for t in times] == [15, 21]
