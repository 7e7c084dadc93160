"""``kwsd detect`` end to end, through the real command line."""

import json
import subprocess

import numpy as np
import pytest
import soundfile

from conftest import KWSD, TEST_DATA


def kwsd(args, env):
    return subprocess.run(KWSD + args, capture_output=True, text=True, env=env, timeout=300)


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_tutorial_model_recall_on_real_clips_matches_its_readme(seed_model_path, shared_data, subprocess_env):
    """The seed README: clip-level recall 60.9% and FPR 1.06% at 0.5. Pinned within a few points."""
    sc = shared_data / "speech_commands"
    stops = sorted((sc / "stop").glob("*.wav"))
    others = sorted(p for d in sc.iterdir() if d.is_dir() and d.name not in ("stop", "_background_noise_")
                    for p in d.glob("*.wav"))[::3]
    r = kwsd(["detect", "--json", "--model", str(seed_model_path), "--threshold", "0.5"]
             + [str(p) for p in stops + others], subprocess_env)
    assert r.returncode == 0, r.stderr
    fired = {e["file"] for e in _json_lines(r.stdout) if e["event"] == "detection"}
    recall = sum(str(p) in fired for p in stops) / len(stops)
    fpr = sum(str(p) in fired for p in others) / len(others)
    assert 0.57 <= recall <= 0.66
    assert fpr <= 0.025


def test_json_scores_and_detections_on_a_real_stop(seed_model_path, shared_data, subprocess_env, tmp_path):
    # a loud real "stop" the tutorial model scores high, inside 3 s of quiet, at 44.1 kHz stereo
    clip, rate = soundfile.read(shared_data / "speech_commands" / "stop" / "0fa1e7a9_nohash_0.wav")
    seg = np.concatenate([np.zeros(rate), clip, np.zeros(rate)])
    from kwsd.frontend import resample_signal
    seg44 = resample_signal(seg, rate, 44100)
    path = tmp_path / "stereo44k.wav"
    soundfile.write(path, np.stack([seg44, seg44], axis=1), 44100, subtype="PCM_24")
    r = kwsd(["detect", "--json", "--scores", "--model", str(seed_model_path), str(path)], subprocess_env)
    assert r.returncode == 0, r.stderr
    events = _json_lines(r.stdout)
    scores = [e for e in events if e["event"] == "score"]
    dets = [e for e in events if e["event"] == "detection"]
    assert scores[0]["time"] == pytest.approx(1.0) and scores[1]["time"] == pytest.approx(1.1)
    assert len(dets) == 1
    assert dets[0]["keyword"] == "stop" and dets[0]["score"] >= 0.5
    assert 1.0 <= dets[0]["time"] <= 3.0          # while the word is inside the window
    assert set(dets[0]) == {"event", "file", "time", "keyword", "score"}


def test_unreadable_files_are_reported_after_the_readable_ones(seed_model_path, shared_data,
                                                              subprocess_env, tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    good = shared_data / "speech_commands" / "stop" / "0fa1e7a9_nohash_0.wav"
    r = kwsd(["detect", "--json", "--model", str(seed_model_path), str(bad), str(good),
              str(tmp_path / "missing.flac")], subprocess_env)
    assert r.returncode == 66
    assert f"{bad}: cannot read audio" in r.stderr and "missing.flac: no such file" in r.stderr
    assert "Traceback" not in r.stderr
    assert [e["file"] for e in _json_lines(r.stdout)] == [str(good)]


def test_bad_model_file_exits_65_with_its_name(subprocess_env, tmp_path, shared_data):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"garbage")
    r = kwsd(["detect", "--model", str(bad), str(shared_data / "librispeech" / "19-198-0000.flac")],
             subprocess_env)
    assert r.returncode == 65
    assert str(bad) in r.stderr and "Traceback" not in r.stderr


def test_threshold_out_of_range_is_refused(subprocess_env, tmp_path):
    r = kwsd(["detect", "--model", str(TEST_DATA / "tiny_float.tflite"), "--threshold", "3", "x.wav"],
             subprocess_env)
    assert r.returncode == 78 and "threshold" in r.stderr


def test_a_file_shorter_than_the_window_is_scored_where_it_ends(shared_data, subprocess_env, tmp_path):
    # the loudest 0.6 s of a real "stop": the bundled model's 1 s window hears quiet, then the
    # word ending where the file ends, and the decision's time is inside the file, not after it
    clip, rate = soundfile.read(shared_data / "speech_commands" / "stop" / "0fa1e7a9_nohash_0.wav")
    n = int(0.6 * rate)
    energy = np.convolve(clip ** 2, np.ones(n), mode="valid")
    start = int(np.argmax(energy))
    path = tmp_path / "short.wav"
    soundfile.write(path, clip[start:start + n], rate)
    r = kwsd(["detect", "--json", "--scores", str(path)], subprocess_env)
    assert r.returncode == 0, r.stderr
    events = _json_lines(r.stdout)
    assert [e["event"] for e in events] == ["score", "detection"]
    assert [e["time"] for e in events] == [pytest.approx(0.6), pytest.approx(0.6)]
