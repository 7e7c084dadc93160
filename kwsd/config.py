"""The daemon's YAML configuration: typed, frozen settings objects built by one validator.

Every problem names its key path (``audio.samplerate``, ``actions[1].pin``) and what was
expected; all problems of a file are collected and reported together in one
:class:`~kwsd.errors.ConfigError` (exit status 78, so systemd stops restarting).

>>> cfg = parse_config({"model": "/var/lib/kwsd/models/stop.tflite",
...                     "actions": [{"type": "led", "pin": "GPIO17"}]})
>>> cfg.audio.samplerate, cfg.actions[0].on_time, cfg.actions[0].gpio
('auto', 1.0, 'GPIO17')
>>> parse_config({"model": "m.tflite", "audoi": {}})
Traceback (most recent call last):
...
kwsd.errors.ConfigError: <config>: audoi: unknown key (did you mean 'audio'?)

The sections are frozen dataclasses; each field carries its check (:func:`setting`) and
a nested section is declared with :func:`section`. Adding a key is adding a field::

    @dataclass(frozen=True)
    class CaptureConfig:
        seconds_before: float = setting((float,), 2.0, lo=0.0, hi=30.0)

    # and in Config:   capture: CaptureConfig = section(CaptureConfig)

Untrusted input is bounded: the file must be a regular file of at most
:data:`MAX_FILE_BYTES`, YAML nesting at most :data:`MAX_DEPTH` deep with at most
:data:`MAX_ALIASES` aliases, numbers finite, strings free of NUL and lone surrogates, and
values are echoed in messages truncated.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kwsd.errors import ConfigError
from kwsd.files import read_regular_file
from kwsd.profiles import PROFILES

#: Where ``kwsd run`` looks when ``--config`` is not given.
DEFAULT_CONFIG_PATH = "/etc/kwsd/kwsd.yaml"
MAX_FILE_BYTES = 1 << 20        #: a config file larger than this is refused
MAX_DEPTH = 32                  #: YAML nesting deeper than this is refused
MAX_ALIASES = 32                #: YAML aliases (``*name``) beyond this are refused
MAX_STRING = 4096               #: longest accepted string value (PATH_MAX)
MAX_INT = 2 ** 31 - 1           #: integers are bounded even where no range is given

_REQUIRED = object()
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60
_short_repr.maxlist = _short_repr.maxtuple = _short_repr.maxdict = 4
_short_repr.maxlevel = 2


def short(value) -> str:
    """``repr(value)`` truncated: what an error message echoes of a user's value."""
    try:
        return _short_repr.repr(value)
    except Exception:      # e.g. an int too long to print
        return f"<{type(value).__name__}>"


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
            return None
        if isinstance(value, str) and self.choices and value in self.choices:
            return value
        if isinstance(value, bool) and self.choices and {"on", "off"} <= set(self.choices):
            # YAML 1.1 reads a bare on/off as true/false: take them as the words meant
            return "on" if value else "off"
        ok_type = None
        for t in self.types:
            if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                ok_type = float
                if isinstance(value, int) and abs(value) > MAX_INT:
                    break
                value = float(value)
                break
            if t is int and isinstance(value, int) and not isinstance(value, bool):
                ok_type = int
                break
            if t in (str, bool, list) and isinstance(value, t):
                ok_type = t
                break
        if ok_type is None or (ok_type is str and self.choices and value not in self.choices):
            errors.append((key, f"expected {self.expected()}, got {short(value)}"))
            return None
        if ok_type is str:
            problem = text_problem(value)
            if problem:
                errors.append((key, f"{problem}: {short(value)}"))
                return None
        if ok_type in (int, float):
            if isinstance(value, int) and abs(value) > MAX_INT:
                errors.append((key, f"must be between -{MAX_INT} and {MAX_INT}, "
                               f"got {short(value)}"))
                return None
            if not math.isfinite(value):
                errors.append((key, f"must be a finite number, got {value!r}"))
                return None
            if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
                rel = ">" if self.lo_open else ">="
                errors.append((key, f"must be {rel} {self.lo}, got {value!r}"))
            elif self.hi is not None and value > self.hi:
                errors.append((key, f"must be <= {self.hi}, got {value!r}"))
        return value


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a setting (a path, a pin, an argument), or None if it can."""
    if "\0" in text:
        return "contains a NUL character"
    if len(text) > MAX_STRING:
        return f"longer than {MAX_STRING} characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def setting(types, default=_REQUIRED, **kw):
    """A dataclass field validated by :class:`Field` (same arguments)."""
    spec = Field(types, default, **kw)
    if default is _REQUIRED:
        return field(metadata={"check": spec})
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": spec})
    return field(default=default, metadata={"check": spec})


def section(cls):
    """A dataclass field holding a nested section (its own frozen dataclass)."""
    return field(default_factory=cls, metadata={"section": cls})


# ----------------------------------------------------------------------------- the sections
@dataclass(frozen=True)
class AudioConfig:
    """``audio:``: the capture device and how its loss is detected and retried."""

    device: int | str | None = setting((int, str), None, nullable=True, lo=0)
    samplerate: int | str = setting((int,), "auto", choices=("auto",), lo=4000, hi=384000)
    channel: int | str = setting((int,), "mix", choices=("mix",), lo=0, hi=63)
    channels: int | None = setting((int,), None, nullable=True, lo=1, hi=64)
    block_s: float = setting((float,), 0.02, lo=0.001, hi=0.5)
    ring_s: float = setting((float,), 4.0, lo=0.5, hi=60)
    stall_timeout_s: float = setting((float,), 2.0, lo=0.2, hi=600)
    retry_initial_s: float = setting((float,), 0.5, lo=0.01, hi=60)
    retry_max_s: float = setting((float,), 10.0, lo=0.01, hi=3600)


@dataclass(frozen=True)
class DetectorConfig:
    """``detector:``: overrides of the model's detector defaults (None: the model's)."""

    threshold: float | None = setting((float,), None, nullable=True, lo=0.0, lo_open=True,
                                      hi=1.0)
    smoothing: int | None = setting((int,), None, nullable=True, lo=1, hi=100)
    refractory_s: float | None = setting((float,), None, nullable=True, lo=0.0, hi=3600)
    hop_s: float | None = setting((float,), None, nullable=True, lo=0.01, hi=1.0)
    max_lag_s: float = setting((float,), 0.5, lo=0.05, hi=60)
    #: pick the threshold from the model's held-out table (``threshold`` still wins)
    max_false_accepts_per_hour: float | None = setting((float,), None, nullable=True, lo=0.0,
                                                       hi=3600)

    def overrides(self) -> dict:
        """The keys that override the model's :class:`~kwsd.detector.DetectorSettings`."""
        return {"threshold": self.threshold, "smoothing": self.smoothing,
                "refractory_s": self.refractory_s, "hop_s": self.hop_s}


