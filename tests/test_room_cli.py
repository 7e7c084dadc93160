"""The room-learning commands' logic: stats next to the model's table, labelling by key,
enrolment from microphone blocks."""

import io

import numpy as np
import pytest
import soundfile as sf

from kwsd.captures import CaptureSettings, CaptureWriter, Moment, list_captures, moment_record
from kwsd.meter import ScoreMeter, save_meters
from kwsd.room_cli import Enrolment, apply_key, enroll, label_loop, stats_report
from test_meter import TABLE, _model_with_table


def test_stats_put_the_rooms_detections_per_hour_next_to_the_models_table(tmp_path):
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = _model_with_table(tmp_path, TABLE)
    from kwsd.room import model_sha256
    from kwsd.model import load_model

    sha = model_sha256(load_model(model))
    m = ScoreMeter(sha, hop_s=0.1, refractory_s=1.0, smoothing=2, model="table.tflite")
    # one hour of room audio: quiet, with 12 hops at 0.65 and 3 at 0.95
    for i in range(36000):
        peak = 0.95 if i % 12000 == 6000 else 0.65 if i % 3000 == 1500 else 0.05
        m.update(i * 0.1, peak, peak >= 0.6)
    save_meters(tmp_path / "meter.json", [m])
    text = stats_report(tmp_path / "meter.json", {"live": (str(model), 0.6)},
                        thresholds=(0.5, 0.6, 0.9))
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.strip()[:4] in ("0.50", "0.60", "0.90")}
    assert rows["0.50"][1] == "15.00" and rows["0.90"][1] == "3.00"   # room detections/hour
    assert rows["0.50"][3:5] == ["1.20", "0.97"]                        # the model's own figures
    assert rows["0.60"][-1] == "<"                                      # the threshold in use
    assert "1.00 h of audio" in text and "held-out 3.5 h" in text
    other = stats_report(tmp_path / "meter.json", {"live": ("tests/data/tiny_float.tflite",
                                                            None)})
    assert "no audio metered yet" in other


def _captures(root, n):
    w = CaptureWriter(CaptureSettings(dir=str(root)), out_rate=16000)
    for i in range(n):
        w.submit(np.zeros(1600), 16000, moment_record(
            Moment("near_miss", float(i), 0.5), wall_time=1.7e9 + i, threshold=0.8,
            model="m.tflite", model_sha256="0" * 64, device="mic"))
    w.close()


def test_labelling_by_key_moves_deletes_and_replays(tmp_path):
    _captures(tmp_path, 4)
    keys = iter(["s", "p", "o", "x", "d", "q"])
    played, out = [], io.StringIO()
    counts = label_loop(tmp_path, read_key=lambda prompt: next(keys), out=out,
                        play_audio=played.append)
    assert counts == {"stop": 1, "other": 1, "delete": 1, "quit": 1}
    assert len(played) == 5                    # each shown once, the second twice ("p")
    assert "unknown key 'x'" in out.getvalue()
    labels = [label for label, _, _ in list_captures(tmp_path)]
    assert labels == ["unlabelled", "stop", "other"]     # the one deleted is gone, both files
    assert len(list(tmp_path.rglob("*.json"))) == 3
    assert apply_key(tmp_path / "stop" / list_captures(tmp_path)[1][1].name, "u")[0] == \
        "unlabelled"


def test_enrolment_saves_each_word_heard_and_asks_again_after_silence(tmp_path):
    rate = 16000
    rng = np.random.default_rng(0)
    room = lambda s: rng.normal(0, 0.001, int(s * rate))            # noqa: E731
    word = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(0.5 * rate)) / rate)
    audio = np.concatenate([room(1.0), room(0.7), word, room(3.0),   # prompt 1: a word
                            room(11.0),                              # prompt 2: nothing
                            room(0.3), word, room(3.0)])             # prompt 2 again
    blocks = (audio[i:i + 320] for i in range(0, len(audio), 320))
    said = []
    paths = enroll(blocks, rate, 16000, tmp_path / "stop", count=2, prompt=said.append)
    assert [p.parent.name for p in paths] == ["stop", "stop"]
    assert said.count("heard nothing, once more") == 1
    for p in paths:
        x, r = sf.read(p)
        assert r == 16000 and len(x) == 2 * rate                     # 0.5 s before, 1.5 after
        onset = np.argmax(np.abs(x) > 0.1)
        assert abs(onset - 0.5 * rate) < 0.03 * rate                 # the word starts at 0.5 s
    assert Enrolment(rate).push(np.zeros(10)) is None


def test_model_info_prints_the_table_and_marks_the_default_threshold(tmp_path):
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    from kwsd.model import load_model
    from kwsd.room_cli import describe_model

    text = describe_model(load_model(_model_with_table(tmp_path, TABLE)))
    assert "keyword   'stop', profile logmel40" in text
    assert "held-out 3.5 h without the keyword, 120 keyword clips" in text
    assert "       0.60     0.50   0.950 <" in text          # the model's own threshold, 0.6
    plain = describe_model(load_model("tests/data/tiny_float.tflite"))
    assert "det_table none" in plain


def test_stats_also_name_the_models_metered_before(tmp_path):
    old = ScoreMeter("0" * 64, hop_s=0.1, refractory_s=1.0, model="old.tflite")
    for i in range(36000):
        old.update(i * 0.1, 0.9 if i % 3600 == 0 else 0.0, i % 3600 == 0)
    save_meters(tmp_path / "meter.json", [old])
    text = stats_report(tmp_path / "meter.json", {"live": ("tests/data/tiny_float.tflite", None)})
    assert "old.tflite (sha256 000000000000): 1.00 h, 10 detection(s)" in text
