"""The daemon's YAML configuration: loading, defaults and validation.

Every problem names its key path (``audio.samplerate``, ``actions[1].pin``) and what was
expected; all problems of a file are collected and reported together in one
:class:`~kwsd.errors.ConfigError` (exit status 78, so systemd stops restarting).

>>> cfg = parse_config({"model": "/var/lib/kwsd/models/stop.tflite",
...                     "actions": [{"type": "led", "pin": "GPIO17"}]})
>>> cfg["audio"]["samplerate"], cfg["actions"][0]["on_time"]
('auto', 1.0)
>>> parse_config({"model": "m.tflite", "audoi": {}})
Traceback (most recent call last):
...
kwsd.errors.ConfigError: <config>: audoi: unknown key (did you mean 'audio'?)
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import yaml

from kwsd.errors import ConfigError
from kwsd.profiles import PROFILES

#: Where ``kwsd run`` looks when ``--config`` is not given.
DEFAULT_CONFIG_PATH = "/etc/kwsd/kwsd.yaml"

_REQUIRED = object()


class Field:
    """One scalar setting: accepted types, a default, and an optional range or choice list.

    ``types`` is a tuple of Python types (``bool`` is never accepted as a number);
    ``choices`` lists accepted string values (they may sit beside numeric types, as
    ``samplerate: auto | 16000``); ``lo``/``hi`` bound numbers (inclusive unless
    ``lo_open``); ``nullable`` lets ``null`` mean "use the model's / system default".
    """

    def __init__(self, types, default=_REQUIRED, *, choices=None, lo=None, hi=None,
                 lo_open=False, nullable=False, doc=""):
        self.types = types
        self.default = default
        self.choices = choices
        self.lo, self.hi, self.lo_open = lo, hi, lo_open
        self.nullable = nullable
        self.doc = doc

    def expected(self):
        """Human description of what is accepted, for error messages."""
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                 list: "a list"}
        parts = [names[t] for t in self.types if not (t is str and self.choices)]
        if self.choices:
            parts.append(" or ".join(repr(c) for c in self.choices))
        if self.nullable:
            parts.append("null")
        return " or ".join(parts)

    def check(self, value, key, errors):
        """Return the validated value (ints widened to float where a number is wanted)."""
        if value is None:
            if self.nullable:
                return None
            errors.append((key, f"expected {self.expected()}, got null"))
            return self.default if self.default is not _REQUIRED else None
        if isinstance(value, str) and self.choices and value in self.choices:
            return value
        if isinstance(value, bool) and self.choices and {"on", "off"} <= set(self.choices):
            # YAML 1.1 reads a bare on/off as true/false: take them as the words meant
            return "on" if value else "off"
        ok_type = None
        for t in self.types:
            if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                ok_type = float
                value = float(value)
                break
            if t is int and isinstance(value, int) and not isinstance(value, bool):
                ok_type = int
                break
            if t in (str, bool, list) and isinstance(value, t):
                ok_type = t
                break
        if ok_type is None or (ok_type is str and self.choices and value not in self.choices):
            errors.append((key, f"expected {self.expected()}, got {value!r}"))
            return None
        if ok_type in (int, float):
            if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
                rel = ">" if self.lo_open else ">="
                errors.append((key, f"must be {rel} {self.lo}, got {value!r}"))
            elif self.hi is not None and value > self.hi:
                errors.append((key, f"must be <= {self.hi}, got {value!r}"))
        return value


_PIN = Field((int, str), doc="gpiozero pin name: 17, 'GPIO17', 'BCM17', 'BOARD11'")

#: The schema: nested dicts of :class:`Field`; ``actions`` entries are checked per type.
SCHEMA = {
    "model": Field((str,), None, nullable=True,
                   doc="path of the .tflite model (null: the model bundled with kwsd)"),
    "profile": Field((str,), None, nullable=True, choices=tuple(PROFILES),
                     doc="feature profile name for a model without embedded metadata"),
    "watch_model": Field((bool,), True),
    "watch_interval_s": Field((float,), 1.0, lo=0.05, hi=3600),
    "audio": {
        "device": Field((int, str), None, nullable=True),
        "samplerate": Field((int,), "auto", choices=("auto",), lo=4000, hi=384000),
        "channel": Field((int,), "mix", choices=("mix",), lo=0, hi=63),
        "channels": Field((int,), None, nullable=True, lo=1, hi=64),
        "block_s": Field((float,), 0.02, lo=0.001, hi=0.5),
        "ring_s": Field((float,), 4.0, lo=0.5, hi=60),
        "stall_timeout_s": Field((float,), 2.0, lo=0.2, hi=600),
        "retry_initial_s": Field((float,), 0.5, lo=0.01, hi=60),
        "retry_max_s": Field((float,), 10.0, lo=0.01, hi=3600),
    },
    "detector": {
        "threshold": Field((float,), None, nullable=True, lo=0.0, lo_open=True, hi=1.0),
        "smoothing": Field((int,), None, nullable=True, lo=1, hi=100),
        "refractory_s": Field((float,), None, nullable=True, lo=0.0, hi=3600),
        "hop_s": Field((float,), None, nullable=True, lo=0.01, hi=1.0),
        "max_lag_s": Field((float,), 0.5, lo=0.05, hi=60),
    },
    "gpio": {
        "pin_factory": Field((str,), None, nullable=True,
                             choices=("mock", "lgpio", "rpigpio", "pigpio", "native")),
    },
    "logging": {
        "level": Field((str,), "info", choices=("debug", "info", "warning", "error")),
        "journal": Field((str, bool), "auto", choices=("auto",)),
    },
    "actions": Field((list,), []),
}

ACTION_SCHEMAS = {
    "led": {
        "type": Field((str,)),
        "pin": _PIN,
        "on_time": Field((float,), 1.0, lo=0.0, lo_open=True, hi=3600),
        "active_high": Field((bool,), True),
    },
    "relay": {
        "type": Field((str,)),
        "pin": _PIN,
        "mode": Field((str,), "pulse", choices=("pulse", "latch_on", "latch_off", "toggle")),
        "pulse_s": Field((float,), 0.5, lo=0.0, lo_open=True, hi=3600),
        "active_high": Field((bool,), True),
        "initial_value": Field((bool,), False),
        "safe_state": Field((str,), "off", choices=("off", "on", "initial")),
    },
    "command": {
        "type": Field((str,)),
        "argv": Field((list,)),
        "timeout_s": Field((float,), 10.0, lo=0.0, lo_open=True, hi=86400),
    },
}


def _unknown(key, known, where, errors):
    near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(known)})"
    errors.append((f"{where}{key}", "unknown key" + hint))


def _check_mapping(data, schema, where, errors):
    """Validate ``data`` against a nested ``schema``; return it with defaults filled in."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append((where.rstrip(".") or "<top>",
                       f"expected a mapping, got {type(data).__name__} {data!r}"))
        data = {}
    out = {}
    for key, value in data.items():
        if key not in schema:
            _unknown(key, schema, where, errors)
    for key, spec in schema.items():
        path = f"{where}{key}"
        if isinstance(spec, dict):
            out[key] = _check_mapping(data.get(key), spec, path + ".", errors)
        elif key in data:
            out[key] = spec.check(data[key], path, errors)
        elif spec.default is _REQUIRED:
            errors.append((path, f"missing (expected {spec.expected()})"))
            out[key] = None
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _check_actions(actions, errors):
    """Validate the ``actions`` list entry by entry, and pins used more than once."""
    from gpiozero.pins.pi import PiBoardInfo   # pin naming only; no hardware touched

    board = PiBoardInfo.from_revision(0xD04170)   # a Pi 5: the 40-pin header of every recent Pi
    checked, seen = [], {}
    for i, entry in enumerate(actions or []):
        where = f"actions[{i}]"
        if not isinstance(entry, dict):
            errors.append((where, f"expected a mapping with a 'type' key, got {entry!r}"))
            continue
        kind = entry.get("type")
        if kind not in ACTION_SCHEMAS:
            near = difflib.get_close_matches(str(kind), list(ACTION_SCHEMAS), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            errors.append((f"{where}.type",
                           f"expected one of {', '.join(ACTION_SCHEMAS)}, got {kind!r}{hint}"))
            continue
        action = _check_mapping(entry, ACTION_SCHEMAS[kind], where + ".", errors)
        if kind == "command":
            argv = action.get("argv")
            if argv is not None and (not argv or not all(isinstance(a, (str, int, float))
                                                         and not isinstance(a, bool)
                                                         for a in argv)):
                errors.append((f"{where}.argv",
                               f"expected a non-empty list of strings, got {argv!r}"))
            elif argv is not None:
                action["argv"] = [str(a) for a in argv]
        if "pin" in action and action["pin"] is not None:
            try:
                gpio = board.to_gpio(action["pin"])
            except Exception as err:   # gpiozero's PinInvalidPin and friends
                errors.append((f"{where}.pin",
                               f"not a GPIO pin in gpiozero naming ({err}); "
                               "use e.g. 17, 'GPIO17', 'BCM17' or 'BOARD11'"))
            else:
                if gpio in seen:
                    errors.append((f"{where}.pin", f"{action['pin']!r} is {gpio}, already "
                                   f"used by {seen[gpio]}.pin"))
                else:
                    seen[gpio] = where
                action["gpio"] = gpio
        checked.append(action)
    return checked


def parse_config(data, path=None, base_dir=None):
    """Validate a parsed YAML document; return a plain dict with every key filled in.

    Relative ``model`` paths are resolved against ``base_dir`` (the config file's folder).
    Raises :class:`ConfigError` listing every problem, each with its key path.
    """
    errors = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"expected a YAML mapping at the top, got {data!r}")
    cfg = _check_mapping(data, SCHEMA, "", errors)
    cfg["actions"] = _check_actions(cfg.get("actions"), errors)
    audio = cfg["audio"]
    if (isinstance(audio.get("channel"), int) and audio.get("channels")
            and audio["channel"] >= audio["channels"]):
        errors.append(("audio.channel", f"channel {audio['channel']} does not exist with "
                       f"audio.channels: {audio['channels']} (channels count from 0)"))
    if (audio.get("retry_initial_s") and audio.get("retry_max_s")
            and audio["retry_max_s"] < audio["retry_initial_s"]):
        errors.append(("audio.retry_max_s", "must be >= audio.retry_initial_s"))
    if errors:
        if len(errors) == 1:
            raise ConfigError(path, errors[0][0], errors[0][1])
        lines = "\n".join(f"  {k}: {r}" for k, r in errors)
        err = ConfigError(path, None, f"{len(errors)} problems:\n{lines}")
        err.key = errors[0][0]
        raise err
    if cfg["model"] and base_dir is not None:
        cfg["model"] = str(Path(base_dir, os.path.expanduser(cfg["model"])))
    elif not cfg["model"]:
        from kwsd.model import BUNDLED_MODEL
        cfg["model"] = BUNDLED_MODEL
    return cfg


def load_config(path):
    """Read and validate the YAML file at ``path``; see :func:`parse_config`.

    >>> load_config("/nonexistent/kwsd.yaml")
    Traceback (most recent call last):
    ...
    kwsd.errors.ConfigError: /nonexistent/kwsd.yaml: cannot read: No such file or directory
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(path, None, f"cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, f"not UTF-8 text ({err.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(path, None, f"not valid YAML: {where}{problem}") from None
    return parse_config(data, path=path, base_dir=path.parent)