@dataclass(frozen=True)
class GpioConfig:
    """``gpio:``: which gpiozero pin factory drives the outputs."""

    pin_factory: str | None = setting((str,), None, nullable=True,
                                      choices=("mock", "lgpio", "rpigpio", "pigpio", "native"))


@dataclass(frozen=True)
class LoggingConfig:
    """``logging:``."""

    level: str = setting((str,), "info", choices=("debug", "info", "warning", "error"))
    journal: str | bool = setting((str, bool), "auto", choices=("auto",))


@dataclass(frozen=True)
class CaptureConfig:
    """``capture:``: save the audio around detections and near misses for labelling and
    retraining (README, "Tune it to your room"). Off while ``dir`` is null: recordings of
    someone's home are opt-in."""

    dir: str | None = setting((str,), None, nullable=True,
                              doc="capture folder (unlabelled/, stop/, other/); null: off")
    detections: bool = setting((bool,), True)
    near_miss: float | None = setting((float,), 0.4, nullable=True, lo=0.0, lo_open=True,
                                      hi=1.0)
    max_mb: float = setting((float,), 200.0, lo=0.0, lo_open=True, hi=1_000_000)


_PIN = dict(doc="gpiozero pin name: 17, 'GPIO17', 'BCM17', 'BOARD11'")


@dataclass(frozen=True)
class LedConfig:
    """``{type: led}``: on for ``on_time`` seconds per detection."""

    type: str = setting((str,))
    pin: int | str = setting((int, str), **_PIN)
    on_time: float = setting((float,), 1.0, lo=0.0, lo_open=True, hi=3600)
    active_high: bool = setting((bool,), True)
    gpio: str | None = None         # the pin's GPIO name, filled in by the validator


@dataclass(frozen=True)
class RelayConfig:
    """``{type: relay}``: a digital output switched by ``mode``."""

    type: str = setting((str,))
    pin: int | str = setting((int, str), **_PIN)
    mode: str = setting((str,), "pulse", choices=("pulse", "latch_on", "latch_off", "toggle"))
    pulse_s: float = setting((float,), 0.5, lo=0.0, lo_open=True, hi=3600)
    active_high: bool = setting((bool,), True)
    initial_value: bool = setting((bool,), False)
    safe_state: str = setting((str,), "off", choices=("off", "on", "initial"))
    gpio: str | None = None


@dataclass(frozen=True)
class CommandConfig:
    """``{type: command}``: ``argv`` run without a shell per detection."""

    type: str = setting((str,))
    argv: tuple = setting((list,))
    timeout_s: float = setting((float,), 10.0, lo=0.0, lo_open=True, hi=86400)


