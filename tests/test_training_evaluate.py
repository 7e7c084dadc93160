"""kwsd-train evaluate's pure parts: detections through kwsd's Detector, calibration, streams."""

import numpy as np
import pytest

pytest.importorskip("tqdm")

from kwsd.detector import DetectorSettings  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.evaluate import (Scores, build_stream, calibrate, replay, roc_auc,  # noqa: E402
                               stream_outcome)


def test_replay_uses_the_daemons_smoothing_and_refractory_period():
    times = np.arange(30) / 10
    scores = np.zeros(30, np.float32)
    scores[5:8] = 0.9          # one word: three hops high
    scores[9:11] = 0.9         # 0.4 s later, inside the refractory second
    scores[25] = 0.95          # a lone spike: smoothed over 3 hops it stays low
    fired = replay(Scores(times, scores), DetectorSettings(threshold=0.6, smoothing=3,
                                                           refractory_s=1.0))
    assert fired == [0.7]          # the third high hop lifts the mean of 3 over 0.6
    assert replay(Scores(times, scores), DetectorSettings(threshold=0.6, smoothing=1,
                                                          refractory_s=1.0)) == [0.5, 2.5]


def test_calibration_takes_the_best_recall_within_the_targets_away_from_the_edges():
    rows = [{"threshold": t, "clip_false_reject_rate": frr, "stream_false_reject_rate": frr,
             "clip_false_positive_rate": fpr, "false_accepts_per_hour": fa}
            for t, frr, fpr, fa in [(0.2, 0.0, 0.02, 5.0), (0.4, 0.0, 0.004, 0.2),
                                    (0.5, 0.0, 0.0, 0.0), (0.6, 0.0, 0.0, 0.0),
                                    (0.8, 0.1, 0.0, 0.0), (0.9, 0.3, 0.0, 0.0)]]
    assert calibrate(rows, 0.3, 0.005)["threshold"] == 0.5
    assert calibrate(rows, 0.3, 0.005)["met_targets"] is True
    assert calibrate(rows, 0.3, 0.0)["threshold"] in (0.5, 0.6)
    unreachable = [dict(r, false_accepts_per_hour=10.0) for r in rows]
    assert calibrate(unreachable, 0.3, 0.005)["met_targets"] is False


def test_calibration_never_buys_its_targets_by_silencing_the_keyword():
    rows = [{"threshold": t, "clip_false_reject_rate": frr, "stream_false_reject_rate": frr,
             "clip_false_positive_rate": fpr, "false_accepts_per_hour": fa}
            for t, frr, fpr, fa in [(0.5, 0.05, 0.02, 14.0), (0.7, 0.1, 0.01, 7.0),
                                    (0.9, 0.15, 0.005, 3.5), (0.99, 0.6, 0.0, 0.0),
                                    (0.999, 1.0, 0.0, 0.0)]]
    assert calibrate(rows, 0.3, 0.005, min_recall=0.8) == {
        "threshold": 0.9, "met_targets": False, "min_recall": 0.8}
    assert calibrate(rows, 0.3, 0.005, min_recall=0.3)["threshold"] == 0.99


def test_stream_places_clips_in_slots_and_scores_hits_and_strays():
    rng = np.random.default_rng(0)
    clips = [np.full(8000, 0.5, np.float32), np.full(8000, 0.5, np.float32)]
    stream, spans = build_stream(clips, 16000, None, rng)
    assert len(stream) == 16000 * 2.5 * 3
    assert spans == [(0.75, 1.25), (3.25, 3.75)]
    assert np.all(stream[12000:20000] >= 0.49)
    times = np.arange(0, 7.5, 0.1)
    scores = np.zeros(len(times), np.float32)
    scores[(times > 1.5) & (times < 1.75)] = 1.0      # fires just after clip 1
    scores[(times > 6.0) & (times < 6.35)] = 1.0      # fires in nothing's slot
    hit, stray = stream_outcome(Scores(times, scores), spans,
                                DetectorSettings(threshold=0.5, smoothing=1))
    assert hit == [True, False] and stray == 1


def test_roc_auc_counts_ties_as_half():
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0


def test_train_without_a_prepared_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["-q", "train", str(tmp_path), "--out", str(tmp_path / "m")]) == 65
    err = capsys.readouterr().err
    assert "run `kwsd-train prepare` first" in err and "Traceback" not in err


def test_an_unreadable_file_scored_in_parallel_is_named_not_a_hang(tmp_path):
    """Scoring on two worker processes: a file that is not audio comes back as an error
    naming it (it used to kill the pool's result thread, and evaluate waited forever)."""
    import soundfile

    from kwsd.model import BUNDLED_MODEL, load_model
    from training.evaluate import score_all

    bad, good = tmp_path / "bad.wav", tmp_path / "good.wav"
    bad.write_bytes(b"not audio " * 300)
    soundfile.write(good, np.zeros(24000, np.float32), 16000)
    settings = load_model(BUNDLED_MODEL).defaults
    first, second = score_all(BUNDLED_MODEL, [("file", str(bad)), ("file", str(good))],
                              settings, workers=2, progress=False)
    assert isinstance(first, Exception) and str(bad) in str(first)
    assert isinstance(second, Scores) and len(second.times) > 0
