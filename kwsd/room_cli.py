"""``kwsd stats``, ``kwsd captures`` and ``kwsd enroll``: the room-learning commands.

    kwsd stats                  detections/hour the room's audio gave, per threshold, next
                                to the model's own held-out table (live and shadow model)
    kwsd captures               list the captures; ``--label``: play each unlabelled one and
                                label it with a key (s = stop, o = other, d = delete ...)
    kwsd enroll --count 10      record prompted "stop"s through the configured microphone
                                into the capture folder's ``stop/``

Each reads the daemon's config (``--config``, default ``/etc/kwsd/kwsd.yaml``) for the
capture folder, the state folder, the models and the microphone. The logic is in plain
functions (:func:`stats_rows`, :func:`apply_key`, :class:`Enrolment`); the commands are
thin shells around them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from .captures import (LABELS, POSITIVE, UNLABELLED, label_capture, list_captures,
                       write_capture)
from .metadata import DetTable, read_metadata
from .meter import ScoreMeter, load_meters

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


# --------------------------------------------------------------------------- stats

def model_facts(path):
    """``(sha256, DetTable or None, metadata dict)`` of a model file, read without loading
    an interpreter; None when the file cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    meta = {}
    try:
        meta = read_metadata(data) or {}
    except Exception:  # noqa: BLE001 - a damaged model still has a hash
        pass
    try:
        table = DetTable.from_metadata(meta)
    except ValueError:
        table = None
    return hashlib.sha256(data).hexdigest(), table, meta


def stats_rows(state: dict, table: DetTable | None, thresholds=DEFAULT_THRESHOLDS) -> list:
    """For each threshold: ``(threshold, room detections/hour, share of time at or above,
    model false accepts/hour, model recall)``; None where a figure is unknown."""
    m = ScoreMeter.resume(state, state.get("model_sha256", ""), *_settings(state))
    rows = []
    for t in thresholds:
        row = table.row_at(t) if table else None
        exact = row is not None and abs(row[0] - t) < 1e-9
        rows.append((t, m.per_hour(t), m.share_above(t), row[1] if exact else None,
                     row[2] if exact else None))
    return rows


def _settings(state):
    hop, refractory, smoothing = state.get("settings", [0.1, 1.0, 1])
    return hop, refractory, smoothing


def _num(x, fmt, width=0):
    """``x`` formatted, or ``-`` when unknown, right-aligned to ``width``."""
    return ("-" if x is None else format(x, fmt)).rjust(width)


def format_stats(role: str, state: dict, table: DetTable | None, threshold=None,
                 thresholds=DEFAULT_THRESHOLDS) -> str:
    """One model's block of ``kwsd stats``."""
    seconds = state.get("seconds", 0.0)
    length = f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.get("since", 0)))
    head = (f"{role} {state.get('model', '?')} (sha256 {state.get('model_sha256', '?')[:12]}): "
            f"{length} of audio since {since}, {state.get('detections', 0)} detection(s)"
            + (f" at threshold {threshold:g}" if threshold is not None else ""))
    lines = [head]
    if table is not None:
        lines.append(f"  model's own figures: held-out {_num(table.hours, 'g')} h without the "
                     f"keyword, {_num(table.clips, 'd')} keyword clips")
    lines.append("  threshold  room det/h  time >= t  model FA/h  model recall")
    for t, per_h, share, fa, recall in stats_rows(state, table, thresholds):
        mark = " <" if threshold is not None and abs(t - threshold) < 1e-9 else ""
        lines.append(f"  {t:9.2f}  {_num(per_h, '.2f', 10)}  {_num(share, '.2%', 9)}  "
                     f"{_num(fa, '.2f', 10)}  {_num(recall, '.2f', 12)}{mark}")
    return "\n".join(lines)


