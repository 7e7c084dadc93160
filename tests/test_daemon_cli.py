"""`kwsd run` refusing bad input at start-up, `kwsd run --input FILE` (a recording through
the daemon's own threads in real time), `kwsd listen` and `kwsd devices`."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from daemon_harness import (OTHER_CLIPS, REPO, SEED_MODEL, SPEECH, STOP_CLIPS, FifoMic, clip,
                            silence, write_config)

needs_shared = pytest.mark.skipif(not (SEED_MODEL.is_file() and SPEECH.is_dir()),
                                  reason=f"needs ../shared (tutorial model {SEED_MODEL} and "
                                  f"real clips {SPEECH}); clone with shared/ beside the repo")


def kwsd(*args, env=None, timeout=120):
    full = dict(os.environ, GPIOZERO_PIN_FACTORY="mock",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full.pop("NOTIFY_SOCKET", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "kwsd", *args], capture_output=True,
                          text=True, timeout=timeout, env=full)


@pytest.mark.parametrize("text, key", [
    ("model: m.tflite\nactions:\n  - {type: led, pin: 17}\n  - {type: relay, pin: BCM17}\n",
     "actions[1].pin"),
    ("model: m.tflite\naudio:\n  smaplerate: 48000\n", "audio.smaplerate"),
    ("model: m.tflite\ndetector:\n  refractory_s: -1\n", "detector.refractory_s"),
    ("model: m.tflite\ngpio:\n  pin_factory: 3\n", "gpio.pin_factory"),
])
def test_run_with_a_bad_config_exits_78_naming_the_key(tmp_path, text, key):
    cfg = tmp_path / "kwsd.yaml"
    cfg.write_text(text)
    proc = kwsd("run", "--config", str(cfg))
    assert proc.returncode == 78, proc.stderr
    assert f"{cfg}: {key}: " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_without_its_config_file_exits_78(tmp_path):
    proc = kwsd("run", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 78 and "nope.yaml: cannot read" in proc.stderr


def test_run_with_a_corrupt_model_names_the_file(tmp_path):
    model = tmp_path / "stop.tflite"
    model.write_bytes(b"\0" * 100)
    cfg = write_config(tmp_path / "kwsd.yaml", model)
    proc = kwsd("run", "--config", str(cfg))
    assert proc.returncode == 65, proc.stderr
    assert str(model) in proc.stderr and "Traceback" not in proc.stderr


def _recording(path):
    parts = [silence(0.5)]
    for name in (STOP_CLIPS[0], OTHER_CLIPS[0], STOP_CLIPS[3]):
        parts += [clip(name), silence(0.6)]
    sf.write(str(path), np.concatenate(parts), 16000)
    return path


@needs_shared
def test_run_input_replays_a_file_through_the_daemon(tmp_path):
    wav = _recording(tmp_path / "rec.wav")
    out = tmp_path / "hook.txt"
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL, actions=[
        {"type": "command", "argv": ["sh", "-c", f'echo "$KWSD_SCORE" >> "{out}"']}])
    proc = kwsd("run", "--config", str(cfg), "--input", str(wav))
    assert proc.returncode == 0, proc.stderr
    dets = [l for l in proc.stderr.splitlines() if "KWSD_EVENT=detection" in l]
    assert len(dets) == 2, proc.stderr
    assert "KWSD_EVENT=input_end" in proc.stderr


@needs_shared
def test_listen_draws_a_bar_per_hop_and_highlights_detections(tmp_path):
    wav = _recording(tmp_path / "rec.wav")
    proc = kwsd("listen", "--model", str(SEED_MODEL), "--input", str(wav))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    bars = [l for l in lines if " s  " in l and "|" in l]
    assert len(bars) >= 30                      # a bar every 0.1 s of a 5.6 s file
    hits = [l for l in bars if "STOP" in l]
    assert len(hits) == 2
    assert all("#" * 20 in l for l in hits)    # a score above 0.5 fills half the bar


def test_devices_lists_the_capture_device(tmp_path):
    mic = FifoMic(tmp_path)
    try:
        proc = kwsd("devices", env=mic.env)
    finally:
        mic.close()
    assert proc.returncode == 0, proc.stderr
    assert "kwsdmic" in proc.stdout and "channels" in proc.stdout
