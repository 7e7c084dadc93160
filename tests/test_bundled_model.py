"""The bundled model: a regression guard for retraining.

Since 2026-12-06 the bundled model learns from every real "stop" in ../shared/data (issue 10),
so no real keyword clip is held out of it: how it does on speakers it never heard is the
speaker-fold cross-validation in kwsd/models/MODEL_CARD.md, which is too slow for a test. What
a test can hold it to:

- real running speech it never heard: the *testing* files of the long-audio split (SHA-1 rule,
  salt 'kwsd-long', 20% validation / 25% testing, as in the card's `prepare` commands), in
  English, Russian and Spanish, streamed through `kwsd detect`'s path with the model's own
  defaults: no false accept, as measured for the shipped model;
- the clips of the corpus's testing speakers (salt 'kwsd', 20% / 20%), which it trained on:
  a retrained or re-exported model that no longer finds them, or fires on their other words,
  is broken, whatever its cross-validation said;
- household knocks (:mod:`training.knocks`, a seed it never trained on): a cup set down or a
  door must not switch the relay; synthetic, so a guard against a regression, not a claim
  about real rooms;
- its threshold table, and the demo recording (its three "stop"s and nowhere else).
"""

import pytest

from conftest import DATA, need_shared
from kwsd.model import BUNDLED_MODEL, load_model
from kwsd.detect import detect_file

# A retrained bundled model must do at least as well as these, within one clip of slack.
# Measured for the shipped model (see MODEL_CARD.md), model defaults: the testing speakers'
# clips (trained on) 41/41 stops and 1/416 other words (the models bundled before it: 41/41
# and 0/416 with knocks, 41/41 and 3/416 without; the fixed-split model before those, which
# never heard them: 38/41 and 2/416); no false accept in the held-out testing speech (1.14 h:
# English 0.68 h, Russian 0.45 h, Spanish 0.02 h)
MIN_RECALL = 1.0
MAX_FPR = 1 / 416
MAX_FALSE_ACCEPTS_SPEECH = 0
# 30 min of synthetic knocks at seed 77 (never trained on): 2 detections, as measured for the
# shipped model (models of its recipe with other seeds: 1-4; the models bundled before knocks
# were among their negatives, which never heard them: 19 and more)
MAX_FALSE_ACCEPTS_KNOCKS = 2
LONG_SOURCES = ("librispeech", "picovoice_sti", "festvox_ru", "precise_community")


def clips_of_testing_speakers(folder, salt="kwsd"):
    from training.data import which_set

    return sorted(p for p in folder.glob("*.wav")
                  if which_set(f"{folder.name}/{p.name}", 20.0, 20.0, salt) == "testing")


def detection_times(model, path) -> list:
    """When ``kwsd detect``'s path fires on the file, with the model's own defaults."""
    times = []
    detect_file(path, model, model.defaults,
                lambda event: times.append(event.time) if event.kind == "detection" else None)
    return times


def fires(model, path) -> bool:
    return bool(detection_times(model, path))


@pytest.fixture(scope="module")
def model():
    need_shared()
    return load_model(BUNDLED_MODEL)


def test_bundled_model_is_int8_with_metadata_and_small():
    m = load_model(BUNDLED_MODEL)
    assert m.quantized and m.keyword == "stop" and m.profile.name == "logmel40-1500ms"
    assert m.metadata["provenance"]["command"]
    import os
    assert os.path.getsize(BUNDLED_MODEL) <= 256 * 1024     # issue 10's budget for all model files


def test_the_testing_speakers_stops_are_found_and_their_other_words_are_not(model):
    sc = DATA / "speech_commands"
    stops = clips_of_testing_speakers(sc / "stop")
    others = [p for d in sorted(sc.iterdir()) if d.is_dir() and d.name not in ("stop", "_background_noise_")
              for p in clips_of_testing_speakers(d)]
    assert len(stops) >= 30 and len(others) >= 300
    missed = [p.name for p in stops if not fires(model, p)]
    fired = [f"{p.parent.name}/{p.name}" for p in others if fires(model, p)]
    assert 1 - len(missed) / len(stops) >= MIN_RECALL - 1 / len(stops), missed
    assert len(fired) / len(others) <= MAX_FPR + 1 / len(others), fired


def test_no_false_accepts_on_held_out_running_speech(model):
    from training.data import scan_long_recordings
    from training.evaluate import language_of

    files = [it for source in LONG_SOURCES for it in scan_long_recordings(DATA / source, 20.0, 25.0)
             if it.split == "testing" and language_of(it) != "noise"]
    assert {language_of(it) for it in files} >= {"en", "ru"}
    accepts = {it.path: times for it in files if (times := detection_times(model, it.path))}
    assert sum(map(len, accepts.values())) <= MAX_FALSE_ACCEPTS_SPEECH, accepts


def test_household_knocks_do_not_fire_it(model, tmp_path):
    from training import synth

    synth.render_corpus(str(tmp_path), positives=0, per_negative=0, speech_minutes=0,
                        knock_minutes=30, seed=77, engines=[], jobs=2, progress=False)
    files = sorted((tmp_path / "_knocks_").glob("*.wav"))
    assert len(files) >= 20
    accepts = {p.name: times for p in files if (times := detection_times(model, p))}
    assert sum(map(len, accepts.values())) <= MAX_FALSE_ACCEPTS_KNOCKS, accepts


DEMO_STOPS_S = [(3.0, 4.0), (14.0, 15.0), (20.5, 21.5)]     # kwsd/data/demo.txt


def test_the_demo_fires_on_its_three_stops_and_nowhere_else():
    from conftest import REPO

    times = detection_times(load_model(BUNDLED_MODEL), REPO / "kwsd" / "data" / "demo.flac")
    hit = [any(a <= t <= b + 1.1 for t in times) for a, b in DEMO_STOPS_S]
    stray = [t for t in times if not any(a <= t <= b + 1.1 for a, b in DEMO_STOPS_S)]
    assert hit == [True, True, True] and stray == [], times


def test_its_threshold_table_runs_from_005_to_095_on_held_out_data_and_holds_its_own():
    model = load_model(BUNDLED_MODEL)
    table = model.metadata["det_table"]
    assert table["hours"] >= 2.0 and table["clips"] >= 80
    from training.evaluate import det_table_thresholds

    thresholds = [r[0] for r in table["rows"]]        # 0.05 ... 0.95 and its own threshold
    assert det_table_thresholds((model.defaults.threshold,)) == pytest.approx(thresholds)
    fa = [r[1] for r in table["rows"]]
    recall = [r[2] for r in table["rows"]]
    assert fa == sorted(fa, reverse=True) and recall == sorted(recall, reverse=True)
    assert all(0 <= r <= 1 for r in recall)
