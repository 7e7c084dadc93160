"""The first hour, as a new user lives it: the README's commands and the usual mistakes,
typed into a terminal (a pseudo-terminal, through pexpect), and what the screen then shows.

Every screen must be clean: no Python traceback, no warning a user has to learn to ignore,
no Python repr, no journald fields, no runtime banner. Every failure must name the file or key
and the fix, with its own exit status. The README's shown outputs must be what the commands
print. (``script/setup`` is not run here: CI runs it before the tests.)
"""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pexpect = pytest.importorskip("pexpect", reason="pexpect is in the [test] extra")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # .venv/bin: where `kwsd` and `kwsd-train` are
README = (REPO / "README.md").read_text()
DEMO = "kwsd run --config kwsd/examples/demo.yaml --input kwsd/data/demo.flac"

pytestmark = pytest.mark.skipif(not (BIN / "kwsd").exists(),
                                reason=f"no kwsd command beside {sys.executable}")


def spawn(command, timeout=120):
    """A shell command line typed at the repository root, in a 50x200 terminal."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "PYTEST_CURRENT_TEST")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return pexpect.spawn("bash", ["--norc", "--noprofile", "-c", command], cwd=str(REPO),
                         env=env, encoding="utf-8", timeout=timeout, dimensions=(50, 200))


def finish(child):
    """``(screen text, exit status)`` once the command has ended."""
    child.expect(pexpect.EOF)
    child.close()
    return child.before.replace("\r\n", "\n"), child.exitstatus


def type_(command, timeout=120):
    return finish(spawn(command, timeout))


# What a user must never have to read past.
NOISE = [
    (re.compile(r"Traceback \(most recent call last\)"), "a Python traceback"),
    (re.compile(r"\bWarning\b|\bWARNING\b|[A-Za-z]+Warning:"), "a warning to ignore"),
    (re.compile(r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=)"), "a Python repr like DetectorSettings(...)"),
    (re.compile(r"<[\w.]+ object at 0x|\bobject at 0x[0-9a-f]+"), "a Python object repr"),
    (re.compile(r"\bKWSD_[A-Z_]+="), "journald fields on a terminal line"),
    (re.compile(r"INFO: Created TensorFlow Lite"), "the TFLite runtime's banner"),
    (re.compile(r"^[EWI]\d{4} \d\d:\d\d:\d\d", re.M), "TensorFlow's C++ log"),
]


def assert_clean(screen):
    for pattern, what in NOISE:
        found = pattern.search(screen)
        assert found is None, f"{what} on the screen: {found.group(0)!r} in\n{screen}"


def readme_block(after):
    """The lines of the README's code block that follows the line starting with ``after``."""
    at = README.index(after)
    start = README.index("```\n", at) + 4
    return README[start:README.index("```", start)].rstrip("\n").split("\n")


def assert_shows(screen, expected):
    """Each expected line appears on the screen, in order; a line ending in ``...`` stands
    for any line it begins."""
    lines = screen.split("\n")
    i = 0
    for want in expected:
        prefix = want.endswith("...")
        want = want[:-3] if prefix else want
        while i < len(lines) and not (lines[i].startswith(want) if prefix else lines[i] == want):
            i += 1
        assert i < len(lines), f"{want!r} not on the screen (in this order):\n{screen}"
        i += 1


# --------------------------------------------------------------------------- the demo

@pytest.fixture(scope="module")
def demo():
    """The README's demo (a 23 s recording in real time), started by the first test that
    asks for it; every test does, and the last one reads its screen, so it plays while the
    other commands are typed."""
    child = spawn(DEMO, timeout=180)
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_readme_shows_what_detect_prints(demo):
    block = readme_block("The same model on a file")
    assert block[0].startswith("$ .venv/bin/kwsd detect ")
    screen, status = type_(block[0][len("$ .venv/bin/"):])
    assert status == 0
    assert_clean(screen)
    assert screen.rstrip("\n").split("\n") == block[1:]


def test_detect_says_when_nothing_fired(demo, tmp_path):
    import soundfile

    quiet = tmp_path / "kitchen.wav"
    noise = np.random.default_rng(1).normal(0, 300, 2 * 16000).astype(np.int16)
    soundfile.write(str(quiet), noise, 16000)
    screen, status = type_(f"kwsd detect {quiet}")
    assert status == 0 and screen.strip() == f"0 detections in {quiet} (2.0 s)"


