"""Speaker k-fold cross-validation and what the evaluation reports about long audio:
per source and per language with exact Poisson intervals, the top false accepts saved as
FLAC snippets a person can listen to, and the threshold table written into the model."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("tqdm")
pytest.importorskip("scipy")

from kwsd.detector import DetectorSettings  # noqa: E402
from training.crossval import combined_rows, fold_of, real_clip_folds  # noqa: E402
from training.data import Item  # noqa: E402
from training.evaluate import (Scores, SplitScores, det_table_thresholds, detections,  # noqa: E402
                               language_of, long_audio_table, poisson_interval, save_snippets,
                               top_false_accepts)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _long(tmp_path, source, word, seconds, rate=16000):
    folder = tmp_path / source / word
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source}-{word}.flac"
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return Item(str(path), "long", "testing", speaker=path.stem, word=word, source=source)


def _fires_at(seconds, at, score=0.9):
    """Per-hop scores of a ``seconds`` long file that fire once at each time in ``at``."""
    times = np.round(np.arange(1.0, seconds + 1e-9, 0.1), 3)
    scores = np.zeros(len(times), np.float32)
    for t in at:
        scores[np.abs(times - t) < 0.25] = score
    return Scores(times, scores)


def test_false_accepts_are_reported_per_source_and_language_with_exact_intervals(tmp_path):
    ru = _long(tmp_path, "festvox_ru", "wav", 60)
    en = _long(tmp_path, "picovoice_sti", "audio", 30)
    es = _long(tmp_path, "precise_community", "heycomputer_es", 30)
    ss = SplitScores([], [], None, [], None, [], [], [ru, en, es],
                     [_fires_at(60, [10.0, 40.0]), _fires_at(30, [12.0], 0.95), _fires_at(30, [])],
                     (60 + 30 + 30) / 3600)
    settings = DetectorSettings(threshold=0.5, smoothing=1, refractory_s=1.0, hop_s=0.1)
    table = long_audio_table(ss, settings)
    assert set(table["language"]) == {"ru", "en", "es"}
    assert table["language"]["ru"]["false_accepts"] == 2
    assert table["source"]["picovoice_sti"]["false_accepts"] == 1
    assert table["all"]["all"]["false_accepts"] == 3
    assert table["language"]["ru"]["per_hour"] == pytest.approx(2 / (60.1 / 3600), rel=0.01)
    lo, hi = table["language"]["es"]["ci95"]       # none in 30 s: only an upper bound
    assert lo == 0 and hi == pytest.approx(3.689 / (30.1 / 3600), rel=0.01)
    assert poisson_interval(3, 1.0) == (0.619, 8.767)
    rising = Scores(np.round(np.arange(1.0, 3.0, 0.1), 3),
                    np.array([0, .35, .5, .8, .6, .2] + [0] * 14, np.float32))
    low = settings.with_overrides(threshold=0.3)
    assert detections(rising, low) == [(1.1, pytest.approx(0.8))]   # fires at .35, peaks at .8

    top = top_false_accepts(ss, settings, n=2)
    assert [(Path(f["file"]).name, f["time"], f["score"]) for f in top] == [
        ("picovoice_sti-audio.flac", 11.8, 0.95), ("festvox_ru-wav.flac", 9.8, 0.9)]
    names = save_snippets(top, tmp_path / "snippets")
    assert len(names) == 2
    for fa in top:
        audio, rate = soundfile.read(str(tmp_path / "snippets" / fa["snippet"]))
        assert fa["snippet"].endswith(".flac") and rate == 16000
        assert len(audio) == pytest.approx(2.5 * rate, abs=2)     # 2 s before, 0.5 s after


def test_language_comes_from_the_folder_suffix_then_the_known_sources():
    item = Item("x/picovoice_sti/noise/k.ogg", "long", "testing", word="noise",
                source="picovoice_sti")
    assert language_of(item) == "noise"
    assert language_of(Item("a.flac", "long", "testing", word="athena_en",
                            source="precise_community")) == "en"
    assert language_of(Item("a.flac", "long", "testing", word="x", source="somewhere")) == "?"


def test_folds_keep_each_speaker_on_one_side_and_never_fold_synthetic_clips():
    items = [Item(f"stop/s{i % 7}_nohash_{i}.wav", "keyword", "training", speaker=f"s{i % 7}",
                  word="stop", source="speech_commands") for i in range(28)]
    items.append(Item("stop/espeak_nohash_0.wav", "keyword", "training", speaker="espeak",
                      word="stop", source="synthetic:synth"))
    folds = real_clip_folds(items, 3)
    assert len(folds) == 28 and set(folds.values()) <= {0, 1, 2}
    for i, f in folds.items():
        assert f == fold_of(items[i].speaker, 3)


def test_combined_rows_take_clip_figures_from_crossval_and_false_accepts_from_the_model():
    cv = {"rows": [{"threshold": 0.5, "recall": 0.97, "clip_false_reject_rate": 0.03,
                    "clip_false_positive_rate": 0.004, "false_accepts_per_hour": 9.0}]}
    model_rows = [{"threshold": 0.5, "clip_false_reject_rate": None,
                   "stream_false_reject_rate": None, "clip_false_positive_rate": None,
                   "false_accepts_per_hour": 0.4}]
    (row,) = combined_rows(cv, model_rows)
    assert row["false_accepts_per_hour"] == 0.4 and row["recall"] == 0.97
    assert row["clip_false_positive_rate"] == 0.004


def _prepared_work(tmp_path) -> Path:
    """A work folder from 16 real stops, 8 "no"s, 8 "up"s and 12 long recordings (Russian and
    English), made by ``kwsd-train prepare``."""
    from training.__main__ import main

    corpus = SHARED / "speech_commands"
    if not corpus.is_dir():
        pytest.skip(f"real recordings not found at {SHARED}")
    data = tmp_path / "data"
    for word, count in (("stop", 16), ("no", 8), ("up", 8)):
        (data / word).mkdir(parents=True)
        for p in sorted((corpus / word).glob("*.wav"))[:count]:
            shutil.copy(p, data / word / p.name)
    longs = []
    for source, pattern in (("festvox_ru", "*.ogg"), ("librispeech", "*.flac")):
        files = sorted((SHARED / source).rglob(pattern))[:6]
        if not files:
            pytest.skip(f"no {source} recordings in {SHARED}")
        (tmp_path / source).mkdir()
        for p in files:
            shutil.copy(p, tmp_path / source / p.name)
        longs.append(str(tmp_path / source))
    work = tmp_path / "work"
    assert main(["-q", "-j", "2", "prepare", str(data), "--long", *longs, "--out", str(work),
                 "--validation-percent", "0", "--testing-percent", "0",
                 "--long-validation-percent", "35", "--long-testing-percent", "35",
                 "--variants", "2", "--partials", "1", "--word-variants", "1",
                 "--long-per-second", "0.5", "--seed", "3", "--real-keyword-weight", "2"]) == 0
    return work


@pytest.mark.slow
def test_crossval_then_evaluate_writes_fold_figures_snippets_and_a_threshold_table(tmp_path,
                                                                                   capsys):
    pytest.importorskip("tensorflow")
    from kwsd.model import load_model
    from training.__main__ import main

    work = _prepared_work(tmp_path)
    cv, report = tmp_path / "cv", tmp_path / "report"
    recipe = ["--arch", "tcsep", "--width", "8", "--epochs", "2", "--mine-rounds", "0"]
    # four fold models trained two at a time, each in a process of its own
    assert main(["-q", "-j", "2", "crossval", str(work), "--folds", "2", "--seeds", "1", "2",
                 *recipe, "--parallel", "2", "--out", str(cv)]) == 0
    doc = json.loads((cv / "crossval.json").read_text())
    assert [(r["seed"], r["fold"]) for r in doc["per_run"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # ... are the models that one at a time gives: every clip scores the same
    one = tmp_path / "cv_one_at_a_time"
    assert main(["-q", "-j", "2", "crossval", str(work), "--folds", "2", "--seeds", "2",
                 "--only-folds", "1", *recipe, "--out", str(one)]) == 0
    (alone,) = json.loads((one / "crossval.json").read_text())["per_run"]
    assert alone["clip_max"] == doc["per_run"][3]["clip_max"]
    assert alone["counts"] == doc["per_run"][3]["counts"]
    # the same command again, as after an interruption: the finished fold model is scored,
    # not trained again; other settings train it again
    again_cmd = ["-q", "-j", "2", "crossval", str(work), "--folds", "2", "--seeds", "2",
                 "--only-folds", "1", *recipe, "--out", str(one)]
    kept = one / "seed2-fold1" / "model.keras"
    stamp = kept.stat().st_mtime_ns
    capsys.readouterr()
    assert main(again_cmd) == 0
    assert "seed2-fold1: trained before with these settings" in capsys.readouterr().err
    assert kept.stat().st_mtime_ns == stamp
    (again,) = json.loads((one / "crossval.json").read_text())["per_run"]
    assert again["clip_max"] == alone["clip_max"] and again["counts"] == alone["counts"]
    assert main([*again_cmd, "--epochs", "3"]) == 0
    assert kept.stat().st_mtime_ns != stamp
    assert json.loads((kept.parent / "train_config.json").read_text())["epochs"] == 3
    assert sum(r["keyword_clips"] for r in doc["per_run"]) == 2 * 16    # every stop, once
    # per seed, though --real-keyword-weight 2 trained each fold on two copies of each stop

    # the two seeds' mean, cross-validated without training: fold f's ensemble is made of
    # the fold-f models only (the others heard its speakers)
    ens = tmp_path / "cv_ensemble"
    assert main(["-q", "-j", "2", "crossval", str(work), "--folds", "2", "--members", str(cv),
                 "--out", str(ens)]) == 0
    edoc = json.loads((ens / "crossval.json").read_text())
    assert [r["dir"] for r in edoc["per_run"]] == ["ensemble-fold0", "ensemble-fold1"]
    assert sum(r["keyword_clips"] for r in edoc["per_run"]) == 16
    for f in (0, 1):
        members = load_model(ens / f"ensemble-fold{f}" / "model_int8.tflite") \
            .metadata["provenance"]["training"]["ensemble"]
        assert sorted(Path(m["model_dir"]).name for m in members) == \
            [f"seed1-fold{f}", f"seed2-fold{f}"]
    assert edoc["calibration"]["threshold"] in edoc["thresholds"]
    # a member cross-validated on other folds is refused, naming its report
    capsys.readouterr()
    assert main(["-q", "crossval", str(work), "--folds", "3", "--members", str(cv),
                 "--out", str(tmp_path / "bad")]) == 65
    assert str(cv / "crossval.json") in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert doc["summary"]["recall"]["mean"] is not None
    assert "speaker folds" in (cv / "crossval.md").read_text()
    model = tmp_path / "stop.tflite"
    shutil.copy(cv / "seed1-fold0" / "model_int8.tflite", model)
    assert main(["-q", "-j", "2", "evaluate", str(model), "--data", str(work), "--out",
                 str(report), "--crossval", str(cv), "--write-threshold",
                 "--target-fa-per-hour", "1000", "--target-fpr", "1"]) == 0
    m = json.loads((report / "report.json").read_text())["models"]["stop.tflite"]
    held = m["heldout_long"]
    assert set(held["calibrated"]["source"]) == {"festvox_ru", "librispeech"}
    assert set(held["calibrated"]["language"]) == {"ru", "en"}
    assert all(len(v["ci95"]) == 2 for v in held["calibrated"]["language"].values())
    for fa in held["top_false_accepts"]:
        assert (report / "false_accepts" / "stop.tflite" / fa["snippet"]).is_file()
    table = load_model(model).metadata["det_table"]
    assert table["hours"] == held["hours"] > 0
    threshold = m["calibration"]["threshold"]       # 0.05 ... 0.95, and the calibrated one
    assert [r[0] for r in table["rows"]] == pytest.approx(det_table_thresholds((threshold,)))
    assert all(len(r) == 3 for r in table["rows"])
    assert load_model(model).defaults.threshold == threshold
    assert "held-out long audio" in (report / "report.md").read_text()


def _spawned_children(pid: int) -> set[int]:
    """The processes ``pid`` started with multiprocessing's spawn (not its resource tracker)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue                                   # it ended meanwhile
            if b"spawn_main" in cmdline:
                found.add(int(child))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not list(Path("/proc/self/task").glob("*/children")),
                    reason="needs Linux's /proc/PID/task/TID/children")
