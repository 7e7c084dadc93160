"""The ``kwsd-train`` command line.

    kwsd-train prepare DATA_DIR... --long DIR... --out WORK   index, split, feature cache
    kwsd-train train WORK --arch tcsep --epochs 30 --out MODEL_DIR
    kwsd-train export MODEL_DIR                                 float + int8 .tflite, parity
    kwsd-train crossval WORK --folds 4 --seeds 1 2 --out CV_DIR    speaker k-fold figures
    kwsd-train evaluate MODEL.tflite... --data WORK --out REPORT_DIR [--write-threshold]
    kwsd-train all DATA_DIR... --long DIR... --out OUT          all of the above
    kwsd-train fetch [URL] --out DIR                            download + unpack a corpus
    kwsd-train synth ...                                        synthetic speech (TTS)

Errors a user can cause (a missing folder, a bad model) print one message and exit with the
status of :mod:`kwsd.errors`; never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

from kwsd.errors import EX_USAGE, KwsdError


def _command_line() -> str:
    return "kwsd-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# --------------------------------------------------------------------------- prepare

def add_prepare_arguments(p, data_required=True):
    """Options shared by ``prepare`` and ``all``."""
    p.add_argument("data", nargs="+" if data_required else "*", metavar="DATA_DIR",
                   help="folders in the Speech Commands layout (a folder per word, "
                        "_background_noise_/, optional validation_list.txt/testing_list.txt)")
    p.add_argument("--keyword", default="stop", help="the word to spot (its folder's name)")
    p.add_argument("--synthetic", action="extend", nargs="+", default=[], metavar="DIR",
                   help="folders in the same layout (e.g. from `kwsd-train synth`) used for "
                        "training only: never held out, so every reported figure is on real "
                        "speech")
    p.add_argument("--real-keyword-weight", type=int, default=1, metavar="N",
                   help="copies of each real (not --synthetic) keyword clip in the training "
                        "split, each with its own augmentation (default 1): synthetic clips "
                        "can outnumber real ones many times over")
    p.add_argument("--long", action="extend", nargs="+", default=[], metavar="DIR",
                   help="folders of long recordings with no keyword (speech, rooms): negatives "
                        "cut into windows; held-out files give false accepts per hour")
    p.add_argument("--captures", action="extend", nargs="+", default=[], metavar="DIR",
                   help="kwsd capture folders: stop/ as keyword clips, other/ as hard "
                        "negatives (used --captures-weight times in training)")
    p.add_argument("--captures-weight", type=int, default=4, metavar="N",
                   help="copies of each hard-negative capture in training (default 4)")
    p.add_argument("--noise", action="extend", nargs="+", default=[], metavar="DIR",
                   help="extra folders of noise recordings (mixed into clips, and negatives)")
    p.add_argument("--ir", action="extend", nargs="+", default=[], metavar="DIR",
                   help="folders of room impulse responses (default: synthetic ones)")
    p.add_argument("--profile", default="logmel40", help="kwsd feature profile (default logmel40)")
    p.add_argument("--validation-percent", type=float, default=10.0,
                   help="share of speakers held out for validation (calibration), when the "
                        "data has no validation_list.txt")
    p.add_argument("--testing-percent", type=float, default=10.0,
                   help="share of speakers held out for testing, when the data has no "
                        "testing_list.txt")
    p.add_argument("--long-validation-percent", type=float, default=None,
                   help="share of --long files held out for validation (default: as clips)")
    p.add_argument("--long-testing-percent", type=float, default=None,
                   help="share of --long files held out for testing (default: as clips); "
                        "more held-out hours measure false accepts per hour more finely")
    p.add_argument("--split-salt", default=None,
                   help="salt for the speaker-hash split (default: the corpus's own rule, "
                        "salted automatically if it puts every speaker on one side)")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the augmentation's random choices")
    g = p.add_argument_group("augmentation")
    g.add_argument("--variants", type=int, default=8, help="augmented windows per keyword clip")
    g.add_argument("--word-variants", type=int, default=2,
                   help="augmented windows per other-word clip")
    g.add_argument("--partials", type=int, default=4,
                   help="partial-keyword negatives per keyword clip (only its start or end "
                        "inside the window)")
    g.add_argument("--cut-finals", type=int, default=0, metavar="N",
                   help="more negatives per keyword clip, each ending inside or at the end of "
                        "the word's vowel, before its final consonant ('sto' without the 'p'; "
                        "default 0)")
    g.add_argument("--long-per-second", type=float, default=2.0,
                   help="negative windows cut per second of long recordings")
    g.add_argument("--noise-per-second", type=float, default=2.0,
                   help="negative windows cut per second of noise")
    g.add_argument("--noise-prob", type=float, default=0.8,
                   help="chance that a window gets background noise mixed in")
    g.add_argument("--snr-db", type=float, nargs=2, default=(0.0, 25.0), metavar=("LO", "HI"),
                   help="signal-to-noise ratio of that noise, uniform in LO..HI dB")
    g.add_argument("--speed-prob", type=float, default=0.5,
                   help="chance that a clip is played faster or slower (tempo and pitch)")
    g.add_argument("--speed", type=float, nargs=2, default=(0.88, 1.12), metavar=("LO", "HI"),
                   help="that clip's speed factor, uniform in LO..HI")
    g.add_argument("--ir-prob", type=float, default=0.3,
                   help="chance that a clip is convolved with a room impulse response")
    g.add_argument("--mic-prob", type=float, default=0.0,
                   help="chance that a window (keyword or not) is heard through a random "
                        "microphone: band limits 50-400 Hz / 3.4-7.5 kHz, one band +-6 dB "
                        "(default 0: off)")
    g.add_argument("--overdrive-prob", type=float, default=0.0,
                   help="chance that a window is clipped like an input driven 1.5-6x past "
                        "full scale (default 0: off)")
    g.add_argument("--onsets", type=int, default=2,
                   help="utterance-onset negatives per long speech recording: the window "
                        "ends 0.15-1.0 s into the speech, after silence, a click or a breath")


def prepare(args) -> Path:
    """Index the data, split it, and fill the feature cache; returns the index path."""
    from kwsd.profiles import get_profile

    from .augment import AugmentConfig
    from .data import (AUDIO_EXTENSIONS, DatasetError, LoadProblems, file_sha1,
                       capture_counts, repeat_items, save_index, scan_captures,
                       scan_long_recordings, scan_noise, scan_speech_commands, split_counts)
    from .features import build_features

    try:
        profile = get_profile(args.profile)
    except KeyError as exc:
        raise DatasetError("--profile", exc.args[0]) from None
    if args.real_keyword_weight < 1:
        raise DatasetError("--real-keyword-weight", f"must be at least 1, not "
                                                    f"{args.real_keyword_weight}")
    for option in ("noise_prob", "speed_prob", "ir_prob", "mic_prob", "overdrive_prob"):
        if not 0.0 <= getattr(args, option) <= 1.0:
            raise DatasetError("--" + option.replace("_", "-"),
                               f"must be a probability from 0 to 1, not {getattr(args, option)}")
    if not 0.0 < args.speed[0] <= args.speed[1]:
        raise DatasetError("--speed", f"must be two factors LO <= HI above 0, not "
                                      f"{args.speed[0]:g} {args.speed[1]:g}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = LoadProblems()
    v, t = args.validation_percent, args.testing_percent
    items = []
    for d in args.data:
        for it in scan_speech_commands(d, args.keyword, v, t, args.split_salt, problems):
            real_kw = it.role == "keyword" and it.split == "training"
            items += repeat_items([it], args.real_keyword_weight if real_kw else 1)
    for d in args.synthetic:
        for it in scan_speech_commands(d, args.keyword, 0.0, 0.0, "", problems,
                                       clips_required=False):
            it.split, it.source = "training", "synthetic:" + it.source
            items.append(it)
    if not any(it.role == "keyword" for it in items):
        raise DatasetError(", ".join(args.data), f"no clips of the keyword {args.keyword!r} "
                                                 f"(expected a folder named {args.keyword}/)")
    if not any(it.role == "keyword" and it.split == "training" for it in items):
        raise DatasetError(", ".join(args.data), f"the split leaves no {args.keyword!r} clips "
                                                 f"for training (--validation-percent {v:g}, "
                                                 f"--testing-percent {t:g})")
    lv = v if args.long_validation_percent is None else args.long_validation_percent
    lt = t if args.long_testing_percent is None else args.long_testing_percent
    for d in args.long:
        items += scan_long_recordings(d, lv, lt, problems=problems)
    for d in args.noise:
        items += scan_noise(d, v, t, problems=problems)
    for d in args.captures:
        items += scan_captures(d, args.keyword, v, t, args.captures_weight, problems=problems)
    ir_files = []
    for d in args.ir:
        found = sorted(str(p) for p in Path(d).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not Path(d).is_dir() or not found:
            raise DatasetError(d, "no impulse-response audio files in this folder")
        ir_files += found
    from .progress import bar

    for it in bar(items, not args.quiet, desc="hashing", unit="file"):
        it.sha1 = file_sha1(it.path)
    aug = AugmentConfig(variants=args.variants, word_variants=args.word_variants,
                        partials=args.partials, cut_finals=args.cut_finals,
                        long_windows_per_s=args.long_per_second,
                        noise_windows_per_s=args.noise_per_second, noise_prob=args.noise_prob,
                        snr_db=tuple(args.snr_db), speed_prob=args.speed_prob,
                        speed=tuple(args.speed),
                        ir_prob=args.ir_prob, mic_prob=args.mic_prob,
                        overdrive_prob=args.overdrive_prob, onsets=args.onsets)
    arrays = build_features(items, profile, aug, args.seed, out, ir_files,
                            workers=args.workers, progress=not args.quiet, problems=problems)
    meta = {"keyword": args.keyword, "profile": profile.to_dict(), "augment": aug.to_dict(),
            "seed": args.seed, "ir_files": ir_files,
            "real_keyword_weight": args.real_keyword_weight,
            "data": {"speech_commands": [str(Path(d).resolve()) for d in args.data],
                     "synthetic": [str(Path(d).resolve()) for d in args.synthetic],
                     "long": [str(Path(d).resolve()) for d in args.long],
                     "noise": [str(Path(d).resolve()) for d in args.noise],
                     "ir": [str(Path(d).resolve()) for d in args.ir],
                     "captures": [str(Path(d).resolve()) for d in args.captures],
                     "from_captures": capture_counts(items)},
            "split": {"validation_percent": v, "testing_percent": t,
                      "long_validation_percent": lv, "long_testing_percent": lt,
                      "rules": problems.rules},
            "problems": {"skipped": problems.skipped,
                         "converted": {k: v for k, v in problems.converted.items()}},
            "windows": {s: a.counts() for s, a in arrays.items()},
            "command": _command_line()}
    # unusable files stay out of the index
    items = [it for it in items if it.path not in problems.skipped]
    problems.report()
    if not any(it.role == "keyword" and it.split == "training" for it in items):
        raise DatasetError(", ".join(args.data), f"none of the {args.keyword!r} clips for "
                                                 "training could be read (see the warnings "
                                                 "above): replace the damaged files")
    counts = split_counts(items)
    for split in ("validation", "testing"):
        if counts[split]["keyword_speakers"] == 1:
            problems.warn(f"the {split} side holds {args.keyword!r} clips of one speaker "
                          "only: its figures say little about other voices (add speakers, or "
                          f"raise --{split}-percent)")
    index = out / "index.json"
    save_index(index, items, meta)
    if not args.quiet:
        for split, c in counts.items():
            print(f"{split:>10}: {c['keyword']} {args.keyword} clips ({c['keyword_speakers']} "
                  f"speakers), {c['word']} other clips, {c['long']} long files, "
                  f"{c['noise']} noise segments; {arrays[split].counts()['positive']} positive / "
                  f"{arrays[split].counts()['negative']} negative windows", file=sys.stderr)
    if args.captures and not args.quiet:
        for kind, by_split in capture_counts(items).items():
            print(f"{'captures':>10}: {kind}: " + ", ".join(f"{n} {split}" for split, n in
                                                          sorted(by_split.items())),
                  file=sys.stderr)
    return index


# --------------------------------------------------------------------------- train/export

def add_train_arguments(p):
    """Options shared by ``train`` and ``all``."""
    from .models import ARCHITECTURES

    p.add_argument("--arch", choices=ARCHITECTURES, default="tcsep",
                   help="tcsep (default: temporal separable convs, ~21k parameters at width "
                        "48, fast on CPU), dscnn (2-D depthwise-separable CNN, ~24k), or "
                        "tutorial (the seed model's CNN, for comparison)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training windows")
    p.add_argument("--batch-size", type=int, default=128, help="windows per training step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--width", type=int, default=None,
                   help="channels (default: 48 for tcsep, 64 for dscnn)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout rate before the classifier")
    p.add_argument("--positive-weight", type=float, default=None,
                   help="keyword class weight relative to 1 for the rest "
                        "(default: balance the classes)")
    p.add_argument("--mine-rounds", type=int, default=2,
                   help="rounds of hard-negative mining: stream the training split's long "
                        "recordings through the model, add what it fires on, train on "
                        "(default 2; 0 = off)")
    p.add_argument("--mine-epochs", type=int, default=None,
                   help="epochs per mining round (default: a third of --epochs, at least 3)")
    p.add_argument("--mine-min-score", type=float, default=0.05,
                   help="mine windows scoring at least this (default 0.05)")
    p.add_argument("--mine-limit", type=int, default=4000,
                   help="at most this many mined windows per round")
    p.add_argument("--no-spec-augment", dest="spec_augment", action="store_false",
                   help="don't mask random mel bands and frames of each window every epoch")


def _train_kwargs(args) -> dict:
    return dict(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                learning_rate=args.lr, width=args.width, dropout=args.dropout,
                positive_weight=args.positive_weight, progress=not args.quiet,
                workers=args.workers, command=_command_line(), mine_rounds=args.mine_rounds,
                mine_epochs=args.mine_epochs, mine_min_score=args.mine_min_score,
                mine_limit=args.mine_limit, spec_augment=args.spec_augment)


def add_allow_dirty_argument(p):
    """``--allow-dirty`` for the commands that write a model file."""
    p.add_argument("--allow-dirty", action="store_true",
                   help="write the model even from a checkout with uncommitted changes (its "
                        "provenance then names a '-dirty' commit: not for a model that ships)")


def add_detector_arguments(p):
    """Detector settings written into the model (threshold is later calibrated)."""
    p.add_argument("--threshold", type=float, default=0.5,
                   help="score (0..1] at which the daemon fires; `evaluate --write-threshold` "
                        "and `all` replace it by a calibrated one")
    p.add_argument("--smoothing", type=int, default=3,
                   help="hops whose scores are averaged before the threshold")
    p.add_argument("--refractory-s", type=float, default=1.0,
                   help="seconds of quiet after a detection")
    p.add_argument("--hop-s", type=float, default=0.1, help="seconds between decisions")


def _settings(args):
    from kwsd.detector import DetectorSettings

    try:
        return DetectorSettings(threshold=args.threshold, smoothing=args.smoothing,
                                refractory_s=args.refractory_s, hop_s=args.hop_s)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless it has none or says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default in (None, False, [])
                or default is argparse.SUPPRESS):
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        elif isinstance(default, float):
            default = f"{default:g}"
        return f"{text} (default: {str(default).replace('%', '%%')})".lstrip()


class UsageError(KwsdError):
    """A bad command-line value."""

    exit_status = EX_USAGE


def cmd_prepare(args) -> int:
    """``kwsd-train prepare``: prints the index path (and the next step)."""
    index = prepare(args)
    print(index)
    print(f"next: kwsd-train train {args.out} --out MODEL_DIR", file=sys.stderr)
    return 0


# int8 scores further than this from the float model's are worth a warning: near the
# threshold they change decisions.
PARITY_WARN_MAX_ABS = 0.1


def say_trained(summary, model_dir):
    """The end of ``train``: what was trained, how long, where it is, what comes next."""
    print(f"trained {summary['arch']} ({summary['parameters']:,} parameters) in "
          f"{summary['train_seconds'] / 60:.1f} min; best epoch {summary['best_epoch']} of "
          f"{summary['epochs']}")
    print(f"model: {Path(model_dir) / 'model.keras'} (settings: train_config.json, curves: "
          "training_curves.png)")
    print(f"next: kwsd-train export {model_dir}")


def say_exported(summary):
    """The end of ``export``: the files, their sizes, and whether int8 agrees with float."""
    for kind in ("int8", "float"):
        print(f"{kind:>5}: {summary[kind]['path']} ({summary[kind]['bytes'] / 1024:.1f} KiB)")
    par = summary["parity"]
    print(f"int8 vs float scores over {par['windows']} validation windows: mean difference "
          f"{par['int8_vs_float_mean_abs']:.4f}, largest {par['int8_vs_float_max_abs']:.4f}")
    if par["int8_vs_float_max_abs"] > PARITY_WARN_MAX_ABS:
        print(f"WARNING: the int8 model's scores differ from the float model's by up to "
              f"{par['int8_vs_float_max_abs']:.2f}: its decisions near the threshold will "
              "differ; evaluate both (`kwsd-train evaluate INT8 FLOAT --data WORKDIR ...`)")


def _pct(x, digits=1):
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def say_evaluated(report, out_dir):
    """The end of ``evaluate``: each model's headline figures and whether it met the targets."""
    t = report["targets"]
    for name, m in report["models"].items():
        cal = m["calibration"]
        print(f"{name}: threshold {cal['threshold']:g} (calibrated on {cal['split']})")
        for split in ("validation", "testing"):
            if split not in m:
                continue
            c = m[split]["calibrated"]
            fa = c["long"]["false_accepts_per_hour"]
            print(f"  {split:>10}: recall {_pct(c['clip']['recall'])} of "
                  f"{c['clip']['keyword_clips']} clips, false positives "
                  f"{_pct(c['clip']['false_positive_rate'], 2)} of {c['clip']['other_clips']} "
                  f"other words, " + ("no long audio" if fa is None else
                                      f"{fa:g} false accepts/h over {c['long']['hours']:g} h")
                  + (f", ROC AUC {m[split]['roc_auc']:.3f}" if m[split]["roc_auc"] is not None
                     else ""))
        missed = _missed_targets(m.get(cal["split"], {}).get("calibrated"), t)
        if cal["met_targets"] and not missed:
            print(f"  targets met on {cal['split']}: <= {t['fa_per_hour']:g} false accepts/h, "
                  f"<= {_pct(t['clip_fpr'], 2)} false positives, recall >= "
                  f"{_pct(t['min_recall'])}")
        else:
            print(f"  TARGETS MISSED on {cal['split']}: " + ("; ".join(missed) or
                  "no threshold meets them all") + ". This threshold comes closest; more (or "
                  "more varied) training data, not another threshold, fixes that.")
    print(f"report: {Path(out_dir) / 'report.md'}")