def test_scores_view_labels_the_smoothed_score_it_thresholds(demo):
    screen, status = type_("kwsd detect --scores kwsd/data/demo.flac")
    assert status == 0
    assert_clean(screen)
    hops = re.findall(r"(\d+\.\d\d) s  smoothed (\d\.\d{3}) \|[# :.]{40}\|  raw (\d\.\d{3})", screen)
    assert len(hops) > 200
    # the detection comes on the first hop whose smoothed score (not the raw one) is over
    # the model's threshold, after a hop whose raw score alone was over it
    from kwsd.model import BUNDLED_MODEL, load_model

    threshold = load_model(BUNDLED_MODEL).defaults.threshold
    first = next(h for h in hops if float(h[1]) >= threshold)
    assert f"kwsd/data/demo.flac\t    {first[0]} s\tstop" in screen
    assert any(float(raw) >= threshold for t, s, raw in hops if float(t) < float(first[0]))


# --------------------------------------------------------------------------- mistakes

def test_a_broken_config_names_each_key_and_exits_78(demo, tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("audio:\n  devcie: USB\nactions:\n  - {type: led, pin: GPIO17}\n"
                   "  - {type: relay, pin: BOARD11}\n")
    screen, status = type_(f"kwsd check-config --config {cfg}")
    assert status == 78
    assert_clean(screen)
    assert "audio.devcie: unknown key (did you mean 'device'?)" in screen
    assert "actions[1].pin: 'BOARD11' is GPIO17, already used by actions[0].pin" in screen


def test_check_config_of_the_example_says_which_step_makes_its_model(demo):
    screen, status = type_("kwsd check-config --config kwsd/examples/kwsd.yaml")
    if Path("/var/lib/kwsd/models/stop.tflite").exists():
        pytest.skip("kwsd is installed on this machine: the model is there")
    assert status == 65
    assert_clean(screen)
    assert "/var/lib/kwsd/models/stop.tflite: no such model file" in screen
    assert "kwsd install-service" in screen


def test_check_config_prints_settings_as_words(demo):
    screen, status = type_("kwsd check-config --config kwsd/examples/demo.yaml")
    assert status == 0
    assert_clean(screen)
    from kwsd.model import BUNDLED_MODEL, load_model

    threshold = re.escape(f"{load_model(BUNDLED_MODEL).defaults.threshold:g}")
    assert re.search(rf"^detector: threshold {threshold}, smoothing 3 hop\(s\), refractory 1 s, "
                     r"a decision every 0\.1 s$", screen, re.M), screen


def test_a_damaged_model_is_named_with_the_fix(demo, tmp_path):
    model = tmp_path / "stop.tflite"
    model.write_bytes((REPO / "kwsd/models/stop.tflite").read_bytes()[:3000])   # cut short
    screen, status = type_(f"kwsd detect --model {model} kwsd/data/demo.flac")
    assert status == 65
    assert_clean(screen)
    assert f"{model}:" in screen and "copy the model file again" in screen


def test_unreadable_audio_files_are_named_and_the_rest_still_done(demo, tmp_path):
    bad = tmp_path / "take2.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really")
    screen, status = type_(f"kwsd detect {bad} kwsd/data/demo.flac {tmp_path}/missing.flac")
    assert status == 66
    assert_clean(screen)
    assert f"kwsd detect: {bad}: cannot read audio" in screen
    assert f"kwsd detect: {tmp_path}/missing.flac: no such file" in screen
    assert "kwsd/data/demo.flac\t   21.30 s\tstop" in screen


def test_listen_without_a_microphone_exits_with_the_hint(demo):
    from kwsd.capture import list_input_devices

    if list_input_devices():
        pytest.skip("this machine has an audio input device")
    screen, status = type_("kwsd listen", timeout=60)
    assert status == 69
    assert_clean(screen)
    assert "no audio input device" in screen and "`kwsd devices`" in screen


def test_run_without_a_config_says_how_to_get_one(demo):
    if Path("/etc/kwsd/kwsd.yaml").exists():
        pytest.skip("kwsd is installed on this machine: /etc/kwsd/kwsd.yaml exists")
    screen, status = type_("kwsd run")
    assert status == 78
    assert_clean(screen)
    assert "/etc/kwsd/kwsd.yaml: cannot read" in screen and "install-service" in screen
    assert "--config kwsd/examples/demo.yaml" in screen