def test_sigterm_to_crossval_ends_its_fold_trainings_too(tmp_path):
    """``kill PID`` (or ``timeout``) on ``kwsd-train crossval`` ends the fold trainings it
    started in processes of their own, not just itself: left running, they would go on
    writing their folders while the command is started again."""
    pytest.importorskip("tensorflow")
    work = _prepared_work(tmp_path)
    log = tmp_path / "stderr.txt"           # a file, not a pipe no one reads while it runs
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "training", "-q", "-j", "1", "crossval", str(work),
             "--folds", "2", "--seeds", "1", "--arch", "tcsep", "--width", "8",
             "--epochs", "1000", "--mine-rounds", "0", "--parallel", "2",
             "--out", str(tmp_path / "cv")],
            stderr=err, cwd=Path(__file__).resolve().parents[1])
    try:
        children: set[int] = set()
        deadline = time.monotonic() + 300
        while len(children) < 2 and time.monotonic() < deadline:
            try:
                proc.wait(timeout=0.2)
                break                                  # it ended: the assertion says why
            except subprocess.TimeoutExpired:
                children = _spawned_children(proc.pid)     # both folds' trainings started?
        assert len(children) == 2, log.read_text()[-2000:] if proc.poll() is not None else children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
        assert "kwsd-train: terminated" in log.read_text()
        assert not [pid for pid in children if _running(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