def _missed_targets(c, t) -> list:
    """``["false positives 0.62% (target <= 0.5%)", ...]`` for the targets ``c`` misses."""
    if not c:
        return []
    missed = []
    fa, fpr, recall = (c["long"]["false_accepts_per_hour"], c["clip"]["false_positive_rate"],
                       c["clip"]["recall"])
    if fa is not None and fa > t["fa_per_hour"]:
        missed.append(f"{fa:g} false accepts/h (target <= {t['fa_per_hour']:g})")
    if fpr is not None and fpr > t["clip_fpr"]:
        missed.append(f"false positives {_pct(fpr, 2)} (target <= {_pct(t['clip_fpr'], 2)})")
    if recall is not None and recall < t["min_recall"]:
        missed.append(f"recall {_pct(recall)} (target >= {_pct(t['min_recall'])})")
    return missed


def _check_provenance(args):
    """Refuse to record an uncommitted checkout in a model's provenance (``--allow-dirty``)."""
    from .export import git_commit

    commit = git_commit()
    if commit.endswith("-dirty") and not args.allow_dirty:
        raise UsageError(f"this kwsd checkout has uncommitted changes (see `git status`): the "
                         f"model would name commit {commit}, which nobody can check out to "
                         "make it again. Commit them first, or pass --allow-dirty for a model "
                         "that will not ship")


