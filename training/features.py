"""Feature windows for training: computed in parallel, cached on disk.

This module computes no features itself: every window goes through
:meth:`kwsd.profiles.FeatureProfile.features`, the same function the daemon's streaming front
end is tested against. It only decides which windows each indexed item yields (see
:mod:`training.augment`), runs that on all cores with a progress bar, and caches the result
per item in ``WORKDIR/cache/`` under a key made of the profile dict, the file's content hash,
the segment, the augmentation settings, the seed and the noise/impulse-response files used.
Change any of them and the affected items are recomputed; nothing else is.

>>> # arrays = build_features(items, get_profile("logmel40"), AugmentConfig(), 0, "work/")
>>> # arrays["training"].x.shape  ->  (n, 49, 40)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from kwsd.profiles import FeatureProfile

from .augment import (AugmentConfig, NoiseBank, keyword_windows, long_windows,
                      plain_windows, word_windows)
from .data import Item, LoadProblems, load_audio

CACHE_VERSION = 3
_FINISH = ("gain_db", "noise_prob", "snr_db", "mic_prob", "overdrive_prob", "overdrive")
_COLOUR = ("speed_prob", "speed", "ir_prob", "rt60_s")
# the augmentation settings each role's windows depend on (see training.augment)
ROLE_SETTINGS = {
    "keyword": ("variants", "partials", "partial_head", "partial_tail", "cut_finals") + _COLOUR
               + _FINISH,
    "word": ("word_variants",) + _COLOUR + _FINISH,
    "long": ("long_windows_per_s", "onsets", "onset_s") + _FINISH,
    "noise": ("noise_windows_per_s", "quiet_share") + _FINISH,
}
# optional steps (probability setting, its parameters): while one is off, it is left out of
# the cache key, so caches made before the step existed stay valid
_OPTIONAL = (("mic_prob", ()), ("overdrive_prob", ("overdrive",)), ("cut_finals", ()))
KINDS = ("keyword", "partial", "word", "long", "noise", "silence", "mined")


@dataclasses.dataclass
class Arrays:
    """The windows of one split: features ``x`` [n, frames, coefs] (float16), labels ``y``,
    ``kind`` (index into :data:`KINDS`) and ``group`` (index of the item it came from)."""

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    group: np.ndarray

    def counts(self) -> dict:
        """Windows per kind and per label."""
        out = {k: int(np.sum(self.kind == i)) for i, k in enumerate(KINDS)}
        out["positive"] = int(np.sum(self.y == 1))
        out["negative"] = int(np.sum(self.y == 0))
        return out


def item_seed(seed: int, item: Item) -> int:
    """A per-item seed from the run's seed and the item's content (stable across runs)."""
    h = hashlib.sha256(f"{seed}|{item.sha1}|{item.path.rsplit(os.sep, 1)[-1]}|{item.start}"
                       .encode()).digest()
    return int.from_bytes(h[:8], "little")


def role_settings(aug: AugmentConfig, role: str) -> dict:
    """The augmentation settings the windows of a ``role`` depend on (optional steps that are
    off left out)."""
    out = {k: v for k, v in aug.to_dict().items() if k in ROLE_SETTINGS[role]}
    for prob, params in _OPTIONAL:
        if not out.get(prob):
            for k in (prob,) + params:
                out.pop(k, None)
    return out


def cache_key(profile: FeatureProfile, item: Item, aug: AugmentConfig, seed: int,
              bank_id: str) -> str:
    """The cache key of one item's windows (see module docs): only the augmentation
    settings its role uses count, so e.g. more long-recording windows recompute only those."""
    doc = {"v": CACHE_VERSION, "profile": profile.to_dict(), "sha1": item.sha1,
           "start": item.start, "end": item.end, "role": item.role, "split": item.split,
           "aug": (role_settings(aug, item.role)
                   if item.split == "training" else {"eval_hop_s": aug.eval_hop_s}),
           "seed": seed if item.split == "training" else 0,
           "bank": bank_id if item.split == "training" else ""}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def bank_identity(noise_items: list[Item], ir_files: list[str]) -> str:
    """A hash naming the noise and impulse-response material used for augmentation."""
    parts = sorted(f"{it.sha1}:{it.start}:{it.end}" for it in noise_items)
    parts += sorted(str(p) + ":" + _quick_sha1(p) for p in ir_files)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _quick_sha1(path) -> str:
    from .data import file_sha1

    return file_sha1(path)


# --------------------------------------------------------------------------- worker side

_STATE: dict = {}


def _init_worker(profile_dict, aug_dict, seed, noise_items, ir_files):
    profile = FeatureProfile.from_dict(profile_dict)
    problems = LoadProblems(stream=None)
    rate = profile.sample_rate
    noises = [load_audio(it["path"], rate, problems, it["start"], it["end"])
              for it in noise_items]
    irs = []
    for path in ir_files:
        ir = load_audio(path, rate, problems)
        if ir is not None:
            peak = np.argmax(np.abs(ir))
            irs.append((ir[peak:] / (np.abs(ir[peak]) + 1e-12)).astype(np.float32))
    _STATE.update(profile=profile, aug=AugmentConfig.from_dict(aug_dict), seed=seed,
                  bank=NoiseBank(noises), irs=irs)


def item_windows(item: Item, profile, aug, seed, bank, irs, problems):
    """The windows (samples, labels, kinds) one item yields; None if its audio is unusable."""
    rate, n = profile.sample_rate, profile.window_samples
    signal = load_audio(item.path, rate, problems, item.start, item.end)
    if signal is None:
        return None
    if item.split != "training":
        return plain_windows(signal, rate, n, item.role, aug.eval_hop_s)
    rng = np.random.default_rng(item_seed(seed, item))
    if item.role == "keyword":
        return keyword_windows(signal, rate, n, rng, aug, bank, irs)
    if item.role == "word":
        return word_windows(signal, rate, n, rng, aug, bank, irs)
    return long_windows(signal, rate, n, rng, aug, bank, kind=item.role)


def _job(args):
    index, item_dict, out_path = args
    st = _STATE
    problems = LoadProblems(stream=None)
    item = Item(**item_dict)
    windows = item_windows(item, st["profile"], st["aug"], st["seed"], st["bank"], st["irs"],
                           problems)
    if windows is None:
        return index, None, problems
    x = np.stack([st["profile"].features(w.samples) for w in windows]).astype(np.float16)
    y = np.array([w.label for w in windows], dtype=np.uint8)
    kind = np.array([KINDS.index(w.kind) for w in windows], dtype=np.uint8)
    tmp = out_path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, x=x, y=y, kind=kind)
    os.replace(tmp, out_path)
    return index, out_path, problems


# --------------------------------------------------------------------------- driver side

def build_features(items: list[Item], profile: FeatureProfile, aug: AugmentConfig, seed: int,
                   workdir, ir_files=(), workers: int | None = None, progress: bool = True,
                   problems: LoadProblems | None = None) -> dict[str, Arrays]:
    """Windows and features of every item, per split (``training``/``validation``/``testing``).

    Cached items are read back; the rest are computed in ``workers`` processes (default:
    all cores) with a progress bar. Unusable files are skipped and recorded in ``problems``.
    """
    from .progress import bar as progress_bar

    problems = problems if problems is not None else LoadProblems()
    cache = Path(workdir) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    noise_items = [it for it in items if it.role == "noise" and it.split == "training"]
    ir_files = [str(p) for p in ir_files]
    bank_id = bank_identity(noise_items, ir_files)
    paths, todo = [], []
    for i, item in enumerate(items):
        path = cache / f"{cache_key(profile, item, aug, seed, bank_id)}.npz"
        paths.append(str(path))
        if not path.exists():
            todo.append((i, item.to_dict(), str(path)))
    failed = set()
    if todo:
        init = (profile.to_dict(), aug.to_dict(), seed,
                [it.to_dict() for it in noise_items], ir_files)
        workers = workers or os.cpu_count() or 1
        bar = progress_bar(None, progress, total=len(todo), desc=f"features ({profile.name})",
                           unit="file")
        if workers == 1:
            _init_worker(*init)
            results = map(_job, todo)
            pool = None
        else:
            # spawn: safe even when TensorFlow (threads) is already imported
            pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, init)
            results = pool.imap_unordered(_job, todo, chunksize=4)
        try:
            for index, out, worker_problems in results:
                problems.merge(worker_problems)
                if out is None:
                    failed.add(index)
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
    out: dict[str, Arrays] = {}
    for split in ("training", "validation", "testing"):
        xs, ys, ks, gs = [], [], [], []
        for i, item in enumerate(items):
            if item.split != split or i in failed or not os.path.exists(paths[i]):
                continue
            with np.load(paths[i]) as z:
                xs.append(z["x"])
                ys.append(z["y"])
                ks.append(z["kind"])
                gs.append(np.full(len(z["y"]), i, dtype=np.int32))
        if xs:
            out[split] = Arrays(np.concatenate(xs), np.concatenate(ys), np.concatenate(ks),
                                np.concatenate(gs))
        else:
            shape = (0, profile.frames_per_window, profile.ncoef)
            out[split] = Arrays(np.zeros(shape, np.float16), np.zeros(0, np.uint8),
                                np.zeros(0, np.uint8), np.zeros(0, np.int32))
    return out


def to_model_input(x: np.ndarray, profile: FeatureProfile) -> np.ndarray:
    """``[n, frames, coefs]`` features -> the model's float32 input batch (layout applied)."""
    x = np.asarray(x, dtype=np.float32)
    if profile.layout == "coef_time":
        x = np.swapaxes(x, 1, 2)
    return x[..., np.newaxis]


