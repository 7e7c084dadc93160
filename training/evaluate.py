"""Evaluating models with kwsd's own streaming code (``kwsd-train evaluate``).

Nothing here re-implements the daemon: every file goes through
:func:`kwsd.detect.detect_file` (clip files, exactly as ``kwsd detect`` runs them) or
:class:`kwsd.spotter.Spotter` (long recordings and streams built from clips), and every
threshold is judged by replaying the per-hop scores through :class:`kwsd.detector.Detector`.

Measured, on the held-out split of a prepared work folder:

* **clip level** (each clip file as ``kwsd detect`` sees it): precision, recall, per-word
  false-positive rates, ROC AUC of the clip's highest score;
* **streaming**: the held-out clips placed 2.5 s apart in one stream over low background
  noise (false rejects; detections during another word are false positives), and false
  accepts per hour over long held-out recordings (speech and noise) with no keyword;
* a **DET curve** (false rejects vs false accepts per hour over thresholds), and a
  threshold calibrated on the validation split: the highest recall with at most
  ``target_fa_per_hour`` and a clip false-positive rate of at most ``target_fpr``, never
  below ``min_recall`` (see :func:`calibrate`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from kwsd.detector import Detector, DetectorSettings

from .data import Item, LoadProblems, load_audio

THRESHOLDS = np.round(np.concatenate([np.arange(0.02, 0.9, 0.02), np.arange(0.9, 0.999, 0.005),
                                      [0.999]]), 4)
SLOT_S = 2.5          # spacing of clips in the streaming test
CLIP_AT_S = 0.75      # where a clip starts in its slot
HIT_AFTER_S = 1.1     # a detection up to this long after the clip's end counts as a hit


@dataclasses.dataclass
class Scores:
    """Per-hop raw scores of one file or stream: ``times`` (s), ``scores``."""

    times: np.ndarray
    scores: np.ndarray


def replay(scores: Scores, settings: DetectorSettings, keyword="stop") -> list[float]:
    """Detection times when ``scores`` go through :class:`kwsd.detector.Detector`."""
    det = Detector(settings, keyword)
    out = []
    for t, s in zip(scores.times.tolist(), scores.scores.tolist()):
        d = det.update(t, s)
        if d is not None:
            out.append(d.time)
    return out


# --------------------------------------------------------------------------- scoring workers

_W: dict = {}


def _init(model_path, profile_name, settings_dict):
    from kwsd.model import load_model

    _W["model"] = load_model(model_path, profile=profile_name)
    _W["settings"] = DetectorSettings.from_dict(settings_dict)


def _score_file(path) -> Scores:
    from kwsd.detect import detect_file

    times, scores = [], []

    def on_event(ev):
        if ev.kind == "score":
            times.append(ev.time)
            scores.append(ev.score)
    detect_file(path, _W["model"], _W["settings"], on_event)
    return Scores(np.array(times), np.array(scores, dtype=np.float32))


def stream_array(samples: np.ndarray, rate: int, model, settings) -> Scores:
    """Per-hop scores of a mono signal streamed block by block through kwsd detect's path
    (:func:`kwsd.detect.detect_samples`, as a microphone would deliver it)."""
    from kwsd.detect import detect_samples

    times, scores = [], []

    def on_event(ev):
        if ev.kind == "score":
            times.append(ev.time)
            scores.append(ev.score)
    detect_samples(np.asarray(samples), rate, model, settings, on_event)
    return Scores(np.array(times), np.array(scores, dtype=np.float32))


def _score_job(job):
    kind, payload = job
    try:
        if kind == "file":
            return _score_file(payload)
        if kind == "segment":
            path, start, end = payload
            rate = _W["model"].profile.sample_rate
            x = load_audio(path, rate, LoadProblems(stream=None), start, end)
            if x is None:
                return None
            return stream_array(x, rate, _W["model"], _W["settings"])
        samples, rate = payload   # an in-memory stream
        return stream_array(samples, rate, _W["model"], _W["settings"])
    except Exception as exc:  # noqa: BLE001 - reported per file, never fatal
        return exc


def score_all(model_path, jobs, settings, profile=None, workers=None, progress=True,
              desc="scoring") -> list:
    """Run scoring jobs (``("file", path)``, ``("segment", (path, start, end))``,
    ``("array", (samples, rate))``) on all cores; results in job order."""
    from .progress import bar

    init = (str(model_path), profile, dataclasses.asdict(settings))
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    if workers == 1:
        _init(*init)
        return [_score_job(j) for j in bar(jobs, progress, desc=desc, unit="file")]
    with multiprocessing.get_context("spawn").Pool(workers, _init, init) as pool:
        return list(bar(pool.imap(_score_job, jobs, chunksize=1), progress, total=len(jobs),
                        desc=desc, unit="file"))


# --------------------------------------------------------------------------- metrics

def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Area under the ROC curve (probability a positive outscores a negative; ties half).

    >>> roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.85]))
    0.75
    """
    if len(positive) == 0 or len(negative) == 0:
        return None
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return round(float(u) / (len(positive) * len(negative)), 5)