def cmd_train(args) -> int:
    """``kwsd-train train``: ends with a short summary."""
    from .train import train

    summary = train(args.workdir, args.out, seed=args.seed, **_train_kwargs(args))
    say_trained(summary, args.out)
    return 0


def cmd_export(args) -> int:
    """``kwsd-train export``: ends with the files and the int8/float parity."""
    from .export import export

    _check_provenance(args)
    summary = export(args.model_dir, args.workdir, settings=_settings(args),
                     progress=not args.quiet)
    say_exported(summary)
    return 0


def cmd_ensemble(args) -> int:
    """``kwsd-train ensemble``: one model folder whose score is the mean of the members'."""
    from .ensemble import ensemble

    config = ensemble(args.model_dirs, args.out, command=_command_line())
    print(f"ensemble of {len(config['ensemble'])} models ({config['parameters']:,} "
          f"parameters): {args.out}\nnext: kwsd-train export {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    """``kwsd-train evaluate``: ends with each model's figures and the report's path."""
    from .evaluate import evaluate_models, write_threshold

    crossval = None
    if args.crossval:
        crossval = _load_crossval(args.crossval)
    report = evaluate_models(args.models, args.data, args.out, args.target_fa_per_hour,
                             args.target_fpr, profile=args.profile, extra_long_dirs=args.long,
                             workers=args.workers, progress=not args.quiet,
                             command=_command_line(), min_recall=args.min_recall,
                             crossval=crossval, synthetic_dirs=args.synthetic_speech)
    if args.write_threshold:
        from kwsd.metadata import read_metadata

        for path, (name, m) in zip(args.models, report["models"].items()):
            if not read_metadata(Path(path).read_bytes()):
                print(f"{path}: no kwsd metadata (not a kwsd-train model); left as it is",
                      file=sys.stderr)
                continue
            write_threshold(path, m["calibration"]["threshold"], _headline(m),
                            m["heldout_long"]["det_table"])
            print(f"{path}: threshold set to {m['calibration']['threshold']:g}", file=sys.stderr)
    say_evaluated(report, args.out)
    return 0


def _load_crossval(path) -> dict:
    from .data import DatasetError

    file = Path(path) / "crossval.json" if Path(path).is_dir() else Path(path)
    try:
        with open(file, encoding="utf-8") as fh:
            report = json.load(fh)
        report["rows"], report["summary"]
    except FileNotFoundError:
        raise DatasetError(file, "no cross-validation report here (run `kwsd-train "
                                 "crossval` first)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(file, f"not a kwsd-train cross-validation report ({exc})") from None
    return report


def _headline(m: dict) -> dict:
    """The metrics worth embedding in a model's provenance."""
    out = {"calibration": m["calibration"]}
    if "crossval" in m:
        out["crossval"] = {k: m["crossval"][k] for k in ("row", "pooled_roc_auc", "folds",
                                                          "seeds", "summary")}
    held = m.get("heldout_long")
    if held:
        out["heldout_long"] = {"hours": held["hours"], "splits": held["splits"],
                               "calibrated": {k: held["calibrated"][k]
                                              for k in ("all", "language", "source")}}
    for split in ("validation", "testing"):
        if split in m:
            c = m[split]["calibrated"]
            out[split] = {"roc_auc": m[split]["roc_auc"], "clip": {k: c["clip"][k] for k in
                          ("recall", "precision", "false_positive_rate", "keyword_clips",
                           "other_clips")},
                          "stream": c.get("stream", {}).get("recall"),
                          "false_accepts_per_hour": c["long"]["false_accepts_per_hour"],
                          "hours": c["long"]["hours"]}
    return out


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def cmd_crossval(args) -> int:
    """``kwsd-train crossval``: prints the report's path."""
    from .crossval import crossval

    kwargs = _train_kwargs(args)
    for k in ("progress", "workers", "command"):
        kwargs.pop(k)
    report = crossval(args.workdir, args.out, folds=args.folds, seeds=args.seeds,
                      train_kwargs=kwargs, settings=_settings(args),
                      target_fa_per_hour=args.target_fa_per_hour, target_fpr=args.target_fpr,
                      min_recall=args.min_recall, workers=args.workers,
                      progress=not args.quiet, command=_command_line(),
                      only_folds=args.only_folds, members=args.members,
                      parallel=args.parallel)
    s = report["summary"]
    print(json.dumps({"threshold": report["calibration"]["threshold"],
                      "recall": s["recall"], "false_positive_rate": s["false_positive_rate"],
                      "roc_auc": s["roc_auc"], "pooled_roc_auc": s.get("pooled_roc_auc"),
                      "report": str(Path(args.out) / "crossval.md")}))
    return 0


def cmd_all(args) -> int:
    """prepare -> train -> export -> evaluate (calibrate) -> final model file."""
    from .evaluate import evaluate_models, write_threshold
    from .export import export
    from .train import train

    _check_provenance(args)
    out = Path(args.out)
    args.out = str(out / "work")
    prepare(args)
    model_dir = out / "model"
    train(out / "work", model_dir, **_train_kwargs(args))
    summary = export(model_dir, out / "work", settings=_settings(args), progress=not args.quiet)
    report = evaluate_models([summary["int8"]["path"]], out / "work", out / "report",
                             args.target_fa_per_hour, args.target_fpr,
                             workers=args.workers, progress=not args.quiet,
                             command=_command_line(), names=[f"{args.arch} int8"],
                             min_recall=args.min_recall)
    m = next(iter(report["models"].values()))
    metrics = dict(_headline(m), parity=summary["parity"])
    for kind in ("int8", "float"):
        write_threshold(summary[kind]["path"], m["calibration"]["threshold"], metrics)
    final = out / f"{args.keyword}.tflite"
    shutil.copyfile(summary["int8"]["path"], final)
    say_exported(summary)
    say_evaluated(report, out / "report")
    print(f"model to use: {final} ({final.stat().st_size / 1024:.1f} KiB, threshold "
          f"{m['calibration']['threshold']:g}); on the Pi, copy it over the configured model")
    return 0


def add_evaluate_arguments(p):
    """Calibration targets shared by ``evaluate`` and ``all``."""
    p.add_argument("--target-fa-per-hour", type=float, default=0.3,
                   help="calibrate the threshold to at most this many false accepts per hour")
    p.add_argument("--target-fpr", type=float, default=0.005,
                   help="... and at most this clip false-positive rate over other words")
    p.add_argument("--min-recall", type=float, default=0.8,
                   help="... never trading clip recall below this for them (default 0.8)")


# --------------------------------------------------------------------------- the parser

def build_parser() -> argparse.ArgumentParser:
    """The ``kwsd-train`` argument parser."""
    from kwsd.__main__ import ArgumentParser     # a bad command line exits 64, as kwsd's

    parser = ArgumentParser(
        prog="kwsd-train",
        description="From folders of audio to a quantised .tflite that kwsd loads, and a "
                    "streaming evaluation report.",
        epilog="typical use:\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-j", "--workers", type=int, default=None,
                        help="worker processes (default: all cores)")
    # every command's --help shows the defaults (HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=functools.partial(
        ArgumentParser, formatter_class=HelpFormatter))
    sub.required = True

    p = sub.add_parser("prepare", help="index + split data folders and cache their features")
    add_prepare_arguments(p)
    p.add_argument("--out", required=True, metavar="WORKDIR",
                   help="the work folder to write: index and feature cache")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model on a prepared work folder")
    p.add_argument("workdir", metavar="WORKDIR")
    add_train_arguments(p)
    p.add_argument("--seed", type=int, default=None,
                   help="training seed (default: the one the work folder was prepared with)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="float + int8 .tflite with kwsd metadata, parity check")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--workdir", help="the prepared work folder (default: the one trained on)")
    add_detector_arguments(p)
    add_allow_dirty_argument(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ensemble", help="one model whose score is the mean of several "
                                        "trained models' (seeds of one recipe)")
    p.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                   help="folders written by kwsd-train train (same keyword and profile)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="the ensemble's model folder, for kwsd-train export")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("evaluate", help="streaming evaluation with kwsd's own detector")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--data", required=True, metavar="WORKDIR",
                   help="a prepared work folder: its validation and testing splits are used")
    p.add_argument("--out", required=True, metavar="REPORT_DIR")
    p.add_argument("--long", action="extend", nargs="+", default=[], metavar="DIR",
                   help="more long recordings (no keyword) to count false accepts on")
    p.add_argument("--synthetic-speech", action="extend", nargs="+", default=[], metavar="DIR",
                   help="`kwsd-train synth` folders the models did not train on: false accepts "
                        "per language on their long speech, reported apart as a development "
                        "signal (synthetic voices: never a figure about real speech, never "
                        "used to calibrate)")
    p.add_argument("--profile", help="feature profile for models without kwsd metadata")
    p.add_argument("--write-threshold", action="store_true",
                   help="store each kwsd-train model's calibrated threshold (and the metrics, "
                        "and a threshold table 'det_table' of false accepts/hour and recall) "
                        "in its metadata")
    p.add_argument("--crossval", metavar="CV_DIR",
                   help="the first MODEL was trained on every speaker: take its clip recall "
                        "and false positives from this `kwsd-train crossval` report (and "
                        "calibrate on them with its held-out false accepts per hour)")
    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("all", help="prepare, train, export and evaluate in one go")
    add_prepare_arguments(p)
    add_train_arguments(p)
    add_detector_arguments(p)
    add_evaluate_arguments(p)
    add_allow_dirty_argument(p)
    p.add_argument("--out", required=True, metavar="OUT_DIR")
    p.set_defaults(func=cmd_all)

    p = sub.add_parser("crossval", help="speaker k-fold cross-validation: figures and a "
                                        "threshold for a model trained on every speaker")
    p.add_argument("workdir", metavar="WORKDIR",
                   help="a work folder prepared with --validation-percent 0 "
                        "--testing-percent 0 (every real clip in training; long audio held "
                        "out with --long-validation-percent/--long-testing-percent)")
    p.add_argument("--folds", type=int, default=4, help="speaker folds (default 4)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1234],
                   help="training seeds; every fold is trained once per seed (default 1234)")
    p.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="FOLD",
                   help="run only these folds (0-based): a quick comparison of settings")
    p.add_argument("--parallel", type=_at_least_one, default=1, metavar="N",
                   help="train up to N fold models at once (each in a process of its own): "
                        "one training keeps two cores only half busy, so 2-3 on a 2-core "
                        "machine, about as many as cores elsewhere (each takes the memory of "
                        "one `train`); same models, same report")
    p.add_argument("--members", nargs="+", default=None, metavar="CV_DIR",
                   help="cross-validate an ensemble instead of training: each fold's model "
                        "is the mean of these earlier cross-validations' models of that fold "
                        "(same --folds; training options are then unused)")
    add_train_arguments(p)
    add_detector_arguments(p)
    add_evaluate_arguments(p)
    p.add_argument("--out", required=True, metavar="CV_DIR")
    p.set_defaults(func=cmd_crossval)

    from . import download

    p = sub.add_parser("fetch", help="download (resumable, verified) and unpack a corpus")
    download.add_arguments(p)
    p.set_defaults(func=download.run)

    try:
        from . import synth
    except ImportError:
        synth = None
    if synth is not None and hasattr(synth, "add_arguments"):
        p = sub.add_parser("synth", help="render words with the installed TTS engines")
        synth.add_arguments(p)
        p.set_defaults(func=synth.run)
    return parser


