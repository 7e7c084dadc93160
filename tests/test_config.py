"""The daemon's YAML config: the example loads, and each kind of mistake is reported with its
key path, by `kwsd check-config` with exit status 78 and no traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kwsd.config import ACTION_TYPES, config_keys, load_config, parse_config
from kwsd.errors import EX_CONFIG, ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "kwsd" / "examples" / "kwsd.yaml"
SEED = Path(__file__).resolve().parents[2] / "shared" / "peers" / "seed" / "wake_word_stop_lite.tflite"


def test_example_config_loads_with_every_key_documented():
    cfg = load_config(EXAMPLE)
    assert cfg.model == "/var/lib/kwsd/models/stop.tflite"
    assert cfg.actions[0].type == "led"
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^\s*#?\s*-?\s*([a-z_]+):", text, flags=re.M))
    missing = {k.split(".")[-1] for k in config_keys()} - documented
    for cls in ACTION_TYPES.values():
        missing |= set(config_keys(cls)) - documented
    assert not missing, f"keys not shown in {EXAMPLE.name}: {sorted(missing)}"


def test_defaults_fill_every_key():
    from kwsd.model import BUNDLED_MODEL
    assert parse_config({}).model == BUNDLED_MODEL          # no model configured
    cfg = parse_config({"model": "stop.tflite"}, base_dir="/etc/kwsd")
    assert cfg.model == "/etc/kwsd/stop.tflite"
    assert cfg.audio.samplerate == "auto" and cfg.audio.channel == "mix"
    assert cfg.detector.threshold is None      # the model's default applies
    assert cfg.actions == ()


@pytest.mark.parametrize("data, key, words", [
    ({"model": "m", "audoi": {}}, "audoi", ["unknown key", "did you mean 'audio'"]),
    ({"model": "m", "audio": {"devcie": "USB"}}, "audio.devcie", ["did you mean 'device'"]),
    ({"model": "m", "audio": {"samplerate": "fast"}}, "audio.samplerate",
     ["an integer or 'auto'", "'fast'"]),
    ({"model": "m", "audio": {"samplerate": 100}}, "audio.samplerate", [">= 4000"]),
    ({"model": "m", "detector": {"threshold": 1.5}}, "detector.threshold", ["<= 1.0"]),
    ({"model": "m", "detector": {"threshold": 0}}, "detector.threshold", ["> 0.0"]),
    ({"model": "m", "detector": {"smoothing": 2.5}}, "detector.smoothing", ["integer"]),
    ({"model": "m", "watch_model": "yes"}, "watch_model", ["true or false"]),
    ({"model": "m", "gpio": {"pin_factory": "gpio"}}, "gpio.pin_factory", ["'mock'"]),
    ({"model": "m", "profile": "mfcc"}, "profile", ["'tutorial-mfcc16'"]),
    ({"model": 5}, "model", ["a string"]),
    ({"model": "m", "actions": {"type": "led"}}, "actions", ["a list"]),
    ({"model": "m", "actions": [{"type": "lde", "pin": 17}]}, "actions[0].type",
     ["did you mean 'led'"]),
    ({"model": "m", "actions": [{"type": "led", "pin": "GPIO99"}]}, "actions[0].pin",
     ["gpiozero naming"]),
    ({"model": "m", "actions": [{"type": "led", "pin": 17, "ontime": 2}]}, "actions[0].ontime",
     ["did you mean 'on_time'"]),
    ({"model": "m", "actions": [{"type": "relay", "pin": 27, "mode": "flip"}]},
     "actions[0].mode", ["'toggle'"]),
    ({"model": "m", "actions": [{"type": "command", "argv": []}]}, "actions[0].argv",
     ["non-empty list"]),
    ({"model": "m", "actions": [{"type": "command", "argv": "beep"}]}, "actions[0].argv",
     ["a list"]),
])
def test_each_mistake_names_its_key(data, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config(data, path="/etc/kwsd/kwsd.yaml")
    err = info.value
    assert err.key == key
    assert err.exit_status == EX_CONFIG == 78
    assert str(err).startswith(f"/etc/kwsd/kwsd.yaml: {key}: ")
    for w in words:
        assert w in str(err)


def test_a_pin_used_twice_under_two_names():
    data = {"model": "m", "actions": [{"type": "led", "pin": "GPIO17"},
                                      {"type": "relay", "pin": "BOARD11"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == "actions[1].pin"
    assert "GPIO17" in str(info.value) and "actions[0].pin" in str(info.value)


def test_all_problems_are_listed_together():
    with pytest.raises(ConfigError) as info:
        parse_config({"model": "m", "audio": {"block_s": -1}, "detector": {"treshold": 0.5}})
    text = str(info.value)
    assert "2 problems" in text
    assert "audio.block_s" in text and "detector.treshold" in text and "threshold" in text


def test_yaml_syntax_error_gives_line(tmp_path):
    bad = tmp_path / "kwsd.yaml"
    bad.write_text("model: m\naudio:\n  device: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "line" in str(info.value)


def _check_config(path, *extra):
    return subprocess.run([sys.executable, "-m", "kwsd", "check-config", "--config", str(path),
                           *extra], capture_output=True, text=True, timeout=120)


def test_check_config_command_exit_78_names_key(tmp_path):
    bad = tmp_path / "kwsd.yaml"
    bad.write_text("model: m.tflite\naudio:\n  samplerate: 44.1k\n")
    proc = _check_config(bad)
    assert proc.returncode == 78
    assert "audio.samplerate" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not SEED.exists(), reason=f"tutorial model not found at {SEED} "
                    "(the repository is cloned without ../shared)")
def test_check_config_command_accepts_a_good_config(tmp_path):
    good = tmp_path / "kwsd.yaml"
    good.write_text(f"model: {SEED}\nactions:\n  - {{type: led, pin: 17}}\n")
    proc = _check_config(good)
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout and "tutorial-mfcc16" in proc.stdout


def test_bare_yaml_on_off_mean_the_words(tmp_path):
    """YAML 1.1 reads `safe_state: off` as false; the user meant 'off'."""
    path = tmp_path / "k.yaml"
    path.write_text("actions:\n  - {type: relay, pin: 27, safe_state: off}\n"
                    "  - {type: relay, pin: 22, safe_state: on}\n")
    cfg = load_config(path)
    assert [a.safe_state for a in cfg.actions] == ["off", "on"]
