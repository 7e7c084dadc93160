"""The daemon's YAML config: the example loads, and each kind of mistake is reported with its
key path, by `kwsd check-config` with exit status 78 and no traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


# --- hostile input: every one refused with exit 78 and a message, never a traceback or hang

NAN_KEYS = ["watch_interval_s", "audio.block_s", "audio.ring_s", "audio.stall_timeout_s",
            "audio.retry_initial_s", "audio.retry_max_s", "detector.refractory_s",
            "detector.max_lag_s", "actions[0].on_time", "actions[1].pulse_s",
            "actions[2].timeout_s"]


@pytest.mark.parametrize("key", NAN_KEYS)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_refused_for_every_number(tmp_path, key, value):
    """Fault 3: NaN passed every range check (NaN < lo is False) for these 11 keys."""
    data = {"model": "m", "audio": {}, "detector": {},
            "actions": [{"type": "led", "pin": 17}, {"type": "relay", "pin": 27},
                        {"type": "command", "argv": ["true"]}]}
    where, name = key.rsplit(".", 1) if "." in key else ("", key)
    if where.startswith("actions"):
        where = data["actions"][int(where[8])]
    else:
        where = data[where] if where else data
    where[name] = "VALUE"
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(data).replace("VALUE", value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert "finite" in str(info.value)


def _bomb():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("model: m\nactions: *i")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (_bomb(), "aliases"),
    "deep nesting": ("model: " + "[" * 1000 + "]" * 1000 + "\n", "nested"),
    "5000-digit integer": (f"model: m\naudio: {{device: {'9' * 5000}}}\n", "digits"),
    "NUL in the model path": ('model: "/var/lib/kwsd/a\\0b.tflite"\n', "NUL"),
    "lone surrogate in a path": ('model: "/var/lib/kwsd/\\udc80.tflite"\n', "surrogate"),
    "NUL in a command's argv": ('model: m\nactions:\n  - {type: command, argv: ["a\\0b"]}\n',
                                "actions[0].argv[0]: contains a NUL"),
    "a 30-digit device index": (f"model: m\naudio: {{device: {'9' * 30}}}\n", "audio.device"),
    "a 1 MB value": ("model: m\naudio: {samplerate: " + "x" * 1_000_000 + "}\n", "..."),
    "a key given twice": ("model: m\ndetector:\n  threshold: 0.5\n  threshold: 0.9\n",
                          "line 4, column 3: key 'threshold' given twice (first on line 3)"),
    "a key given twice on one line": (
        "model: m\ndetector: {threshold: 0.5, threshold: 0.9}\n",
        "line 2, column 28: key 'threshold' given twice (first on line 2)"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_configs_exit_78_with_a_message(tmp_path, name):
    """Fault 4: these crashed or hung check-config/run with a traceback (exit 1)."""
    text, words = HOSTILE[name]
    path = tmp_path / "k.yaml"
    path.write_text(text)
    proc = _check_config(path, "--no-model")
    assert proc.returncode == 78, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and words in proc.stderr
    assert len(proc.stderr) < 2000                  # the value is echoed truncated


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "big"])
def test_config_path_that_is_not_a_small_regular_file(tmp_path, special):
    """Fault 4: --config /dev/zero read forever (MemoryError); a FIFO blocked in open()."""
    import os
    if special == "fifo":
        special = tmp_path / "k.yaml"
        os.mkfifo(special)
    elif special == "big":
        special = tmp_path / "k.yaml"
        special.write_text("# padding\n" * 200_000)
    proc = _check_config(special)
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "not a regular file" in proc.stderr or "bytes" in proc.stderr


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "padded"])
def test_model_path_that_is_not_a_small_regular_file(tmp_path, special):
    """Fault 4/7: `model: /dev/zero` and a FIFO at the model path (open() blocked the main
    thread); a valid model padded to 100 MB was accepted."""
    import os
    model = tmp_path / "stop.tflite"
    if special == "fifo":
        os.mkfifo(model)
    elif special == "padded":
        tiny = Path(__file__).resolve().parent / "data" / "tiny_float.tflite"
        model.write_bytes(tiny.read_bytes() + b"\0" * (100 << 20))
    else:
        model = special
    cfg = tmp_path / "k.yaml"
    cfg.write_text(f"model: {model}\n")
    proc = _check_config(cfg)
    assert proc.returncode == 65, proc.stderr
    assert str(model) in proc.stderr and "Traceback" not in proc.stderr