def main(argv=None) -> int:
    """Entry point of ``kwsd-train``."""
    # TensorFlow's C++ logging (before TensorFlow is imported): its INFO/WARNING lines and its
    # spurious ERROR lines (`E0000 ... use_unbounded_threadpool`) look like failures to a
    # user; a real failure reaches Python as an exception and is reported as such.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    running_before = set(multiprocessing.active_children())
    try:
        return int(args.func(args) or 0)
    except KwsdError as exc:
        print(f"kwsd-train: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        _end_child_processes(running_before)
        print("kwsd-train: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        _end_child_processes(running_before)
        if exc.code == 128 + signal.SIGTERM:
            print("kwsd-train: terminated", file=sys.stderr)
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    """SIGTERM (``kill``, ``timeout``, a job scheduler) ends ``kwsd-train`` like Ctrl-C does,
    through its clean-up, with the shell's status for it (143)."""
    raise SystemExit(128 + signum)


def _end_child_processes(running_before=()):
    """End the processes this command started that still run (those not in
    ``running_before``): a crossval fold training, a scoring pool. Ctrl-C reaches them through
    the terminal's process group, a SIGTERM sent to ``kwsd-train`` alone does not; left
    running, a fold training would go on writing its folder while the command is started
    again."""
    children = [c for c in multiprocessing.active_children() if c not in running_before]
    for child in children:
        child.terminate()
    for child in children:
        child.join(30)


if __name__ == "__main__":
    sys.exit(main())