# --------------------------------------------------------------------------- dense windows

def _stream_job(args):
    item_dict, profile_dict, hop_s, out_path = args
    from kwsd.frontend import FeatureStream

    profile = FeatureProfile.from_dict(profile_dict)
    problems = LoadProblems(stream=None)
    item = Item(**item_dict)
    signal = load_audio(item.path, profile.sample_rate, problems, item.start, item.end)
    if signal is None:
        return out_path, problems
    windows = FeatureStream(profile, profile.sample_rate, hop_s).push(signal)
    x = (np.stack([w.features for w in windows]) if windows else
         np.zeros((0, profile.frames_per_window, profile.ncoef))).astype(np.float16)
    tmp = out_path + f".tmp{os.getpid()}.npy"
    np.save(tmp, x)
    os.replace(tmp, out_path)
    return out_path, problems


def stream_features(items: list[Item], profile: FeatureProfile, hop_s: float, workdir,
                    workers: int | None = None, progress: bool = True) -> list[Path]:
    """Every ``hop_s`` window of each item's audio, as the daemon's streaming front end
    (:class:`kwsd.frontend.FeatureStream`) produces them, cached like :func:`build_features`:
    one ``.npy`` file (float16, windows x frames x coefficients) per item that could be read,
    in the items' order. Files, not one array: the training split's long audio streams to
    about 180,000 windows (1 GB for a 1.5 s profile), which a caller can read one file at a
    time (:func:`training.train.mine_hard_negatives`). Used to mine the hard negatives a
    model fires on in long recordings."""
    from .progress import bar

    cache = Path(workdir) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = []
    for item in items:
        doc = {"v": CACHE_VERSION, "stream": hop_s, "profile": profile.to_dict(),
               "sha1": item.sha1, "start": item.start, "end": item.end}
        key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        jobs.append((item.to_dict(), profile.to_dict(), hop_s, str(cache / f"{key}.npy")))
    todo = [j for j in jobs if not os.path.exists(j[3])]
    if todo:
        workers = min(workers or os.cpu_count() or 1, len(todo))
        with bar(None, progress, total=len(todo), desc="streamed windows", unit="file") as b:
            if workers == 1:
                for _ in map(_stream_job, todo):
                    b.update(1)
            else:
                with multiprocessing.get_context("spawn").Pool(workers) as pool:
                    for _ in pool.imap_unordered(_stream_job, todo, chunksize=4):
                        b.update(1)
    return [Path(j[3]) for j in jobs if os.path.exists(j[3])]
