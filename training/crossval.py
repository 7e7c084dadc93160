"""Speaker k-fold cross-validation (``kwsd-train crossval``): honest figures and a
threshold when every real keyword clip is to train the shipped model.

The real clips of a prepared work folder (prepared with ``--validation-percent 0
--testing-percent 0``, so all of them are in its training split) are dealt into ``folds``
groups **by speaker** (a salted SHA-1 of the speaker id, as the corpus's own split rule);
synthetic clips and long recordings are never held out by a fold. For each seed and each
fold a model is trained on the other folds with the given settings (a fixed number of
epochs: there is no validation keyword to stop on), exported to int8, and its held-out
fold is scored through kwsd's own decision path (:func:`training.evaluate.score_split`),
together with the work folder's validation long recordings (false accepts per hour).

Written to ``OUT/crossval.json`` (and ``crossval.md``):

* ``rows``: per threshold, the clip recall and false-positive rate pooled over all folds
  (mean over seeds) and the false accepts per hour (mean over fold models);
* ``per_run``: each (seed, fold): ROC AUC, and recall / false-positive rate / false
  accepts per hour at the calibrated threshold; ``summary``: their mean and spread;
* ``calibration``: the threshold :func:`training.evaluate.calibrate` picks from ``rows``.

An ensemble recipe (``kwsd-train ensemble``) is cross-validated from earlier
cross-validations on the same folds, without training again: ``--members CV_A CV_B`` makes
each fold's model the mean of their models of that fold, exports it and scores it the same
way (runs ``ensemble-foldF``).

``kwsd-train evaluate --crossval OUT`` then judges the model trained on all speakers with
these clip figures (see :func:`combined_rows`).

>>> fold_of("0a7c2a8d", 4) in range(4)
True
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import inspect
import json
import multiprocessing
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .data import hash_percentage

FOLD_SALT = "kwsd-cv"


def _in_own_process(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new process (its memory goes back when it ends): a future."""
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return executor.submit(fn, *args, **kwargs)
    finally:
        executor.shutdown(wait=False)     # the call runs on; the process ends after it


