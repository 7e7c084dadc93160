"""The daemon's remaining faults from issue 11: a missing PortAudio library (2), a worker
thread that dies, model file trouble while running (7), odd input for `kwsd detect` and
`kwsd listen` (8). Each asserts a message and a distinct exit status, never a traceback."""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from daemon_harness import REPO, SEED_MODEL, SPEECH, STOP_CLIPS, clip, silence
from test_daemon_inprocess import Clock, make_service, needs_shared, play

TINY = REPO / "tests" / "data" / "tiny_float.tflite"


def kwsd(*args, env=None, timeout=60):
    full = dict(os.environ, GPIOZERO_PIN_FACTORY="mock",
                PYTHONPATH=os.pathsep.join([str(REPO)] + ([env.pop("_PATH")] if env and
                                                           "_PATH" in env else [])))
    full.pop("NOTIFY_SOCKET", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "kwsd", *args], capture_output=True,
                          text=True, timeout=timeout, env=full)


# --- fault 2 ----------------------------------------------------------------------------

@pytest.fixture
def no_portaudio(tmp_path):
    """A sitecustomize that hides libportaudio from ctypes (as on a Pi without
    libportaudio2): sounddevice's import raises OSError('PortAudio library not found')."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import ctypes.util\n"
        "_find = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: None if 'portaudio' in name else _find(name)\n")
    return {"_PATH": str(folder)}


@pytest.mark.parametrize("command", [["run", "--config", "CFG"], ["devices"],
                                     ["listen", "--model", str(TINY)]])
def test_missing_portaudio_exits_69_with_a_message(tmp_path, no_portaudio, command):
    """It used to kill the capture thread with a traceback and hang without READY."""
    cfg = tmp_path / "kwsd.yaml"
    cfg.write_text(f"model: {TINY}\n")
    proc = kwsd(*[str(cfg) if a == "CFG" else a for a in command], env=no_portaudio)
    assert proc.returncode == 69, proc.stderr
    assert "PortAudio" in proc.stderr and "libportaudio2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_dying_worker_thread_ends_the_process_with_a_status(tmp_path):
    svc, src = make_service(TINY, np.zeros(32000, np.int16))
    svc.start()

    def broken(hop):
        raise RuntimeError("observer bug")
    svc.pipeline.observers.append(broken)
    src.feed()
    try:
        status = svc.supervisor.run(svc)
    finally:
        svc.shutdown()
    assert status == 70
    assert svc.supervisor.fatal[0] == "kwsd-decide"


# --- fault 7 ----------------------------------------------------------------------------

def _break(model, how):
    model.unlink()
    if how == "dangling symlink":
        model.symlink_to(model.parent / "gone.tflite")
    elif how == "a symlink loop":
        model.symlink_to(model)
    elif how == "not a regular file":
        os.mkfifo(model)
    elif how == "not readable":
        shutil.copyfile(SEED_MODEL, model)
        model.chmod(0)


@needs_shared
@pytest.mark.parametrize("how", ["missing", "dangling symlink", "a symlink loop",
                                 "not a regular file", pytest.param(
                                     "not readable", marks=pytest.mark.skipif(
                                         os.geteuid() == 0, reason="root reads a chmod 000 file"))])
def test_model_file_trouble_is_reported_at_once_and_the_loaded_model_keeps_running(tmp_path,
                                                                                   how):
    """These were ignored silently until the next restart, which then exited 65; a FIFO
    blocked the main thread in open()."""
    model = tmp_path / "stop.tflite"
    shutil.copyfile(SEED_MODEL, model)
    clock = Clock()
    samples = np.concatenate([silence(1.0), clip(STOP_CLIPS[1]), silence(1.5)])
    svc, src = make_service(model, samples, clock)
    svc.start(threads=False)
    play(svc, src, 0.2, clock)
    _break(model, how)
    clock.now += 1.0
    svc.step()                                # the next poll
    assert how.split()[0] in svc.status_text() and "running the loaded model" in \
        svc.status_text()
    play(svc, src, 10, clock)
    assert svc.status.detections == 1        # still detecting with the loaded model
    if model.is_symlink() or model.exists():
        model.unlink()
    shutil.copyfile(SEED_MODEL, model)       # put back: reloaded, problem cleared
    clock.now += 1.0
    svc.step()
    assert "model file" not in svc.status_text()
    assert svc.models.generation.number == 2
    svc.shutdown()


# --- fault 8 ----------------------------------------------------------------------------

def _wav_with_rate(path, rate):
    sf.write(str(path), np.zeros(1600, np.int16), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", (rate * 2) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [1, 2 ** 31 - 1])
def test_detect_refuses_a_header_with_an_implausible_rate(tmp_path, rate):
    """A header claiming 1 Hz or 2^31 Hz made the resampler allocate until MemoryError."""
    wav = _wav_with_rate(tmp_path / "odd.wav", rate)
    proc = kwsd("detect", "--model", str(TINY), str(wav))
    assert proc.returncode == 66, proc.stderr
    assert str(wav) in proc.stderr and "sample rate" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, words", [
    (["detect", "--threshold", "abc", "x.wav"], "--threshold: not a number"),
    (["detect", "--refractory-s", "nan", "x.wav"], "not a finite number"),
    (["detect", "--profile", "nope", "x.wav"], "unknown feature profile 'nope'"),
    (["listen", "--profile", "nope"], "unknown feature profile 'nope'"),
    (["detect", "--smoothing", "9" * 5000, "x.wav"], "--smoothing"),
])
def test_a_bad_command_line_exits_64_as_the_readme_says(args, words):
    proc = kwsd(*args)
    assert proc.returncode == 64, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
