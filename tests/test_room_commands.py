"""The room loop through the real commands: `kwsd run --input` (real speech with three
"stop"s) with captures, a meter and a shadow model on; then `kwsd stats`, `kwsd captures`
(list, label by key), `kwsd detect --info`, and `kwsd enroll` through a real ALSA capture
device fed from a FIFO."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from daemon_harness import REPO, SPEECH, FifoMic, clip, write_config
from test_daemon_cli import kwsd

from kwsd.model import load_model

DEMO = REPO / "kwsd" / "data" / "demo.flac"
TINY = REPO / "tests" / "data" / "tiny_float.tflite"
BUNDLED = REPO / "kwsd" / "models" / "stop.tflite"


def _lines(text, event):
    return [line for line in text.splitlines() if f"KWSD_EVENT={event} " in line + " "]


def test_run_captures_meters_and_shadows_then_stats_and_labelling(tmp_path):
    caps, state = tmp_path / "captures", tmp_path / "state"
    cfg = write_config(tmp_path / "kwsd.yaml", BUNDLED, shadow_model=str(TINY),
                       state_dir=str(state),
                       capture={"dir": str(caps), "near_miss": 0.3, "max_mb": 5},
                       actions=[{"type": "led", "pin": 17}])
    proc = kwsd("run", "--config", str(cfg), "--input", str(DEMO))
    assert proc.returncode == 0, proc.stderr
    detections = _lines(proc.stderr, "detection")
    near = _lines(proc.stderr, "near_miss")
    assert len(detections) == 3, proc.stderr
    files = sorted((caps / "unlabelled").glob("*.flac"))
    sidecars = [json.loads(f.with_suffix(".json").read_text()) for f in files]
    assert [s["kind"] for s in sidecars].count("detection") == 3
    assert [s["kind"] for s in sidecars].count("near_miss") == len(near)
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    assert _lines(proc.stderr, "shadow_loaded")

    threshold = f"{load_model(BUNDLED).defaults.threshold:g}"
    out = kwsd("stats", "--config", str(cfg), "--thresholds", "0.3", threshold, "0.9")
    assert out.returncode == 0, out.stderr
    assert "live stop.tflite" in out.stdout
    assert f"3 detection(s) at threshold {threshold}" in out.stdout
    assert "shadow tiny_float.tflite" in out.stdout
    assert "live and shadow:" in out.stdout

    listing = kwsd("captures", "--config", str(cfg))
    assert listing.returncode == 0 and f"{len(files)} capture(s)" in listing.stdout
    # label the first one "stop", the second "other", then quit
    labelled = subprocess.run([sys.executable, "-m", "kwsd", "captures", "--config", str(cfg),
                               "--label", "--no-play"], input="s\no\nq\n", text=True,
                              capture_output=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert labelled.returncode == 0, labelled.stderr
    assert [p.name for p in (caps / "stop").glob("*.flac")] == [files[0].name]
    assert [p.name for p in (caps / "other").glob("*.flac")] == [files[1].name]


def test_detect_info_prints_the_models_table():
    out = kwsd("detect", "--info", str(BUNDLED))
    assert out.returncode == 0, out.stderr
    assert "keyword   'stop'" in out.stdout and "det_table" in out.stdout
    assert kwsd("detect").returncode == 64


@pytest.mark.skipif(not SPEECH.is_dir(), reason="needs ../shared's real clips")
def test_enroll_records_prompted_stops_from_the_microphone(tmp_path):
    mic = FifoMic(tmp_path)
    cfg = write_config(tmp_path / "kwsd.yaml", BUNDLED, capture={"dir": str(tmp_path / "c")})
    env = dict(os.environ, PYTHONPATH=str(REPO), **mic.env)
    proc = subprocess.Popen([sys.executable, "-m", "kwsd", "enroll", "--config", str(cfg),
                             "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    said = []
    words = iter(["stop/022cd682_nohash_0.wav", "stop/0fa1e7a9_nohash_0.wav"])

    def answer():
        for line in proc.stdout:
            said.append(line)
            if line.startswith("say 'stop'"):
                mic.say(clip(next(words)))          # the user says it when asked
    reader = threading.Thread(target=answer, daemon=True)
    reader.start()
    try:
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        mic.close()
    reader.join(5)
    saved = sorted((tmp_path / "c" / "stop").glob("*.flac"))
    assert len(saved) == 2, "".join(said)
    for path in saved:
        x, rate = sf.read(path)
        assert rate == 16000 and len(x) == 32000
        assert np.max(np.abs(x[:4000])) < 0.05 < np.max(np.abs(x))   # quiet, then the word
        assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_check_config_validates_the_shadow_model(tmp_path):
    bad = tmp_path / "candidate.tflite"
    bad.write_bytes(b"not a model")
    cfg = write_config(tmp_path / "kwsd.yaml", BUNDLED, shadow_model=str(TINY))
    out = kwsd("check-config", "--config", str(cfg))
    assert out.returncode == 0 and "shadow model tiny_float.tflite" in out.stdout, out.stderr
    cfg = write_config(tmp_path / "kwsd.yaml", BUNDLED, shadow_model=str(bad))
    out = kwsd("check-config", "--config", str(cfg))
    assert out.returncode == 65 and str(bad) in out.stderr