def build_stream(clips: list[np.ndarray], rate: int, background: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clips placed ``SLOT_S`` apart (each at ``CLIP_AT_S`` in its slot) over a quiet
    background; returns the stream and each clip's (start, end) in seconds."""
    slot = int(SLOT_S * rate)
    total = slot * len(clips) + slot
    if background is not None and len(background):
        reps = total // len(background) + 1
        stream = np.tile(background, reps)[:total].astype(np.float32)
        level = np.sqrt(np.mean(stream.astype(np.float64) ** 2)) or 1.0
        stream *= 10 ** (-50 / 20) / level            # -50 dBFS: a quiet room
    else:
        stream = (rng.standard_normal(total) * 10 ** (-60 / 20)).astype(np.float32)
    spans = []
    for i, clip in enumerate(clips):
        clip = clip[:slot - int(CLIP_AT_S * rate)]
        at = i * slot + int(CLIP_AT_S * rate)
        stream[at:at + len(clip)] += clip
        spans.append((at / rate, (at + len(clip)) / rate))
    return np.clip(stream, -1, 1), spans


def stream_outcome(scores: Scores, spans, settings, keyword="stop"):
    """Per clip: did a detection land in its span (+``HIT_AFTER_S``)? And how many
    detections landed in no span (false accepts in the stream)?"""
    times = replay(scores, settings, keyword)
    hit = [False] * len(spans)
    stray = 0
    for t in times:
        for i, (a, b) in enumerate(spans):
            if a <= t <= b + HIT_AFTER_S:
                hit[i] = True
                break
        else:
            stray += 1
    return hit, stray


@dataclasses.dataclass
class SplitScores:
    """Everything scored for one model on one split."""

    clip_items: list
    clip_scores: list          # Scores per clip file (None: unreadable)
    kw_stream: Scores | None
    kw_spans: list
    word_stream: Scores | None
    word_spans: list
    word_stream_words: list
    long_items: list
    long_scores: list
    long_hours: float


def score_split(model_path, items: list[Item], split: str, settings, profile=None,
                workers=None, progress=True, seed=0, extra_long: list[Item] = ()) -> SplitScores:
    """Score every held-out clip file, the two streams and the long recordings of ``split``."""
    from kwsd.model import load_model

    model = load_model(model_path, profile=profile)
    rate = model.profile.sample_rate
    clips = [it for it in items if it.split == split and it.role in ("keyword", "word")]
    longs = [it for it in items if it.split == split and it.role in ("long", "noise")]
    longs += list(extra_long)
    problems = LoadProblems(stream=None)
    rng = np.random.default_rng(seed)
    background = None
    for it in longs:
        if it.role == "noise":
            background = load_audio(it.path, rate, problems, it.start, it.end)
            break
    kw_items = [it for it in clips if it.role == "keyword"]
    word_items = [it for it in clips if it.role == "word"]
    kw_audio = [load_audio(it.path, rate, problems) for it in kw_items]
    word_audio = [load_audio(it.path, rate, problems) for it in word_items]
    kw_ok = [a for a in kw_audio if a is not None]
    word_pairs = [(it.word, a) for it, a in zip(word_items, word_audio) if a is not None]
    kw_stream, kw_spans = build_stream(kw_ok, rate, background, rng) if kw_ok else (None, [])
    word_stream, word_spans = (build_stream([a for _, a in word_pairs], rate, background, rng)
                               if word_pairs else (None, []))
    jobs = [("file", it.path) for it in clips]
    jobs += [("file", it.path) if not it.start and it.end is None else
             ("segment", (it.path, it.start, it.end)) for it in longs]
    if kw_stream is not None:
        jobs.append(("array", (kw_stream, rate)))
    if word_stream is not None:
        jobs.append(("array", (word_stream, rate)))
    results = score_all(model_path, jobs, settings, profile, workers, progress,
                        desc=f"scoring {split} ({Path(model_path).name})")
    results = [None if isinstance(r, Exception) else r for r in results]
    n_clip, n_long = len(clips), len(longs)
    clip_scores = results[:n_clip]
    long_scores = results[n_clip:n_clip + n_long]
    rest = results[n_clip + n_long:]
    kw_s = rest.pop(0) if kw_stream is not None else None
    word_s = rest.pop(0) if word_stream is not None else None
    hours = 0.0
    for it, sc in zip(longs, long_scores):
        if sc is not None and len(sc.times):
            hours += (sc.times[-1] + settings.hop_s) / 3600.0
    return SplitScores(clips, clip_scores, kw_s, kw_spans, word_s, word_spans,
                       [w for w, _ in word_pairs], longs, long_scores, hours)


def metrics_at(ss: SplitScores, settings: DetectorSettings, keyword="stop") -> dict:
    """All metrics of one split at one detector setting."""
    tp = fn = fp = tn = 0
    per_word: dict = {}
    for it, sc in zip(ss.clip_items, ss.clip_scores):
        if sc is None:
            continue
        fired = bool(replay(sc, settings, keyword))
        if it.role == "keyword":
            tp += fired
            fn += not fired
        else:
            fp += fired
            tn += not fired
            w = per_word.setdefault(it.word, [0, 0])
            w[0] += fired
            w[1] += 1
    fa = 0
    fa_by_source: dict = {}
    for it, sc in zip(ss.long_items, ss.long_scores):
        if sc is None:
            continue
        n = len(replay(sc, settings, keyword))
        fa += n
        src = it.source if it.role == "long" else "noise"
        fa_by_source[src] = fa_by_source.get(src, 0) + n
    out = {
        "threshold": settings.threshold,
        "clip": {"keyword_clips": tp + fn, "other_clips": fp + tn, "true_positives": tp,
                 "false_negatives": fn, "false_positives": fp,
                 "recall": _ratio(tp, tp + fn), "precision": _ratio(tp, tp + fp),
                 "false_positive_rate": _ratio(fp, fp + tn),
                 "per_word_false_positive_rate": {w: round(a / b, 4) for w, (a, b)
                                                  in sorted(per_word.items())}},
        "long": {"hours": round(ss.long_hours, 3), "false_accepts": fa,
                 "false_accepts_per_hour": round(fa / ss.long_hours, 3) if ss.long_hours else None,
                 "false_accepts_by_source": fa_by_source},
    }
    if ss.kw_stream is not None:
        hit, stray = stream_outcome(ss.kw_stream, ss.kw_spans, settings, keyword)
        out["stream"] = {"keyword_clips": len(hit), "false_reject_rate": _ratio(len(hit) - sum(hit), len(hit)),
                         "recall": _ratio(sum(hit), len(hit)), "stray_detections": stray}
    if ss.word_stream is not None:
        hit, stray = stream_outcome(ss.word_stream, ss.word_spans, settings, keyword)
        per = {}
        for w, h in zip(ss.word_stream_words, hit):
            a = per.setdefault(w, [0, 0])
            a[0] += h
            a[1] += 1
        out.setdefault("stream", {}).update({
            "other_clips": len(hit), "other_false_positive_rate": _ratio(sum(hit), len(hit)),
            "other_stray_detections": stray,
            "worst_words": sorted(((w, round(a / b, 4)) for w, (a, b) in per.items() if a),
                                  key=lambda x: -x[1])[:8]})
    return out


def detections(scores: Scores, settings: DetectorSettings, keyword="stop") -> list:
    """``(time, peak smoothed score)`` of each detection when ``scores`` go through the
    detector: the time it fired, and the highest smoothed score until its refractory period
    ends (a low threshold fires early on the rise; the peak says how close it came to a
    higher one)."""
    det = Detector(settings, keyword)
    out = []
    for t, sc in zip(scores.times.tolist(), scores.scores.tolist()):
        d = det.update(t, sc)
        if d is not None:
            out.append([d.time, d.score])
        elif out and t - out[-1][0] <= settings.refractory_s + 1e-9:
            out[-1][1] = max(out[-1][1], det.smoothed)
    return [tuple(x) for x in out]


def poisson_interval(count: int, hours: float, confidence=0.95) -> tuple:
    """Exact (Garwood) confidence interval of a rate per hour from ``count`` events in
    ``hours``: the chi-square quantiles of the Poisson mean, divided by the hours.

    >>> poisson_interval(0, 2.0)
    (0.0, 1.844)
    >>> poisson_interval(4, 2.0)
    (0.545, 5.121)
    """
    from scipy.stats import chi2

    if hours <= 0:
        return (None, None)
    a = 1.0 - confidence
    lo = 0.0 if count == 0 else chi2.ppf(a / 2, 2 * count) / 2
    hi = chi2.ppf(1 - a / 2, 2 * count + 2) / 2
    return (round(float(lo) / hours, 3), round(float(hi) / hours, 3))


#: Languages of the sources this project knows (a folder's own ``_xx`` suffix wins).
SOURCE_LANGUAGE = {"librispeech": "en", "picovoice_sti": "en", "precise_community": "en",
                   "festvox_ru": "ru"}
_NOISE_NAMES = ("noise", "noises", "_background_noise_")


def language_of(item: Item) -> str:
    """The language of a long recording (``"noise"`` for noise): a ``_xx`` suffix of its
    folder (``heycomputer_es``), else :data:`SOURCE_LANGUAGE`, else ``"?"``.

    >>> language_of(Item("d/precise_community/heycomputer_es/a.flac", "long", "testing",
    ...                  word="heycomputer_es", source="precise_community"))
    'es'
    >>> language_of(Item("d/picovoice_sti/noise/k.ogg", "long", "testing", word="noise",
    ...                  source="picovoice_sti"))
    'noise'
    """
    import re

    if item.role == "noise" or item.word.lower() in _NOISE_NAMES:
        return "noise"
    for name in (item.word, item.source):
        m = re.search(r"_([a-z]{2})$", name.lower())
        if m and m.group(1) not in ("sc",):
            return m.group(1)
    return SOURCE_LANGUAGE.get(item.source, "?")


def _item_hours(sc: Scores, hop_s: float) -> float:
    return (sc.times[-1] + hop_s) / 3600.0 if sc is not None and len(sc.times) else 0.0


def long_audio_table(ss: "SplitScores", settings: DetectorSettings, keyword="stop") -> dict:
    """False accepts per source and per language (and overall) with hours, rate per hour
    and its 95% exact Poisson interval."""
    acc: dict = {}
    for it, sc in zip(ss.long_items, ss.long_scores):
        if sc is None:
            continue
        n, h = len(replay(sc, settings, keyword)), _item_hours(sc, settings.hop_s)
        src = it.source if it.role == "long" else "noise"
        for key in (("source", src), ("language", language_of(it)), ("all", "all")):
            a = acc.setdefault(key, [0, 0.0])
            a[0] += n
            a[1] += h
    out: dict = {"source": {}, "language": {}, "all": {}}
    for (kind, name), (n, h) in sorted(acc.items()):
        lo, hi = poisson_interval(n, h)
        out[kind][name] = {"hours": round(h, 3), "false_accepts": n,
                           "per_hour": round(n / h, 3) if h else None, "ci95": [lo, hi]}
    return out


def synthetic_speech_files(dirs, problems: LoadProblems) -> list[tuple[str, str, str]]:
    """``(path, language, voice id)`` of each long-speech file (``_speech_/``), music piece
    (``_music_/``, language ``music``) and knocks recording (``_knocks_/``, language
    ``knocks``) that ``kwsd-train synth`` rendered into ``dirs``,
    from their ``synth_manifest.csv``.

    Such audio measures how often a model fires on running speech rich in "st" + vowel in
    many languages, the confusion real held-out audio here has too little of to see. It is
    a development signal: synthetic voices, never a claim about real speech. Files the
    manifest lists but that are missing are recorded in ``problems``.
    """
    import csv

    from .data import DatasetError

    out = []
    for d in dirs:
        manifest = Path(d) / "synth_manifest.csv"
        if not manifest.is_file():
            raise DatasetError(d, "no synth_manifest.csv: not a `kwsd-train synth` folder")
        with open(manifest, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                path = Path(d) / row["path"]
                if not row["path"].startswith(("_speech_/", "_music_/", "_knocks_/")):
                    continue
                if path.is_file():
                    out.append((str(path), row.get("language") or "?", row.get("voice_id", "")))
                else:
                    problems.skip(path, "listed in synth_manifest.csv but missing")
    if not out:
        raise DatasetError(dirs[0], "no long synthetic speech, music or knocks (_speech_/, "
                                    "_music_/, _knocks_/) in the manifest(s)")
    return out


def synthetic_speech_table(model_path, files, settings_by_name: dict, problems: LoadProblems,
                           keyword="stop", profile=None, workers=None, progress=True) -> dict:
    """False accepts per language on synthetic running speech (see
    :func:`synthetic_speech_files`), for each named detector setting: ``{name: {"all":
    {...}, "language": {lang: {"hours", "false_accepts", "per_hour"}}}}``. Files that cannot
    be decoded are recorded in ``problems`` and left out."""
    first = next(iter(settings_by_name.values()))
    scores = score_all(model_path, [("file", f) for f, _, _ in files], first, profile,
                       workers, progress, desc=f"scoring synthetic speech ({Path(model_path).name})")
    for (path, _, _), sc in zip(files, scores):
        if sc is None or isinstance(sc, Exception):
            problems.skip(path, sc if sc is not None else "unreadable audio")
    out = {}
    for name, settings in settings_by_name.items():
        acc: dict = {("all", "all"): [0, 0.0]}     # a row even when nothing could be read
        for (_, lang, _), sc in zip(files, scores):
            if sc is None or isinstance(sc, Exception) or not len(sc.times):
                continue
            n, h = len(replay(sc, settings, keyword)), _item_hours(sc, settings.hop_s)
            for key in (("all", "all"), ("language", lang)):
                a = acc.setdefault(key, [0, 0.0])
                a[0] += n
                a[1] += h
        table: dict = {"all": {}, "language": {}}
        for (kind, key), (n, h) in sorted(acc.items()):
            table[kind][key] = {"hours": round(h, 3), "false_accepts": n,
                                "per_hour": round(n / h, 3) if h else None}
        out[name] = table
    return out


def top_false_accepts(ss: "SplitScores", settings: DetectorSettings, keyword="stop",
                      n=20) -> list[dict]:
    """The ``n`` highest-scoring false accepts in the long recordings: file, time in the
    file (seconds, the end of the window that fired), peak score (see :func:`detections`),
    source and language."""
    found = []
    for it, sc in zip(ss.long_items, ss.long_scores):
        if sc is None:
            continue
        for t, score in detections(sc, settings, keyword):
            found.append({"file": it.path, "time": round(it.start + t, 2),
                          "score": round(float(score), 4), "source": it.source,
                          "language": language_of(it)})
    return sorted(found, key=lambda d: -d["score"])[:n]


def save_snippets(false_accepts: list[dict], out_dir, before_s=2.0, after_s=0.5) -> list:
    """Write each false accept's audio (``before_s`` before to ``after_s`` after the
    decision) as FLAC into ``out_dir``, so a person can listen to what fired; returns the
    file names (also stored in each entry as ``snippet``)."""
    import re

    import soundfile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, fa in enumerate(false_accepts, 1):
        try:
            info = soundfile.info(fa["file"])
            a = max(0, int((fa["time"] - before_s) * info.samplerate))
            b = min(info.frames, int((fa["time"] + after_s) * info.samplerate))
            audio, rate = soundfile.read(fa["file"], start=a, stop=b, dtype="float32")
        except (RuntimeError, OSError, ValueError) as exc:
            fa["snippet"] = None
            fa["snippet_error"] = str(exc)
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(fa["file"]).stem)[:40]
        name = f"{k:02d}_{fa['language']}_{stem}_{fa['time']:.1f}s.flac"
        soundfile.write(str(out_dir / name), audio, rate, format="FLAC")
        fa["snippet"] = name
        names.append(name)
    return names


DET_TABLE_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def det_table_thresholds(also=()) -> list[float]:
    """The thresholds of :func:`det_table`: 0.05 to 0.95 and those in ``also``, each once,
    at the precision of :data:`THRESHOLDS` (a calibrated 0.905 keeps its row).

    >>> det_table_thresholds((0.52, 0.905, 0.5))[8:12], det_table_thresholds()[-1]
    ([0.45, 0.5, 0.52, 0.55], 0.95)
    >>> 0.905 in det_table_thresholds((0.905,))
    True
    """
    return [float(t) for t in np.unique(np.round(np.r_[DET_TABLE_THRESHOLDS, list(also)], 4))]


def det_table(ss: "SplitScores", base: DetectorSettings, clip_rows: list[dict] | None = None,
              keyword="stop", clip_count: int | None = None, also=()) -> dict:
    """The threshold table embedded in a model (``"det_table"``): for thresholds 0.05 to
    0.95 and those in ``also`` (the calibrated one, so that `kwsd stats` and `kwsd detect
    --info` show the model's own figures at the threshold it runs with), ``[threshold, false
    accepts per hour on the held-out long audio, recall]``; recall from ``clip_rows``
    (cross-validated, nearest threshold) when given, else the held-out keyword clips (``ss``:
    the validation and testing splits pooled)."""
    rows = []
    clips = 0
    for t in det_table_thresholds(also):
        m = metrics_at(ss, base.with_overrides(threshold=float(t)), keyword)
        recall = m["clip"]["recall"]
        clips = m["clip"]["keyword_clips"]
        if clip_rows:
            near = min(clip_rows, key=lambda r: abs(r["threshold"] - t))
            recall = near.get("recall")
        rows.append([float(t), m["long"]["false_accepts_per_hour"],
                     None if recall is None else round(float(recall), 4)])
    return {"hours": round(ss.long_hours, 3),
            "clips": clips if clip_count is None else clip_count, "rows": rows}


def _ratio(a, b):
    return round(a / b, 4) if b else None


def clip_auc(ss: SplitScores) -> float | None:
    """ROC AUC of each clip file's highest raw score, keyword vs other words."""
    pos = [sc.scores.max() for it, sc in zip(ss.clip_items, ss.clip_scores)
           if sc is not None and len(sc.scores) and it.role == "keyword"]
    neg = [sc.scores.max() for it, sc in zip(ss.clip_items, ss.clip_scores)
           if sc is not None and len(sc.scores) and it.role != "keyword"]
    return roc_auc(np.array(pos), np.array(neg))


def det_curve(ss: SplitScores, base: DetectorSettings, keyword="stop") -> list[dict]:
    """Per threshold: streaming false-reject rate, clip false-reject rate, clip FPR and
    false accepts per hour (the DET curve's points)."""
    rows = []
    for t in THRESHOLDS:
        m = metrics_at(ss, base.with_overrides(threshold=float(t)), keyword)
        rows.append({"threshold": float(t),
                     "clip_false_reject_rate": None if m["clip"]["recall"] is None
                     else round(1 - m["clip"]["recall"], 4),
                     "stream_false_reject_rate": m.get("stream", {}).get("false_reject_rate"),
                     "clip_false_positive_rate": m["clip"]["false_positive_rate"],
                     "false_accepts_per_hour": m["long"]["false_accepts_per_hour"]})
    return rows


def calibrate(rows: list[dict], target_fa_per_hour: float, target_fpr: float,
              min_recall: float = 0.8) -> dict:
    """The threshold to ship, from DET rows (see :func:`det_curve`).

    Among thresholds keeping clip recall >= ``min_recall``: the one with the best recall
    that meets both targets (ties: the middle of the tied range, away from both the
    false-accept and the false-reject edge). If none meets them, the one that comes
    closest (smallest ``max(FA/h / target, FPR / target)``, then the best recall), and
    ``met_targets`` is False: a threshold that silences the keyword is never chosen to
    meet a false-accept target.
    """
    def fa(r):
        return r["false_accepts_per_hour"] or 0.0

    def fpr(r):
        return r["clip_false_positive_rate"] or 0.0

    def frr(r):
        return r["clip_false_reject_rate"] if r["clip_false_reject_rate"] is not None else 1.0
    usable = [r for r in rows if 1.0 - frr(r) >= min_recall] or rows
    ok = [r for r in usable if fa(r) <= target_fa_per_hour and fpr(r) <= target_fpr]
    if ok:
        best = min(frr(r) for r in ok)
        tied = [r["threshold"] for r in ok if frr(r) == best]
        middle = (min(tied) + max(tied)) / 2
        chosen = min(tied, key=lambda t: abs(t - middle))
        return {"threshold": chosen, "met_targets": True, "min_recall": min_recall}

    def violation(r):
        return max(fa(r) / max(target_fa_per_hour, 1e-9), fpr(r) / max(target_fpr, 1e-9))
    chosen = min(usable, key=lambda r: (violation(r), frr(r), -r["threshold"]))
    return {"threshold": chosen["threshold"], "met_targets": False, "min_recall": min_recall}


# --------------------------------------------------------------------------- the driver

def write_threshold(model_path, threshold: float, metrics: dict | None = None,
                    table: dict | None = None):
    """Rewrite a model file's embedded metadata with a calibrated threshold (and metrics,
    and the ``"det_table"`` of :func:`det_table`), atomically (write beside it, then
    rename)."""
    from kwsd.metadata import embed_metadata, read_metadata

    path = Path(model_path)
    data = path.read_bytes()
    meta = read_metadata(data) or {}
    meta.setdefault("detector", {})["threshold"] = float(threshold)
    if metrics is not None:
        meta.setdefault("provenance", {})["metrics"] = metrics
    if table is not None:
        meta["det_table"] = table
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(embed_metadata(data, meta))
    os.replace(tmp, path)


def _safe_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _write_clip_scores(path, table: dict, names: list):
    """One row per held-out clip file: split, word, file, each model's highest score."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "word", "file"] + names)
        for (split, file, word), scores in sorted(table.items()):
            w.writerow([split, word, file] + ["" if scores.get(n) is None
                                              else f"{scores[n]:.4f}" for n in names])


def evaluate_models(model_paths, workdir, out_dir, target_fa_per_hour=0.3, target_fpr=0.005,
                    profile=None, extra_long_dirs=(), workers=None, progress=True,
                    command="", names=None, min_recall=0.8, crossval=None,
                    top_n=20, synthetic_dirs=()) -> dict:
    """Evaluate models on a prepared work folder's validation and testing splits.

    Writes ``report.json``, ``report.md``, ``det_curve.png`` and ``clip_scores.csv`` (every
    held-out clip's highest score under each model, side by side) into ``out_dir`` and
    returns the report dict. Each model is judged with its own embedded detector defaults and with a
    threshold calibrated on the validation split (see :func:`calibrate`).

    ``crossval`` (a :mod:`training.crossval` report): the model was trained on every
    speaker, so its clip recall and false positives come from that cross-validation, and
    only its false accepts per hour from this work folder's held-out long audio.

    The long held-out audio (validation and testing together) is also reported per source
    and per language with 95% intervals, and its ``top_n`` highest-scoring false accepts
    are listed and saved as FLAC snippets in ``false_accepts/<model>/``.

    ``synthetic_dirs`` (``kwsd-train synth`` folders the model did not train on): their long
    speech is scored too and reported apart, per language, as a development signal (see
    :func:`synthetic_speech_files`); it never enters a real figure or the calibration.
    """
    import datetime

    from kwsd.model import load_model

    from .data import load_index, scan_long_recordings, split_counts
    from .report import markdown, plot_det

    from .data import DatasetError

    items, meta = load_index(Path(workdir) / "index.json")
    if not any(it.split in ("validation", "testing") for it in items) and not extra_long_dirs:
        raise DatasetError(workdir, "no held-out data to evaluate on (prepare it with "
                                    "--validation-percent/--testing-percent above 0)")
    extra = []
    for d in extra_long_dirs:
        for it in scan_long_recordings(d, 0, 0):
            it.split = "testing"
            extra.append(it)
    syn_problems = LoadProblems()
    synthetic = synthetic_speech_files(synthetic_dirs, syn_problems) if synthetic_dirs else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command, "workdir": str(Path(workdir).resolve()),
              "targets": {"fa_per_hour": target_fa_per_hour, "clip_fpr": target_fpr,
                          "min_recall": min_recall},
              "split": split_counts(items), "models": {},
              "config": {"index": meta, "thresholds": THRESHOLDS.tolist(), "slot_s": SLOT_S,
                         "extra_long_dirs": [str(d) for d in extra_long_dirs],
                         "synthetic_dirs": [str(d) for d in synthetic_dirs]}}
    curves, marks = {}, {}
    clip_table: dict = {}      # (split, path, word) -> {model name: highest score}
    for i, path in enumerate(model_paths):
        model = load_model(path, profile=profile)
        name = (names[i] if names else None) or Path(path).name
        defaults = model.defaults
        entry = {"path": str(path), "bytes": Path(path).stat().st_size,
                 "kind": "int8" if model.quantized else "float",
                 "profile": model.profile.name, "defaults": dataclasses.asdict(defaults)}
        per_split = {}
        for split in ("validation", "testing"):
            if not any(it.split == split for it in items) and not (split == "testing" and extra):
                continue
            ss = score_split(path, items, split, defaults, profile, workers, progress,
                             extra_long=extra if split == "testing" else ())
            per_split[split] = (ss, det_curve(ss, defaults, model.keyword))
            for it, sc in zip(ss.clip_items, ss.clip_scores):
                row = clip_table.setdefault((split, it.path, it.word), {})
                row[name] = None if sc is None or not len(sc.scores) else float(sc.scores.max())
        cal_split = "validation" if "validation" in per_split else "testing"
        cal_rows = per_split[cal_split][1]
        cv = crossval if i == 0 else None      # the cross-validated model is listed first
        if cv is not None:
            from .crossval import combined_rows

            cal_rows = combined_rows(cv, cal_rows)
        cal = calibrate(cal_rows, target_fa_per_hour, target_fpr, min_recall)
        entry["calibration"] = dict(cal, split=cal_split,
                                    clips="crossval" if cv is not None else cal_split)
        calibrated = defaults.with_overrides(threshold=cal["threshold"])
        for split, (ss, rows) in per_split.items():
            entry[split] = {"roc_auc": clip_auc(ss),
                            "defaults": metrics_at(ss, defaults, model.keyword),
                            "calibrated": metrics_at(ss, calibrated, model.keyword),
                            "long_table": {"defaults": long_audio_table(ss, defaults,
                                                                        model.keyword),
                                           "calibrated": long_audio_table(ss, calibrated,
                                                                          model.keyword)},
                            "det": rows}
        held = [ss for ss, _ in per_split.values()]
        heldout = dataclasses.replace(     # both held-out splits: their clips and long audio
            held[0], clip_items=[it for h in held for it in h.clip_items],
            clip_scores=[sc for h in held for sc in h.clip_scores],
            long_items=[it for h in held for it in h.long_items],
            long_scores=[sc for h in held for sc in h.long_scores],
            long_hours=sum(h.long_hours for h in held))
        # what fires, and what comes close: every detection at a threshold of at most 0.3
        near = defaults.with_overrides(threshold=min(0.3, defaults.threshold))
        top = top_false_accepts(heldout, near, model.keyword, top_n)
        for fa in top:
            fa["fires_at_defaults"] = fa["score"] >= defaults.threshold
        save_snippets(top, out_dir / "false_accepts" / _safe_name(name))
        cv_rows = cv["rows"] if cv is not None else None
        entry["heldout_long"] = {
            "splits": list(per_split), "hours": round(heldout.long_hours, 3),
            "defaults": long_audio_table(heldout, defaults, model.keyword),
            "calibrated": long_audio_table(heldout, calibrated, model.keyword),
            "top_false_accepts": top,
            "det_table": det_table(heldout, defaults, cv_rows, model.keyword,
                                   None if cv is None else
                                   sum(r["keyword_clips"] for r in cv["per_run"])
                                   // max(1, len(cv["seeds"])),
                                   also=(calibrated.threshold,))}
        has_kw = {split: any(it.role == "keyword" for it in ss.clip_items)
                  for split, (ss, _) in per_split.items()}
        last = "testing" if has_kw.get("testing") else cal_split
        entry["det_split"] = last
        curves[name] = per_split[last][1]
        if cv is not None:
            from .crossval import combined_rows, pooled_auc

            k = min(range(len(cv["rows"])),
                    key=lambda j: abs(cv["rows"][j]["threshold"] - cal["threshold"]))
            entry["crossval"] = {"threshold": cal["threshold"], "row": cv["rows"][k],
                                 "pooled_roc_auc": pooled_auc(cv), "summary": cv["summary"],
                                 "folds": cv["folds"], "seeds": cv["seeds"],
                                 "command": cv.get("command")}
            entry["det_split"] = "cross-validated clips, held-out long audio"
            curves[name] = combined_rows(cv, det_curve(heldout, defaults, model.keyword))
        if synthetic:
            entry["synthetic_speech"] = {
                "files": len(synthetic),
                **synthetic_speech_table(path, synthetic, {"defaults": defaults,
                                                           "calibrated": calibrated},
                                         syn_problems, model.keyword, profile, workers,
                                         progress),
                "skipped": sorted(syn_problems.skipped)}
        marks[name] = cal["threshold"]
        report["models"][name] = entry
    syn_problems.report()       # synthetic files missing or undecodable, one line each
    _write_clip_scores(out_dir / "clip_scores.csv", clip_table, list(report["models"]))
    report["clip_scores_csv"] = str(out_dir / "clip_scores.csv")
    det_png = out_dir / "det_curve.png"
    plot_det(curves, det_png, marks=marks)
    report["det_png"] = str(det_png)
    with open(out_dir / "report.json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    return report