def test_a_bad_command_line_exits_64_with_the_usage(demo):
    screen, status = type_("kwsd detect --threshold high kwsd/data/demo.flac")
    assert status == 64
    assert_clean(screen)
    assert "usage: kwsd detect" in screen and "--threshold: not a number: 'high'" in screen
    screen, status = type_("kwsd-train train --epochs many")
    assert status == 64 and "usage: kwsd-train train" in screen


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here")
@pytest.mark.skipif(sys.executable.startswith(("/tmp/", "/var/tmp/")),
                    reason="this Python environment is under /tmp (refused; tested below)")
def test_install_service_without_systemd_says_what_to_do(demo):
    screen, status = type_("kwsd install-service --dry-run")
    assert status == 0
    assert_clean(screen)
    assert "would: install /etc/systemd/system/kwsd.service" in screen
    assert "systemd is not running on this machine" in screen
    assert "run --config /etc/kwsd/kwsd.yaml" in screen       # how to run it meanwhile


def test_install_service_refuses_a_venv_under_tmp(demo, tmp_path_factory):
    """The unit's PrivateTmp=yes hides /tmp from the service: refused before anything is done."""
    import tempfile
    import venv

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        venv.EnvBuilder(with_pip=False).create(f"{tmp}/venv")
        site = next(Path(f"{tmp}/venv/lib").glob("python3*/site-packages"))
        # this environment's packages and this checkout, visible from the new venv
        (site / "kwsd-dev.pth").write_text("\n".join([str(REPO)] + [p for p in sys.path
                                                                     if p.endswith("site-packages")]))
        screen, status = type_(f"{tmp}/venv/bin/python -m kwsd install-service --dry-run")
    assert status == 77
    assert_clean(screen)
    assert "PrivateTmp=yes" in screen and "/opt/kwsd" in screen
    assert "would:" not in screen


# --------------------------------------------------------------------------- the trainer

@pytest.mark.parametrize("command, defaults", [
    ("train", [("--epochs EPOCHS", "30"), ("--lr LR", "0.002")]),
    ("prepare", [("--seed SEED", "1234"), ("--validation-percent VALIDATION_PERCENT", "10"),
                 ("--snr-db LO HI", "0 25"), ("--keyword KEYWORD", "stop"),
                 ("--variants VARIANTS", "8")]),
    ("export", [("--threshold THRESHOLD", "0.5")]),
])
def test_trainer_options_show_their_defaults(demo, command, defaults):
    screen, status = type_(f"kwsd-train {command} --help")
    assert status == 0
    assert_clean(screen)
    flat = re.sub(r"\s+", " ", screen)
    for option, default in defaults:
        shown = re.search(r"\(default: ([^)]*)\)", flat[flat.index(f" {option} "):])
        assert shown.group(1) == default, (option, shown.group(0))


# --------------------------------------------------------------------------- the demo, last
# (it has been playing in real time since the first test started it)

def test_readme_shows_what_the_demo_prints(demo):
    block = readme_block("`script/demo` runs the real daemon")
    assert block[0] == "$ .venv/bin/" + DEMO
    screen, status = finish(demo)
    assert status == 0, screen
    assert_clean(screen)
    assert_shows(screen, block[1:])
    assert len(re.findall(r"^info: detected 'stop'", screen, re.M)) == 3
    # the pin history reads as seconds from the start, with milliseconds
    led = re.search(r"^info: pin history led GPIO17 \(from the start\): (.*)$", screen, re.M)
    times = [float(t) for t in re.findall(r"(?:on|off) at (\d+\.\d{3}) s", led.group(1))]
    assert len(times) == 7 and times == sorted(times) and times[0] == 0.0 and times[-1] < 30


# --------------------------------------------------------------------------- after the demo

def test_prepare_with_every_keyword_clip_damaged_exits_65(tmp_path):
    """After the demo: its CPU load would make the real-time demo skip late windows."""
    data = tmp_path / "data"
    for word in ("stop", "go"):
        (data / word).mkdir(parents=True)
    for i in range(3):
        (data / "stop" / f"s{i}_nohash_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    import soundfile

    for i in range(4):
        soundfile.write(str(data / "go" / f"g{i}_nohash_0.wav"),
                        np.zeros(16000, np.int16), 16000)
    screen, status = type_(f"kwsd-train -q -j 1 prepare {data} --out {tmp_path}/work", timeout=300)
    assert status == 65, screen
    assert_clean(screen)
    assert "none of the 'stop' clips for training could be read" in screen
    assert "replace the damaged files" in screen