#: ``actions[].type`` -> its section class.
ACTION_TYPES = {"led": LedConfig, "relay": RelayConfig, "command": CommandConfig}


@dataclass(frozen=True)
class Config:
    """The whole file. Build it with :func:`load_config` or :func:`parse_config`; change a
    copy with :func:`dataclasses.replace` (``replace(cfg, model="/tmp/m.tflite")``)."""

    model: str | None = setting((str,), None, nullable=True,
                                doc="path of the .tflite model (null: the bundled model)")
    profile: str | None = setting((str,), None, nullable=True, choices=tuple(PROFILES))
    watch_model: bool = setting((bool,), True)
    watch_interval_s: float = setting((float,), 1.0, lo=0.05, hi=3600)
    shadow_model: str | None = setting((str,), None, nullable=True,
                                       doc="a candidate model run beside the live one, "
                                           "driving nothing (null: none)")
    state_dir: str | None = setting((str,), None, nullable=True,
                                    doc="where the false-accept meter is kept (null: "
                                        "$STATE_DIRECTORY if systemd sets it, else not kept)")
    audio: AudioConfig = section(AudioConfig)
    detector: DetectorConfig = section(DetectorConfig)
    capture: CaptureConfig = section(CaptureConfig)
    gpio: GpioConfig = section(GpioConfig)
    logging: LoggingConfig = section(LoggingConfig)
    actions: tuple = setting((list,), [])


def config_keys(cls=Config, prefix=""):
    """Every dotted key a section accepts (``audio.block_s``, ...)."""
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:
            yield from config_keys(f.metadata["section"], prefix + f.name + ".")
        elif "check" in f.metadata:
            yield prefix + f.name


# ----------------------------------------------------------------------------- validation
def _unknown(key, known, where, errors):
    near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6) \
        if isinstance(key, str) and len(key) < 100 else []
    hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(known)})"
    name = key if isinstance(key, str) and len(key) < 100 else short(key)
    errors.append((f"{where}{name}", "unknown key" + hint))