def trained_before(run_dir: Path, workdir: Path, seed: int, held: set, train_kwargs: dict):
    """The summary of a fold model that an earlier, interrupted run of this cross-validation
    finished in ``run_dir`` (``train_config.json`` is written after ``model.keras``), if it
    was trained from the same work folder, seed, held-out clips and settings; else None
    (it is trained again). So a cross-validation that stopped, say killed for memory, goes on
    where it stopped when run again with the same command."""
    try:
        done = json.loads((run_dir / "train_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kw = dict(train_kwargs)
    if kw.pop("positive_weight", None) is not None or not (run_dir / "model.keras").is_file():
        return None               # a class weight given by hand is not in the summary
    from .train import train      # its own defaults are the ones a fold model was trained with

    default = {k: p.default for k, p in inspect.signature(train).parameters.items()}
    mine = {k: kw.pop("mine_" + k, default["mine_" + k]) for k in ("rounds", "min_score", "limit")}
    mine_epochs = kw.pop("mine_epochs", None)
    if mine_epochs is not None:
        mine["epochs"] = mine_epochs
    want = dict(kw, workdir=str(Path(workdir).resolve()), seed=seed, excluded_items=len(held))
    same = all(done.get(k) == v for k, v in want.items())
    same = same and all(done.get("mine", {}).get(k) == v for k, v in mine.items())
    return done if same else None


def fold_of(speaker: str, folds: int) -> int:
    """The fold (0..folds-1) of a speaker: its salted hash percentage, cut into ``folds``."""
    return min(folds - 1, int(hash_percentage(speaker, FOLD_SALT) * folds / 100.0))


def real_clip_folds(items, folds: int) -> dict[int, int]:
    """``{item index: fold}`` for every real (not synthetic) keyword / other-word clip."""
    return {i: fold_of(it.speaker, folds) for i, it in enumerate(items)
            if it.role in ("keyword", "word") and not it.source.startswith("synthetic:")}


def _counts(ss, settings, keyword):
    from .evaluate import replay

    tp = fn = fp = tn = 0
    for it, sc in zip(ss.clip_items, ss.clip_scores):
        if sc is None:
            continue
        fired = bool(replay(sc, settings, keyword))
        if it.role == "keyword":
            tp, fn = tp + fired, fn + (not fired)
        else:
            fp, tn = fp + fired, tn + (not fired)
    fa = sum(len(replay(sc, settings, keyword)) for sc in ss.long_scores if sc is not None)
    return np.array([tp, fn, fp, tn, fa], dtype=np.int64)


def _rows_from(counts: np.ndarray, hours: float, thresholds) -> list[dict]:
    """DET rows (:func:`training.evaluate.calibrate`'s input) from summed counts per
    threshold ``[tp, fn, fp, tn, fa]``."""
    rows = []
    for t, (tp, fn, fp, tn, fa) in zip(thresholds, counts):
        rows.append({"threshold": float(t),
                     "recall": round(tp / max(1, tp + fn), 4),
                     "clip_false_reject_rate": round(fn / max(1, tp + fn), 4),
                     "clip_false_positive_rate": round(fp / max(1, fp + tn), 5),
                     "false_accepts_per_hour": round(fa / hours, 3) if hours else None,
                     "counts": [int(v) for v in (tp, fn, fp, tn, fa)]})
    return rows


def member_fold_dirs(member_reports, folds: int) -> dict[int, list[Path]]:
    """``{fold: [model folder, ...]}``: every (seed, fold) model of each earlier
    cross-validation in ``member_reports`` (its ``CV_DIR``), checked to share ``folds`` and
    the fold rule, so that fold f's members never heard fold f's speakers."""
    from .data import DatasetError

    out = {f: [] for f in range(folds)}
    for cv in map(Path, member_reports):
        file = cv / "crossval.json"
        try:
            rep = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DatasetError(file, f"not a readable cross-validation report ({e}); run "
                                     f"`kwsd-train crossval ... --out {cv}` first") from None
        if rep.get("folds") != folds or rep.get("fold_salt") != FOLD_SALT:
            raise DatasetError(file, f"its folds ({rep.get('folds')}, rule "
                                     f"{rep.get('fold_salt')!r}) are not these ({folds}, "
                                     f"{FOLD_SALT!r}): its models heard other speakers")
        for run in rep.get("per_run", []):
            d = cv / run.get("dir", f"seed{run['seed']}-fold{run['fold']}")
            if not (d / "model.keras").is_file():
                raise DatasetError(d, "the report names this fold model, but it has no "
                                      "model.keras")
            out[run["fold"]].append(d)
    return out


def crossval(workdir, out_dir, folds=4, seeds=(1234,), train_kwargs=None, settings=None,
             target_fa_per_hour=0.3, target_fpr=0.005, min_recall=0.8, workers=None,
             progress=True, command="", only_folds=None, members=None, parallel=1) -> dict:
    """Run the cross-validation described in the module docstring; returns the report.
    ``only_folds``: run just these folds (a quick comparison of settings on one fold).
    ``members``: earlier cross-validation folders; instead of training, each fold's model
    is the mean (:func:`training.ensemble.ensemble`) of their models for that fold, so an
    ensemble recipe gets cross-validated figures and a threshold (runs ``ensemble-foldF``).
    ``parallel``: train up to this many (seed, fold) models at once (one training keeps two
    cores only half busy). Each trains in a process of its own, so its memory goes back when
    it ends; the runs are scored and reported in the same order, and (training being
    deterministic) with the same models, whatever ``parallel`` is. After an error nothing
    more starts, but fold models already training finish before the command exits (^C
    reaches them too, and ends them)."""
    from kwsd.detector import DetectorSettings

    from .data import DatasetError
    from .ensemble import ensemble
    from .evaluate import THRESHOLDS, clip_auc, score_split
    from .export import export
    from .features import Arrays
    from .train import load_prepared, train

    workdir, out_dir = Path(workdir), Path(out_dir)
    fold_members = member_fold_dirs(members, folds) if members else None
    if fold_members is not None:          # checked before anything is loaded or written
        seeds = ("ensemble",)
        missing = [f for f, ds in fold_members.items() if len(ds) < 2
                   and (only_folds is None or f in only_folds)]
        if missing:
            raise DatasetError(Path(members[0]), f"fold(s) {missing} have fewer than two "
                                                 f"member models in {list(map(str, members))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    items, meta, _, arrays = load_prepared(workdir, progress, workers)
    fold_map = real_clip_folds(items, folds)
    kw_speakers = {items[i].speaker for i in fold_map if items[i].role == "keyword"}
    if folds < 2 or len(kw_speakers) < folds:
        raise DatasetError(workdir, f"{folds}-fold cross-validation needs at least {max(2, folds)} "
                                    f"speakers of the keyword in the training split (found "
                                    f"{len(kw_speakers)}; prepare with --validation-percent 0 "
                                    f"--testing-percent 0)")
    held_long = [it for it in items if it.split == "validation" and it.role in ("long", "noise")]
    settings = settings or DetectorSettings(threshold=0.5, smoothing=3, refractory_s=1.0,
                                            hop_s=0.1)
    thresholds = np.asarray(THRESHOLDS)
    keyword = meta["keyword"]
    runs = []
    context = {"command": command, "workdir": str(workdir.resolve()), "folds": folds,
               "seeds": list(seeds), "fold_salt": FOLD_SALT, "keyword": keyword,
               "settings": dataclasses.asdict(settings), "train": train_kwargs or {},
               "members": None if fold_members is None else
               {str(f): [str(d.resolve()) for d in ds] for f, ds in fold_members.items()},
               "thresholds": thresholds.tolist(),
               "targets": {"fa_per_hour": target_fa_per_hour, "clip_fpr": target_fpr,
                           "min_recall": min_recall}}
    plan = [(seed, f) for seed in seeds for f in range(folds)
            if only_folds is None or f in only_folds]

    def start(seed, f):
        held = {i for i, fo in fold_map.items() if fo == f}
        run_dir = out_dir / (f"seed{seed}-fold{f}" if fold_members is None else
                             f"ensemble-fold{f}")
        if fold_members is not None:
            job = None                      # an ensemble of earlier fold models: nothing to train
        elif (done := trained_before(run_dir, workdir, seed, held, train_kwargs or {})) is not None:
            print(f"{run_dir}: trained before with these settings; scored, not trained again",
                  file=sys.stderr)
            job = Future()
            job.set_result(done)
        else:
            job = _in_own_process(
                train, workdir, run_dir, seed=seed, exclude=held,
                progress=progress and parallel <= 1, workers=workers, command=command,
                **(train_kwargs or {}))
        return seed, f, held, run_dir, time.time(), job

    report = None
    queue, started = collections.deque(plan), collections.deque()

    def top_up():
        while queue and len(started) < max(1, parallel):
            started.append(start(*queue.popleft()))

    top_up()
    while started:
        seed, f, held, run_dir, t0, job = started.popleft()
        result = (job.result() if job is not None
                  else ensemble(fold_members[f], run_dir, command=command))
        top_up()                  # the next one trains while this one is scored
        if fold_members is None:
            train_seconds, score_seed = result["train_seconds"], result.get("seed", seed)
        else:
            train_seconds, score_seed = 0.0, result.get("seed", 0)
        tr = arrays["training"]
        keep = ~np.isin(tr.group, np.fromiter(held, dtype=np.int64))
        fold_arrays = dict(arrays, training=Arrays(tr.x[keep], tr.y[keep], tr.kind[keep],
                                                   tr.group[keep]))
        exported = export(run_dir, workdir, settings=settings, progress=progress,
                          arrays=fold_arrays)
        eval_items, seen = [], set()
        for i in sorted(held):
            if (items[i].path, items[i].end) in seen:
                continue          # a copy made by prepare --real-keyword-weight: once
            seen.add((items[i].path, items[i].end))
            it = copy.copy(items[i])
            it.split = "validation"
            eval_items.append(it)
        ss = score_split(exported["int8"]["path"], eval_items + held_long, "validation",
                         settings, workers=workers, progress=progress,
                         seed=score_seed)
        counts = np.stack([_counts(ss, settings.with_overrides(threshold=float(t)), keyword)
                           for t in thresholds])
        runs.append({"seed": seed, "fold": f, "dir": run_dir.name, "roc_auc": clip_auc(ss),
                     "keyword_clips": int(counts[0][0] + counts[0][1]),
                     "other_clips": int(counts[0][2] + counts[0][3]),
                     "speakers": len({items[i].speaker for i in held}),
                     "hours": round(ss.long_hours, 3), "counts": counts.tolist(),
                     "train_seconds": train_seconds,
                     "seconds": round(time.time() - t0, 1),
                     "clip_max": [[it.role, it.word, it.path,
                                   None if sc is None or not len(sc.scores)
                                   else round(float(sc.scores.max()), 5)]
                                  for it, sc in zip(ss.clip_items, ss.clip_scores)]})
        print(f"crossval: seed {seed} fold {f}: AUC {runs[-1]['roc_auc']}, "
              f"{runs[-1]['seconds']:.0f} s", file=sys.stderr)
        # written after every run, so an interrupted cross-validation still reports
        report = build_report(context, runs, len(runs) == len(plan))
        with open(out_dir / "crossval.json", "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
        (out_dir / "crossval.md").write_text(markdown(report), encoding="utf-8")
    return report


def build_report(context: dict, runs: list[dict], complete: bool = True) -> dict:
    """The cross-validation report from the runs done so far: each seed's folds pooled
    (only seeds with at least one fold), the seeds' rows averaged, a threshold calibrated
    on them, and each run's figures at that threshold."""
    from .evaluate import calibrate

    thresholds = np.asarray(context["thresholds"])
    seeds = [s for s in context["seeds"] if any(r["seed"] == s for r in runs)]
    seed_rows = []
    for seed in seeds:
        mine = [r for r in runs if r["seed"] == seed]
        total = np.sum([np.asarray(r["counts"], np.int64) for r in mine], axis=0)
        seed_rows.append(_rows_from(total, sum(r["hours"] for r in mine), thresholds))
    rows = []
    for k, t in enumerate(thresholds):
        r = {"threshold": float(t)}
        for key in ("recall", "clip_false_reject_rate", "clip_false_positive_rate",
                    "false_accepts_per_hour"):
            vals = [sr[k][key] for sr in seed_rows if sr[k][key] is not None]
            r[key] = round(float(np.mean(vals)), 5) if vals else None
        rows.append(r)
    t = context["targets"]
    cal = calibrate(rows, t["fa_per_hour"], t["clip_fpr"], t["min_recall"])
    k = int(np.argmin(np.abs(thresholds - cal["threshold"])))
    for run in runs:
        tp, fn, fp, tn, fa = run["counts"][k]
        run["at_threshold"] = {"recall": round(tp / max(1, tp + fn), 4),
                               "false_positive_rate": round(fp / max(1, fp + tn), 5),
                               "false_accepts_per_hour": round(fa / run["hours"], 3)
                               if run["hours"] else None}
    report = dict(context, seeds=seeds, complete=complete, rows=rows,
                  per_seed_rows={str(s): r for s, r in zip(seeds, seed_rows)},
                  calibration=cal, per_run=runs, summary=summarise(runs, seed_rows, k))
    report["summary"]["pooled_roc_auc"] = pooled_auc(report)
    return report


def summarise(runs: list[dict], seed_rows: list[list[dict]], k: int) -> dict:
    """Mean, standard deviation, min and max over the (seed, fold) runs at row ``k``, and
    the pooled figures of each seed at that threshold."""
    def stats(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4),
                "min": round(float(np.min(vals)), 4), "max": round(float(np.max(vals)), 4)}
    return {"roc_auc": stats([r["roc_auc"] for r in runs]),
            "recall": stats([r["at_threshold"]["recall"] for r in runs]),
            "false_positive_rate": stats([r["at_threshold"]["false_positive_rate"] for r in runs]),
            "false_accepts_per_hour": stats([r["at_threshold"]["false_accepts_per_hour"]
                                             for r in runs]),
            "pooled_per_seed": [{"recall": sr[k]["recall"],
                                 "false_positive_rate": sr[k]["clip_false_positive_rate"],
                                 "false_accepts_per_hour": sr[k]["false_accepts_per_hour"]}
                                for sr in seed_rows]}


def markdown(report: dict) -> str:
    """A short Markdown account of a cross-validation report."""
    cal, s = report["calibration"], report["summary"]
    what = (f"{len(report['seeds'])} seed(s)" if not report.get("members") else
            "the mean of the members' fold models")
    lines = [f"# Cross-validation: {report['folds']} speaker folds x {what}"
             + ("" if report.get("complete", True) else
                                                  " (INCOMPLETE: interrupted)"), "",
             f"`{report['command']}`", "",
             f"Calibrated threshold: **{cal['threshold']:g}** (targets met: "
             f"{cal['met_targets']}); ROC AUC of all held-out clips pooled over folds: "
             f"{s.get('pooled_roc_auc')}", "",
             "| per (seed, fold) | mean | std | min | max |", "|---|---|---|---|---|"]
    for key in ("roc_auc", "recall", "false_positive_rate", "false_accepts_per_hour"):
        v = s.get(key)
        if v:
            lines.append(f"| {key} | {v['mean']} | {v['std']} | {v['min']} | {v['max']} |")
    lines += [""] if report.get("members") else []
    for f, dirs in (report.get("members") or {}).items():
        lines.append(f"- fold {f}'s members: " + ", ".join(f"`{d}`" for d in dirs))
    lines += ["", "Pooled over folds, per seed, at the calibrated threshold:", ""]
    for seed, p in zip(report["seeds"], s["pooled_per_seed"]):
        lines.append(f"- seed {seed}: recall {p['recall']}, other-word false positives "
                     f"{p['false_positive_rate']}, false accepts/h {p['false_accepts_per_hour']}")
    lines += ["", "| run | speakers | stop clips | other clips | AUC | recall | FPR | FA/h | s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["per_run"]:
        a = r["at_threshold"]
        name = r.get("dir") or f"seed{r['seed']}-fold{r['fold']}"
        lines.append(f"| {name} | {r['speakers']} | "
                     f"{r['keyword_clips']} | {r['other_clips']} | {r['roc_auc']} | "
                     f"{a['recall']} | {a['false_positive_rate']} | "
                     f"{a['false_accepts_per_hour']} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def pooled_auc(report: dict) -> float | None:
    """ROC AUC of every held-out clip's highest score, pooled over folds (per seed, mean)."""
    from .evaluate import roc_auc

    out = []
    for seed in report["seeds"]:
        pos, neg = [], []
        for r in report["per_run"]:
            if r["seed"] != seed:
                continue
            for role, _, _, score in r["clip_max"]:
                if score is not None:
                    (pos if role == "keyword" else neg).append(score)
        auc = roc_auc(np.array(pos), np.array(neg))
        if auc is not None:
            out.append(auc)
    return round(float(np.mean(out)), 5) if out else None


def combined_rows(report: dict, model_rows: list[dict]) -> list[dict]:
    """DET rows for calibrating a model trained on every speaker: clip recall and false
    positives from the cross-validation, false accepts per hour from the model's own
    held-out long audio (``model_rows``, :func:`training.evaluate.det_curve`)."""
    by_t = {round(r["threshold"], 4): r for r in report["rows"]}
    out = []
    for r in model_rows:
        cv = by_t.get(round(r["threshold"], 4))
        if cv is None:
            continue
        out.append(dict(r, clip_false_reject_rate=cv["clip_false_reject_rate"],
                        clip_false_positive_rate=cv["clip_false_positive_rate"],
                        recall=cv["recall"]))
    return out
