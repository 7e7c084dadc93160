"""The false-accept meter and the models' DET tables."""

import json

import numpy as np
import pytest

from conftest import TEST_DATA
from kwsd.detector import Detector, DetectorSettings
from kwsd.metadata import DetTable, embed_metadata, read_metadata
from kwsd.meter import THRESHOLDS, Agreement, ScoreMeter, load_meters, save_meters
from kwsd.model import load_model


def _scores(n=6000, seed=0):
    """Smoothed-looking scores: mostly low, with bursts (words) that rise and fall."""
    rng = np.random.default_rng(seed)
    s = rng.beta(0.5, 6, n)
    for start in rng.integers(0, n - 10, n // 60):
        s[start:start + rng.integers(2, 9)] = rng.uniform(0.3, 1.0)
    return s


@pytest.mark.parametrize("refractory_s, smoothing", [(1.0, 3), (0.0, 1), (2.5, 2)])
def test_the_meter_counts_what_the_detector_would_fire_at_every_threshold(refractory_s,
                                                                          smoothing):
    raw = _scores(seed=int(refractory_s * 10) + smoothing)
    meter = ScoreMeter("sha", hop_s=0.1, refractory_s=refractory_s, smoothing=smoothing)
    probe = Detector(DetectorSettings(threshold=0.5, smoothing=smoothing,
                                      refractory_s=refractory_s))
    for i, s in enumerate(raw):                 # the daemon feeds each hop's smoothed score
        t = i * 0.1
        probe.update(t, s)
        meter.update(t, probe.smoothed)
    for threshold in (0.05, 0.3, 0.5, 0.73, 0.9, 1.0):
        d = Detector(DetectorSettings(threshold=threshold, smoothing=smoothing,
                                      refractory_s=refractory_s))
        fired = sum(d.update(i * 0.1, s) is not None for i, s in enumerate(raw))
        assert meter.detections_at(threshold) == fired, threshold
    hours = len(raw) * 0.1 / 3600
    assert meter.per_hour(0.5) == pytest.approx(meter.detections_at(0.5) / hours)
    assert meter.share_above(0.0) == 1.0 and meter.hops == len(raw)
    assert meter.detections_at(0.3) > meter.detections_at(0.9)   # the test can tell them apart


def test_meter_state_survives_a_restart_for_the_same_model_and_settings(tmp_path):
    path = tmp_path / "state" / "meter.json"
    a = ScoreMeter("sha-a", hop_s=0.1, refractory_s=1.0, model="a.tflite")
    b = ScoreMeter("sha-b", hop_s=0.1, refractory_s=1.0, model="b.tflite")
    for i, s in enumerate(_scores(600)):
        a.update(i * 0.1, s)
        b.update(i * 0.1, s / 2)
    agree = Agreement(1.0)
    agree.add("live", 3.0)
    agree.add("shadow", 3.5)
    save_meters(path, [a, b], {"sha-a:sha-b": agree.counts()})
    doc = load_meters(path)
    again = ScoreMeter.resume(doc["meters"]["sha-a"], "sha-a", 0.1, 1.0)
    assert again.hops == 600 and again.detections_at(0.4) == a.detections_at(0.4)
    assert again.per_hour(0.4) == a.per_hour(0.4)
    assert doc["agreement"]["sha-a:sha-b"] == {"both": 1, "live_only": 0, "shadow_only": 0}
    # other settings (or another model) start afresh: their counts would not be comparable
    assert ScoreMeter.resume(doc["meters"]["sha-a"], "sha-a", 0.1, 2.0).hops == 0
    assert ScoreMeter.resume(doc["meters"]["sha-a"], "sha-c", 0.1, 1.0).hops == 0
    path.write_text("{not json")
    assert load_meters(path)["meters"] == {}
    assert not list(path.parent.glob("*.tmp*"))


def test_agreement_counts_both_and_either_alone():
    a = Agreement(window_s=1.0)
    for role, t in [("live", 1.0), ("shadow", 1.3), ("live", 5.0), ("shadow", 8.0),
                    ("shadow", 8.2), ("live", 8.9)]:
        a.add(role, t)
    a.settle(100.0)
    assert a.counts() == {"both": 2, "live_only": 1, "shadow_only": 1}


TABLE = {"hours": 3.5, "clips": 120,
         "rows": [[0.3, 4.0, 0.99], [0.5, 1.2, 0.97], [0.6, 0.5, 0.95], [0.7, 0.3, 0.93],
                  [0.9, 0.0, 0.81]]}


def _model_with_table(tmp_path, table):
    data = (TEST_DATA / "tiny_float.tflite").read_bytes()
    meta = read_metadata(data)
    meta["det_table"] = table
    out = tmp_path / "table.tflite"
    out.write_bytes(embed_metadata(data, meta))
    return out


def test_a_models_det_table_picks_the_threshold_for_a_false_accept_target(tmp_path):
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = load_model(_model_with_table(tmp_path, TABLE))
    table = DetTable.from_metadata(model.metadata)
    assert (table.hours, table.clips) == (3.5, 120)
    assert table.threshold_for(0.5) == 0.6          # the best recall at <= 0.5 FA/h
    assert table.threshold_for(1.0) == 0.6
    assert table.threshold_for(10) == 0.3
    assert table.threshold_for(0.0) == 0.9
    with pytest.raises(ValueError, match=r"the fewest is 0.1/h at threshold 0.9"):
        DetTable.from_metadata({"det_table": dict(TABLE, rows=[[0.9, 0.1, 0.8]])}
                               ).threshold_for(0.01)
    assert DetTable.from_metadata(load_model(TEST_DATA / "tiny_float.tflite").metadata) is None


@pytest.mark.parametrize("bad", [{"hours": 1}, {"hours": 1, "clips": 2, "rows": [[2, 0, 1]]},
                                 {"hours": 0, "clips": 2, "rows": [[0.5, 0, 1]]}, "text"])
def test_a_malformed_det_table_is_named(bad):
    with pytest.raises(ValueError, match="det_table"):
        DetTable.from_metadata({"det_table": bad})


def test_meter_thresholds_are_the_hundredths():
    assert THRESHOLDS[0] == 0.01 and THRESHOLDS[-1] == 1.0 and len(THRESHOLDS) == 100
    assert json.loads(json.dumps(THRESHOLDS.tolist()))[49] == 0.5


def test_null_figures_in_a_det_table_are_never_chosen():
    t = DetTable.from_metadata({"det_table": {"hours": None, "clips": 12, "rows": [
        [0.5, None, 0.9], [0.7, None, None]]}})
    assert t.rows[0] == (0.5, None, 0.9)
    with pytest.raises(ValueError, match="no false-accept figures"):
        t.threshold_for(1.0)
    t = DetTable.from_metadata({"det_table": {"hours": 2, "clips": None, "rows": [
        [0.5, 2.0, None], [0.7, 0.2, None]]}})
    assert t.threshold_for(0.5) == 0.7