def stats_report(state_file, models: dict, thresholds=DEFAULT_THRESHOLDS) -> str:
    """The whole ``kwsd stats`` text. ``models``: ``{role: (path, threshold or None)}`` for
    ``"live"`` and ``"shadow"`` (a missing role is skipped)."""
    doc = load_meters(state_file)
    blocks, shas = [], {}
    for role in ("live", "shadow"):
        if role not in models or not models[role][0]:
            continue
        path, threshold = models[role]
        facts = model_facts(path)
        if facts is None:
            blocks.append(f"{role} {path}: cannot read the model file")
            continue
        sha, table, meta = facts
        shas[role] = sha
        if threshold is None:
            threshold = (meta.get("detector") or {}).get("threshold")
        state = doc["meters"].get(sha)
        if state is None:
            blocks.append(f"{role} {os.path.basename(path)}: no audio metered yet "
                          f"(the daemon saves the meter to {state_file} every minute)")
            continue
        blocks.append(format_stats(role, state, table, threshold, thresholds))
    if "live" in shas and "shadow" in shas:
        c = doc.get("agreement", {}).get(f"{shas['live']}:{shas['shadow']}")
        if c:
            blocks.append(f"live and shadow: {c['both']} detection(s) by both, "
                          f"{c['live_only']} by the live model only, {c['shadow_only']} by "
                          f"the shadow only")
    others = [m for sha, m in doc["meters"].items() if sha not in shas.values()]
    if others:
        blocks.append("other models metered here (not configured now):\n" + "\n".join(
            f"  {m.get('model', '?')} (sha256 {m.get('model_sha256', '?')[:12]}): "
            f"{m.get('seconds', 0) / 3600:.2f} h, {m.get('detections', 0)} detection(s)"
            for m in sorted(others, key=lambda m: -m.get("updated", 0))))
    if not blocks:
        blocks.append(f"no meter state in {state_file}")
    blocks.append("Room det/h counts every detection the room's audio would have given at "
                  "each threshold (the detector's rule over the smoothed scores the daemon "
                  "saw): mostly false accepts, plus the times someone said the word.")
    return "\n\n".join(blocks)


def describe_model(model) -> str:
    """What ``kwsd detect --info MODEL`` prints: the file, its keyword, profile and
    detector defaults, where it came from, and its held-out threshold table."""
    import json

    meta = model.metadata or {}
    d = model.defaults
    lines = [f"model     {model.path}",
             f"sha256    {_sha256_file(model.path)}",
             f"keyword   {model.keyword!r}, profile {model.profile.name}, "
             f"{'int8' if model.quantized else 'float'}, runtime {model.runtime}",
             f"detector  threshold {d.threshold:g}, smoothing {d.smoothing}, refractory "
             f"{d.refractory_s:g} s, hop {d.hop_s:g} s"]
    if not meta:
        lines.append("metadata  none (a model without kwsd metadata: built-in defaults)")
    prov = meta.get("provenance") or {}
    for key in ("date", "git_commit", "command"):
        if prov.get(key):
            lines.append(f"{key:<9} {prov[key]}")
    if prov.get("data"):
        lines.append(f"data      {json.dumps(prov['data'], sort_keys=True)}")
    try:
        table = DetTable.from_metadata(meta)
    except ValueError as exc:
        lines.append(f"det_table unusable: {exc}")
        table = None
    if table is None:
        lines.append("det_table none: thresholds cannot be chosen by false accepts per hour")
    else:
        lines.append(f"det_table held-out {_num(table.hours, 'g')} h without the keyword, "
                     f"{_num(table.clips, 'd')} keyword clips:")
        lines.append("  threshold  FA/hour  recall")
        for t, fa, recall in table.rows:
            mark = " <" if abs(t - d.threshold) < 1e-9 else ""
            lines.append(f"  {t:9.2f}  {_num(fa, '.2f', 7)}  {_num(recall, '.3f', 6)}{mark}")
    return "\n".join(lines)