def _build(cls, data, where, errors):
    """Validate the mapping ``data`` against section ``cls``; return a ``cls`` instance."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append((where.rstrip(".") or "<top>",
                       f"expected a mapping, got {type(data).__name__} {short(data)}"))
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls)
              if "check" in f.metadata or "section" in f.metadata}
    for key in data:
        if key not in fields:
            _unknown(key, fields, where, errors)
    values = {}
    for name, f in fields.items():
        path = f"{where}{name}"
        if "section" in f.metadata:
            values[name] = _build(f.metadata["section"], data.get(name), path + ".", errors)
            continue
        spec = f.metadata["check"]
        if name in data:
            value = spec.check(data[name], path, errors)
        elif spec.default is _REQUIRED:
            errors.append((path, f"missing (expected {spec.expected()})"))
            value = None
        else:
            value = spec.default
        if value is None and not spec.nullable:
            value = f.default if f.default is not dataclasses.MISSING else None
        values[name] = value
    return cls(**values)


def _check_argv(argv, where, errors):
    if argv is None:
        return ()
    if not argv or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                           for a in argv):
        errors.append((f"{where}.argv", f"expected a non-empty list of strings, got "
                       f"{short(argv)}"))
        return ()
    out = []
    for i, a in enumerate(argv):
        text = str(a) if not isinstance(a, int) or abs(a) <= MAX_INT else None
        problem = "a number too large" if text is None else text_problem(text)
        if problem:
            errors.append((f"{where}.argv[{i}]", f"{problem}: {short(a)}"))
            return ()
        out.append(text)
    return tuple(out)


def _gpio_name(pin):
    """gpiozero's GPIO name for ``pin`` (``'BOARD11'`` -> ``'GPIO17'``); no hardware touched.

    gpiozero is imported only here, when a config has pins: ``kwsd detect`` never needs it.
    """
    from gpiozero.pins.pi import PiBoardInfo

    board = PiBoardInfo.from_revision(0xD04170)   # a Pi 5: the 40-pin header of every recent Pi
    return board.to_gpio(pin)


def _check_actions(actions, errors):
    """Validate the ``actions`` list entry by entry, and pins used more than once."""
    checked, seen = [], {}
    for i, entry in enumerate(actions or []):
        where = f"actions[{i}]"
        if not isinstance(entry, dict):
            errors.append((where, f"expected a mapping with a 'type' key, got {short(entry)}"))
            continue
        kind = entry.get("type")
        cls = ACTION_TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            near = difflib.get_close_matches(str(kind)[:100], list(ACTION_TYPES), n=1,
                                             cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            errors.append((f"{where}.type", f"expected one of {', '.join(ACTION_TYPES)}, "
                           f"got {short(kind)}{hint}"))
            continue
        n_errors = len(errors)
        action = _build(cls, entry, where + ".", errors)
        if kind == "command":
            action = dataclasses.replace(action, argv=_check_argv(action.argv, where, errors))
        pin = getattr(action, "pin", None)
        if pin is not None and len(errors) == n_errors:
            try:
                gpio = _gpio_name(pin)
            except Exception as err:       # gpiozero's PinInvalidPin and friends
                errors.append((f"{where}.pin", f"not a GPIO pin in gpiozero naming ({err}); "
                               "use e.g. 17, 'GPIO17', 'BCM17' or 'BOARD11'"))
            else:
                if gpio in seen:
                    errors.append((f"{where}.pin", f"{pin!r} is {gpio}, already "
                                   f"used by {seen[gpio]}.pin"))
                else:
                    seen[gpio] = where
                action = dataclasses.replace(action, gpio=gpio)
        checked.append(action)
    return tuple(checked)


def parse_config(data, path=None, base_dir=None) -> Config:
    """Validate a parsed YAML document; return a :class:`Config` with every key filled in.

    Relative ``model`` paths are resolved against ``base_dir`` (the config file's folder).
    Raises :class:`ConfigError` listing every problem, each with its key path.
    """
    errors = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"expected a YAML mapping at the top, got {short(data)}")
    cfg = _build(Config, data, "", errors)
    cfg = dataclasses.replace(cfg, actions=_check_actions(cfg.actions, errors))
    audio = cfg.audio
    if isinstance(audio.channel, int) and audio.channels and audio.channel >= audio.channels:
        errors.append(("audio.channel", f"channel {audio.channel} does not exist with "
                       f"audio.channels: {audio.channels} (channels count from 0)"))
    if audio.retry_max_s < audio.retry_initial_s:
        errors.append(("audio.retry_max_s", "must be >= audio.retry_initial_s"))
    if errors:
        if len(errors) == 1:
            raise ConfigError(path, errors[0][0], errors[0][1])
        lines = "\n".join(f"  {k}: {r}" for k, r in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        err = ConfigError(path, None, f"{len(errors)} problems:\n{lines}{more}")
        err.key = errors[0][0]
        raise err
    if base_dir is not None:             # relative paths: from the config file's folder
        paths = {"shadow_model": cfg.shadow_model, "state_dir": cfg.state_dir}
        cfg = dataclasses.replace(cfg, **{k: str(Path(base_dir, os.path.expanduser(v)))
                                          for k, v in paths.items() if v})
        if cfg.capture.dir:
            cfg = dataclasses.replace(cfg, capture=dataclasses.replace(
                cfg.capture, dir=str(Path(base_dir, os.path.expanduser(cfg.capture.dir)))))
    if cfg.model and base_dir is not None:
        cfg = dataclasses.replace(cfg, model=str(Path(base_dir, os.path.expanduser(cfg.model))))
    elif not cfg.model:
        from kwsd.model import BUNDLED_MODEL
        cfg = dataclasses.replace(cfg, model=BUNDLED_MODEL)
    return cfg


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting depth limit, an alias budget, and no key given
    twice in one mapping (PyYAML keeps the last silently: a second ``threshold:`` added below
    the first would win unseen)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                if key_node.value in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} given twice (first on line "
                                    f"{first[key_node.value]})", key_node.start_mark)
                first[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text, path="<config>"):
    """Parse YAML text within the bounds above; ConfigError (naming ``path``) otherwise."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(path, None, f"not valid YAML: {where}{problem}") from None
    except ValueError as err:        # e.g. an integer of thousands of digits
        raise ConfigError(path, None, f"not valid YAML: {str(err)[:200]}") from None
    except RecursionError:
        raise ConfigError(path, None, "not valid YAML: nested too deeply") from None


def load_config(path) -> Config:
    """Read and validate the YAML file at ``path``; see :func:`parse_config`.

    >>> load_config("/nonexistent/kwsd.yaml")
    Traceback (most recent call last):
    ...
    kwsd.errors.ConfigError: /nonexistent/kwsd.yaml: cannot read: No such file or directory
    """
    path = Path(path)
    if "\0" in str(path):          # a command-line path may be any bytes but NUL
        raise ConfigError(short(str(path)), None, "not a usable path: contains a NUL character")
    try:
        data = read_regular_file(path, MAX_FILE_BYTES, "config file")
    except OSError as err:
        hint = ""
        if str(path) == DEFAULT_CONFIG_PATH and not path.exists():
            hint = (" (`sudo kwsd install-service` creates it; or name one with --config, "
                    "e.g. --config kwsd/examples/demo.yaml)")
        raise ConfigError(path, None, f"cannot read: {err.strerror or err}{hint}") from None
    except ValueError as err:
        raise ConfigError(path, None, f"cannot read: {err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, f"not UTF-8 text ({err.reason})") from None
    return parse_config(parse_yaml(text, path), path=path, base_dir=path.parent)