def _sha256_file(path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        return f"? ({exc.strerror or exc})"


# --------------------------------------------------------------------------- captures

KEYS = {"s": "stop", "o": "other", "u": "unlabelled", "d": "delete", "k": "skip",
        "": "skip", "p": "play", "q": "quit"}
KEY_HELP = "[s]top  [o]ther  [d]elete  [p]lay again  [k]eep unlabelled (Enter)  [q]uit"


def apply_key(flac, key: str):
    """Act on one capture for a key press; returns ``(action, path or None)``.

    ``s``/``o`` move it (and its sidecar) to ``stop/``/``other/``, ``d`` deletes both
    files, ``u`` moves it back to ``unlabelled/``; ``p``, ``k`` (or Enter) and ``q`` leave it.

    >>> apply_key("x.flac", "?")
    ('unknown', None)
    """
    action = KEYS.get(key.strip().lower()[:1] if key.strip() else "", "unknown")
    flac = Path(flac)
    if action in LABELS or action == UNLABELLED:
        return action, label_capture(flac, action)
    if action == "delete":
        for p in (flac, flac.with_suffix(".json")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return action, None
    return action, (flac if action in ("skip", "play", "quit") else None)


def describe_capture(label, flac, record) -> str:
    """One line of ``kwsd captures``."""
    when = record.get("time_utc", "?")[:19].replace("T", " ")
    score = record.get("score")
    return (f"{label:<10} {when}  {record.get('kind', '?'):<9} "
            f"{_num(score, '.3f'):>5}  {record.get('model', '?')}  {flac}")


def play(flac, device=None):
    """Play a capture through the default output (or ``device``) and wait for the end."""
    import sounddevice as sd
    import soundfile as sf

    data, rate = sf.read(str(flac), dtype="float32")
    sd.play(data, rate, device=device)
    sd.wait()


def label_loop(root, read_key=input, out=sys.stdout, play_audio=play) -> dict:
    """Play each unlabelled capture and act on the key read for it; returns counts."""
    counts = {}
    for label, flac, record in list_captures(root, labels=(UNLABELLED,)):
        print(describe_capture(label, flac, record), file=out)
        action = "play"
        while action in ("play", "unknown"):
            if action == "play" and play_audio is not None:
                try:
                    play_audio(flac)
                except Exception as exc:  # noqa: BLE001 - no speaker is no reason to stop
                    print(f"  (cannot play: {exc})", file=out)
                    play_audio = None
            try:
                key = read_key(f"  {KEY_HELP}: ")
            except EOFError:
                key = "q"
            action, _ = apply_key(flac, key)
            if action == "unknown":
                print(f"  unknown key {key!r}", file=out)
        counts[action] = counts.get(action, 0) + 1
        if action == "quit":
            break
    return counts


# --------------------------------------------------------------------------- enrol

class Enrolment:
    """Finds one spoken word in a stream of microphone blocks: waits for the level to rise
    ``margin_db`` above the room's floor (measured over the first ``floor_s``), then keeps
    ``before_s`` before the onset and ``after_s`` after it. Pure: feed blocks, get clips.

    >>> e = Enrolment(rate=1000, floor_s=0.1, before_s=0.1, after_s=0.2)
    >>> quiet, loud = np.full(50, 0.001), np.full(50, 0.3)
    >>> clips = [c for c in map(e.push, [quiet] * 4 + [loud] * 4 + [quiet] * 2) if c is not None]
    >>> len(clips), clips[0].size          # 0.1 s before the onset, 0.2 s from it
    (1, 300)
    """

    def __init__(self, rate: int, floor_s=0.5, before_s=0.5, after_s=1.5, margin_db=15.0,
                 min_dbfs=-50.0):
        self.rate = rate
        self.floor_s, self.before_s, self.after_s = floor_s, before_s, after_s
        self.margin_db, self.min_dbfs = margin_db, min_dbfs
        self._floor = []
        self._buf = []
        self._kept = 0
        self._onset = None            # samples kept at the onset

    @property
    def ready(self) -> bool:
        """Whether the room's floor has been measured (words are listened for after it)."""
        return sum(b.size for b in self._floor) >= self.floor_s * self.rate

    def _trim(self):
        """Keep only what may come before an onset: the last ``before_s``."""
        while self._buf and self._kept - self._buf[0].size >= self.before_s * self.rate:
            self._kept -= self._buf.pop(0).size

    def reset(self):
        """Start over for the next word (the floor, and the last ``before_s`` of audio as
        the next word's lead-in, are kept)."""
        audio = np.concatenate(self._buf) if self._buf else np.zeros(0)
        keep = audio[max(0, audio.size - int(self.before_s * self.rate)):]
        self._buf, self._kept, self._onset = ([keep] if keep.size else []), keep.size, None

    def push(self, block):
        """One block of mono float samples; returns the clip once complete, else None."""
        x = np.asarray(block, np.float64).reshape(-1)
        level = 10 * np.log10(np.mean(x ** 2) + 1e-12)
        self._buf.append(x)
        self._kept += x.size
        if not self.ready:
            self._floor.append(x)          # the room's floor (also the first lead-in)
            self._trim()
            return None
        if self._onset is None:
            floor = 10 * np.log10(np.mean(np.concatenate(self._floor) ** 2) + 1e-12)
            if level < max(floor + self.margin_db, self.min_dbfs):
                self._trim()
                return None
            self._onset = self._kept - x.size
        if self._kept - self._onset < self.after_s * self.rate:
            return None
        audio = np.concatenate(self._buf)
        start = max(0, self._onset - int(self.before_s * self.rate))
        clip = audio[start:self._onset + int(self.after_s * self.rate)]
        self.reset()
        return clip


def enroll(blocks, rate: int, out_rate: int, folder, count: int, prompt=print,
           timeout_s: float = 10.0, device: str = "") -> list:
    """Prompt ``count`` times and save each word heard (see :class:`Enrolment`) into
    ``folder`` as a capture; ``blocks`` yields mono float blocks at ``rate``. Returns the
    paths written. A prompt that hears nothing in ``timeout_s`` is asked again (twice)."""
    e = Enrolment(rate)
    written, misses = [], 0
    it = iter(blocks)
    for block in it:                   # the room's floor first, before the first prompt
        e.push(block)
        if e.ready:
            break
    n = 1
    while n <= count:
        prompt(f"say 'stop' ({n}/{count})")
        heard, waited = None, 0
        for block in it:
            waited += len(block)
            heard = e.push(block)
            if heard is not None or waited >= timeout_s * rate:
                break
        if heard is None:
            misses += 1
            e.reset()
            if misses > 2:
                prompt("heard nothing; check the microphone (kwsd listen shows its level)")
                break
            prompt("heard nothing, once more")
            continue
        record = {"kind": "enrolled", "score": 0.0, "wall_time": time.time(),
                  "time_utc": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                  "device": device, "role": "enroll"}
        written.append(write_capture(folder, heard, rate, out_rate, record))
        prompt(f"  saved {written[-1].name}")
        n += 1
    return written


def microphone_blocks(device, rate: int, channels: int, channel="mix", block_s=0.02):
    """Mono float blocks from an input device, as a generator (closed when it is)."""
    import sounddevice as sd

    from .frontend import to_float_mono

    with sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="int16",
                        blocksize=int(rate * block_s)) as stream:
        while True:
            data, _ = stream.read(int(rate * block_s))
            yield to_float_mono(data, channel)


# --------------------------------------------------------------------------- the commands

def _config(args):
    """The config named by ``--config``, else the default file when present, else the
    defaults (the bundled model, nothing captured)."""
    from .config import DEFAULT_CONFIG_PATH, load_config, parse_config

    path = args.config or (DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    return load_config(path) if path else parse_config({})


def _threshold(cfg, path):
    """The threshold the daemon runs ``path`` at under ``cfg`` (None if unknown)."""
    facts = model_facts(path)
    if facts is None:
        return None
    _, table, meta = facts
    if cfg.detector.threshold is not None:
        return cfg.detector.threshold
    if cfg.detector.max_false_accepts_per_hour is not None and table is not None:
        try:
            return table.threshold_for(cfg.detector.max_false_accepts_per_hour)
        except ValueError:
            return None
    return (meta.get("detector") or {}).get("threshold")


def cmd_stats(args) -> int:
    """``kwsd stats``."""
    from .errors import EX_CONFIG
    from .room import METER_FILE, state_dir_of

    cfg = _config(args)
    state_dir = args.state_dir or state_dir_of(cfg)
    if not state_dir:
        print("kwsd stats: no state_dir in the config (and no $STATE_DIRECTORY): the daemon "
              "keeps no meter; set state_dir: /var/lib/kwsd/state", file=sys.stderr)
        return EX_CONFIG
    models = {"live": (cfg.model, _threshold(cfg, cfg.model))}
    if cfg.shadow_model:
        models["shadow"] = (cfg.shadow_model, _threshold(cfg, cfg.shadow_model))
    print(stats_report(os.path.join(state_dir, METER_FILE), models,
                       tuple(args.thresholds or DEFAULT_THRESHOLDS)))
    return 0


def _capture_dir(args, cfg=None):
    from .errors import EX_CONFIG

    folder = args.dir or (cfg or _config(args)).capture.dir
    if not folder:
        print(f"kwsd {args.command}: no capture folder: set capture.dir in the config or give "
              "--dir", file=sys.stderr)
        raise SystemExit(EX_CONFIG)
    return folder


def cmd_captures(args) -> int:
    """``kwsd captures``: list, or label with ``--label``."""
    root = _capture_dir(args)
    if args.label:
        counts = label_loop(root, play_audio=None if args.no_play else play)
        print(", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing to label")
        return 0
    caps = list_captures(root)
    for label, flac, record in caps:
        print(describe_capture(label, flac, record))
    by = {}
    for label, _, _ in caps:
        by[label] = by.get(label, 0) + 1
    print(f"{len(caps)} capture(s) in {root}: " + (", ".join(f"{n} {k}" for k, n in
                                                             by.items()) or "none"))
    return 0


def cmd_enroll(args) -> int:
    """``kwsd enroll``: prompted "stop"s through the configured microphone into stop/."""
    from .capture import check_portaudio, choose_rate, find_device
    from .errors import EX_IOERR
    from .model import load_model

    cfg = _config(args)
    folder = Path(_capture_dir(args, cfg)) / POSITIVE
    model = load_model(cfg.model, profile=cfg.profile)
    spec = cfg.audio.device if args.device is None else \
        (int(args.device) if args.device.isdigit() else args.device)
    channels = cfg.audio.channels or 1
    check_portaudio()
    import sounddevice as sd

    try:
        device = find_device(spec)
        rate = choose_rate(device, cfg.audio.samplerate, model.profile.sample_rate, channels)
        blocks = microphone_blocks(device, rate, channels, cfg.audio.channel)
        print(f"recording from {spec if spec is not None else 'the default input'} at "
              f"{rate} Hz into {folder}; stay quiet for a moment ...", flush=True)
        paths = enroll(blocks, rate, model.profile.sample_rate, folder, args.count,
                       prompt=lambda text: print(text, flush=True),
                       device=str(spec if spec is not None else "default"))
        blocks.close()
    except (LookupError, sd.PortAudioError) as exc:
        print(f"kwsd enroll: cannot record ({exc}); is the service holding the microphone? "
              "(sudo systemctl stop kwsd)", file=sys.stderr)
        return EX_IOERR
    print(f"{len(paths)} recording(s) saved in {folder}")
    return 0 if len(paths) == args.count else EX_IOERR


def add_subcommands(subparsers):
    """Register ``stats``, ``captures`` and ``enroll`` on the ``kwsd`` subparsers."""
    from .__main__ import finite_float

    def common(p, capture_dir=True):
        p.add_argument("--config", help="YAML config (default /etc/kwsd/kwsd.yaml if present)")
        if capture_dir:
            p.add_argument("--dir", help="the capture folder (default: the config's "
                                         "capture.dir)")

    p = subparsers.add_parser("stats", help="detections/hour the room gave, per threshold",
                              description="For a row of thresholds: how many detections per "
                              "hour the room's audio would have given (live and shadow model), "
                              "next to the model's own held-out figures.")
    common(p, capture_dir=False)
    p.add_argument("--state-dir", help="the daemon's state folder (default: the config's)")
    p.add_argument("--thresholds", type=finite_float, nargs="+", metavar="T",
                   help="thresholds to show (default 0.3 ... 0.95)")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser("captures", help="list captures; --label to label them",
                              description="List the captures (capture.dir), or play each "
                              "unlabelled one and label it with a key.")
    common(p)
    p.add_argument("--label", action="store_true", help="label the unlabelled ones, by key")
    p.add_argument("--no-play", action="store_true", help="do not play them while labelling")
    p.set_defaults(func=cmd_captures)

    p = subparsers.add_parser("enroll", help="record prompted 'stop's into the captures",
                              description="Records COUNT prompted 'stop's through the "
                              "configured microphone into the capture folder's stop/ (stop "
                              "the service first: it holds the microphone).")
    common(p)
    p.add_argument("--count", type=int, default=10, help="how many (default 10)")
    p.add_argument("--device", help="input device: index or name substring")
    p.set_defaults(func=cmd_enroll)


__all__ = ["stats_rows", "stats_report", "apply_key", "label_loop", "Enrolment", "enroll",
           "POSITIVE"]
