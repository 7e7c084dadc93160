"""Captures: the audio around what fired, or nearly fired, saved for labelling.

Opt-in (config ``capture:``): these are recordings of someone's home. Three small parts:

* :class:`MomentPicker` (pure) decides *what* to save from the decision thread's hop
  records: one moment per detection, and one per **near miss** (a run of hops whose smoothed
  score is ``>= near_miss`` but below the threshold, at most one per refractory period). Each
  moment is placed at its **peak** (the highest smoothed score of its run), and is handed
  out only once ``after_s`` of audio past the peak has arrived.
* :class:`RecentAudio` keeps the last few seconds of device audio (fed by the audio tap on
  the feature thread) so the decision thread can cut ``before_s``/``after_s`` around a peak.
* :class:`CaptureWriter` writes on its own thread, fed by a bounded queue that never blocks
  the caller (full: the capture is dropped and counted): FLAC at the model's rate plus a JSON
  sidecar, files ``0600`` in ``DIR/unlabelled/``, oldest deleted first to stay under
  ``max_mb``. A full or read-only disk is logged once (and once more when it recovers) and
  never raises into the caller: detection goes on.

A person labels a capture by moving its ``.flac`` (and sidecar) to ``DIR/stop/`` or
``DIR/other/`` (:func:`label_capture`, ``kwsd captures``); ``kwsd-train prepare --captures
DIR`` trains on them. Labelled files are the user's: the cap never deletes them.

>>> p = MomentPicker(threshold=0.8, near_miss=0.4, refractory_s=1.0, after_s=0.5)
>>> hops = [(0.1, 0.1), (0.2, 0.5), (0.3, 0.6), (0.4, 0.2), (0.5, 0.1), (0.6, 0.1),
...         (0.7, 0.1), (0.8, 0.1), (0.9, 0.1)]
>>> [m for t, s in hops for m in p.update(t, s)]
[Moment(kind='near_miss', time=0.3, score=0.6, detection_time=None)]
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .ring import History

log = logging.getLogger("kwsd.captures")

#: Sub-folders of the capture directory.
UNLABELLED, POSITIVE, NEGATIVE = "unlabelled", "stop", "other"
LABELS = (POSITIVE, NEGATIVE)


@dataclass(frozen=True)
class CaptureSettings:
    """What to save and where (config ``capture:``).

    Attributes:
        dir: the capture directory (``unlabelled/``, ``stop/`` and ``other/`` below it).
        detections: save the audio around every detection.
        near_miss: also save near misses with a smoothed score ``>=`` this (None: don't).
        max_mb: ``unlabelled/`` is kept under this many megabytes (oldest deleted first).
        before_s, after_s: seconds of audio saved before and after the peak.
    """

    dir: str
    detections: bool = True
    near_miss: float | None = 0.4
    max_mb: float = 200.0
    before_s: float = 1.5
    after_s: float = 0.5


@dataclass(frozen=True)
class Moment:
    """A moment worth saving: ``kind`` ``"detection"`` or ``"near_miss"``; ``time`` and
    ``score`` are the peak's stream time and smoothed score; ``detection_time`` is when the
    detector fired (None for a near miss)."""

    kind: str
    time: float
    score: float
    detection_time: float | None = None


class MomentPicker:
    """Hop records in, :class:`Moment` objects out (see module docs). Pure: no clock.

    Feed every hop's stream time, smoothed score and whether the detector fired on it;
    :meth:`update` returns the moments whose ``after_s`` has now passed.

    Args:
        threshold: the detector's threshold.
        near_miss: the near-miss score (None or ``>= threshold``: no near misses).
        refractory_s: near misses closer than this to the previous one (or to a
            detection) are not saved.
        after_s: how long after a peak its moment is handed out (the audio to save).
        detections: False to hand out no detection moments.
    """

    def __init__(self, threshold: float, near_miss: float | None, refractory_s: float,
                 after_s: float = 0.5, detections: bool = True):
        self.threshold = threshold
        self.near_miss = near_miss if near_miss is not None and near_miss < threshold else None
        self.refractory_s = refractory_s
        self.after_s = after_s
        self.detections = detections
        self._run = None            # [kind, peak time, peak score, detection time]
        self._last = None           # stream time of the last moment (either kind)

    def reset(self):
        """A gap in the audio: the current run is dropped."""
        self._run = None

    def update(self, time: float, smoothed: float, detected: bool = False) -> list:
        """Add one hop; return the moments completed by it (usually none)."""
        out = []
        run = self._run
        if run is not None and run[0] == "detection":
            if detected:                          # a new detection: the old one is done
                out += self._close(run)
            elif smoothed >= self.threshold and smoothed > run[2] and not self._due(run, time):
                run[1], run[2] = time, smoothed   # still climbing: the peak moves
                return out
            elif self._due(run, time):
                out += self._close(run)
                self._run = None
            else:
                return out
        if detected:                              # a near miss that rose into a detection
            self._run = ["detection", time, smoothed, time]    # is part of the detection
            return out
        run = self._run
        near = self.near_miss is not None and self.near_miss <= smoothed < self.threshold
        if run is not None:                       # a near-miss run
            if smoothed >= self.threshold:        # above threshold without firing
                self._run = None                  # (the detector's refractory): not a miss
                return out
            if near and smoothed > run[2]:
                run[1], run[2] = time, smoothed
                return out
            if not self._due(run, time):
                return out
            out += self._close(run)
            self._run = None
        if near and not self._refractory(time):
            self._run = ["near_miss", time, smoothed, None]
        return out

    def _due(self, run, time) -> bool:
        return time - run[1] >= self.after_s - 1e-9

    def _refractory(self, time) -> bool:
        return self._last is not None and time - self._last < self.refractory_s

    def _close(self, run) -> list:
        kind, peak, score, det = run
        if kind == "near_miss" and self._refractory(peak):
            return []
        self._last = peak if kind == "near_miss" else max(peak, self._last or peak)
        if kind == "detection" and not self.detections:
            return []
        return [Moment(kind, round(peak, 6), round(score, 6),
                       None if det is None else round(det, 6))]


class RecentAudio:
    """The last ``seconds`` of mono device audio, with stream times; thread-safe (one
    writer: the audio tap; readers: the decision thread).

    >>> r = RecentAudio(seconds=2.0)
    >>> r.push(np.arange(16000, dtype=np.float32), start_time=0.0, rate=8000)
    >>> samples, start, rate = r.cut(1.0, 1.5)
    >>> len(samples), start, rate
    (4000, 1.0, 8000)
    """

    def __init__(self, seconds: float = 4.0):
        self.seconds = float(seconds)
        self._lock = threading.Lock()
        self._rate = None
        self._history = None              # kwsd.ring.History at the current rate
        self._end_time = 0.0              # stream time just past the newest sample

    def push(self, samples, start_time: float, rate: int):
        """Add mono samples whose first one is at ``start_time`` (a new rate, or a jump in
        time, starts over: the audio had a gap)."""
        x = np.asarray(samples, np.float32).reshape(-1, 1)
        with self._lock:
            if rate != self._rate or abs(start_time - self._end_time) > 1.5 / rate:
                self._rate = int(rate)
                self._history = History(int(self.seconds * rate))
            self._history.write(x)
            self._end_time = start_time + x.shape[0] / rate

    def cut(self, start_time: float, end_time: float):
        """``(samples, actual start time, rate)`` for ``start_time..end_time``, clipped to
        what is held (None when nothing is)."""
        with self._lock:
            if self._rate is None or self._history.written == 0:
                return None
            rate, h = self._rate, self._history
            held = h.held
            first_time = self._end_time - held / rate
            a = max(0, int(round((start_time - first_time) * rate)))
            b = min(held, int(round((end_time - first_time) * rate)))
            if b <= a:
                return None
            start = h.written - held + a          # absolute sample index
            return h.span(start, start + (b - a))[:, 0], round(first_time + a / rate, 6), rate


def capture_stem(wall_time: float, kind: str, score: float) -> str:
    """File name stem: sorts by time, says what it was.

    >>> capture_stem(0.0, "near_miss", 0.61)
    '19700101T000000.000Z-near_miss-0.61'
    """
    t = datetime.datetime.fromtimestamp(wall_time, datetime.timezone.utc)
    return t.strftime("%Y%m%dT%H%M%S.") + f"{t.microsecond // 1000:03d}Z-{kind}-{score:.2f}"


def _open_private(path):
    """A new file opened for writing with mode 0600 (whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


class CaptureWriter:
    """Writes captures on its own thread (see module docs).

    Args:
        settings: :class:`CaptureSettings`.
        out_rate: the model's sample rate (captures are saved at it).
        queue_size: captures waiting to be written before new ones are dropped.
        start: False to start the writer thread later (:meth:`start`).

    Counters: ``written``, ``dropped`` (queue full), ``failed`` (disk errors), ``deleted``
    (by the cap).
    """

    def __init__(self, settings: CaptureSettings, out_rate: int, queue_size: int = 16,
                 start: bool = True):
        self.settings = settings
        self.out_rate = int(out_rate)
        self.root = Path(settings.dir)
        self.folder = self.root / UNLABELLED
        self.written = self.dropped = self.failed = self.deleted = 0
        self._failing = False
        self._queue = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name="kwsd-captures", daemon=True)
        if start:
            self.start()

    def start(self):
        """Start the writer thread."""
        self._thread.start()

    def submit(self, samples, rate: int, record: dict) -> bool:
        """Queue one capture (mono samples at ``rate``, sidecar ``record``); never blocks.
        False when it was dropped because the queue is full."""
        try:
            self._queue.put_nowait((samples, int(rate), dict(record)))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout: float = 5.0):
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def flush(self):
        """Block until everything queued so far is written (tests, shutdown)."""
        self._queue.join()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception:  # noqa: BLE001 - never let the writer die
                log.exception("captures: unexpected error")
            finally:
                self._queue.task_done()

    def _write(self, samples, rate, record):
        try:
            flac = write_capture(self.folder, samples, rate, self.out_rate, record)
        except (OSError, RuntimeError) as exc:     # soundfile raises RuntimeError subclasses
            self.failed += 1
            if not self._failing:
                self._failing = True
                log.warning("captures: cannot write to %s (%s); detection goes on, "
                            "captures are dropped until it can", self.folder,
                            getattr(exc, "strerror", None) or exc,
                            extra={"kwsd_event": "capture_failed", "kwsd_dir": str(self.folder),
                                   "kwsd_reason": str(exc)})
            return
        self.written += 1
        if self._failing:
            self._failing = False
            log.info("captures: writing to %s again", self.folder,
                     extra={"kwsd_event": "capture_recovered", "kwsd_dir": str(self.folder)})
        log.info("captured %s (%s, score %.3f)", flac.name, record.get("kind"),
                 float(record.get("score", 0.0)),
                 extra={"kwsd_event": "captured", "kwsd_file": str(flac),
                        "kwsd_kind": record.get("kind", "")})
        self._enforce_cap(keep=flac.name)

    def _enforce_cap(self, keep):
        """Delete the oldest unlabelled captures until the folder is under ``max_mb``."""
        limit = self.settings.max_mb * 1e6
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix in (".flac", ".json"))
            sizes = {p: p.stat().st_size for p in files}
        except OSError:
            return
        total = sum(sizes.values())
        stems = sorted({p.stem for p in files})
        for stem in stems:
            if total <= limit or stem + ".flac" == keep:
                break
            for p in (self.folder / (stem + ".flac"), self.folder / (stem + ".json")):
                if p in sizes:
                    try:
                        p.unlink()
                        total -= sizes[p]
                    except OSError:
                        pass
            self.deleted += 1


def write_capture(folder, samples, rate: int, out_rate: int, record: dict) -> Path:
    """Write one capture into ``folder``: mono ``samples`` at ``rate`` resampled to
    ``out_rate`` (the front end's resampler), as 16-bit FLAC plus a JSON sidecar (``record``
    with ``rate``, ``seconds`` and ``file`` added), both mode 0600, each renamed into place
    whole. Returns the ``.flac`` path; raises ``OSError`` (or soundfile's ``RuntimeError``)
    and leaves no partial file when the disk refuses."""
    import soundfile as sf

    from .frontend import resample_signal

    folder = Path(folder)
    x = np.asarray(samples, np.float64).reshape(-1)
    if rate != out_rate:
        x = resample_signal(x, rate, out_rate)
    x = np.clip(x, -1.0, 1.0)
    stem = capture_stem(record.get("wall_time", 0.0), record.get("kind", "capture"),
                        float(record.get("score", 0.0)))
    for n in range(1, 100):                 # never over an earlier capture of the same name
        if not (folder / (stem + ".flac")).exists():
            break
        stem = stem.rsplit("~", 1)[0] + f"~{n}"
    record = dict(record, rate=int(out_rate), seconds=round(x.size / out_rate, 3),
                  file=stem + ".flac")
    flac, side = folder / (stem + ".flac"), folder / (stem + ".json")
    tmp_flac, tmp_side = flac.with_suffix(".flac.tmp"), side.with_suffix(".json.tmp")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _open_private(tmp_flac) as fh:
            sf.write(fh, x, int(out_rate), format="FLAC", subtype="PCM_16")
        with _open_private(tmp_side) as fh:
            fh.write(json.dumps(record, indent=1, sort_keys=True).encode() + b"\n")
        os.replace(tmp_side, side)
        os.replace(tmp_flac, flac)
    except BaseException:
        for p in (tmp_flac, tmp_side):
            try:
                p.unlink()
            except OSError:
                pass
        raise
    return flac


def list_captures(root, labels=(UNLABELLED,) + LABELS) -> list:
    """``[(label, flac path, sidecar dict or {})]`` under ``root``, oldest first per label."""
    out = []
    for label in labels:
        folder = Path(root) / label
        if not folder.is_dir():
            continue
        for flac in sorted(folder.glob("*.flac")):
            side = flac.with_suffix(".json")
            try:
                record = json.loads(side.read_text())
            except (OSError, ValueError):
                record = {}
            out.append((label, flac, record))
    return out


def label_capture(flac, label: str) -> Path:
    """Move a capture (``.flac`` and its ``.json`` sidecar) to the ``label`` folder
    (``"stop"``, ``"other"`` or ``"unlabelled"``) beside its current one; returns the new
    ``.flac`` path. Moving it where it already is does nothing."""
    if label not in LABELS + (UNLABELLED,):
        raise ValueError(f"label must be one of {', '.join(LABELS + (UNLABELLED,))}, "
                         f"not {label!r}")
    flac = Path(flac)
    target = flac.parent.parent / label
    if target == flac.parent:
        return flac
    target.mkdir(mode=0o700, exist_ok=True)
    side = flac.with_suffix(".json")
    if side.exists():
        os.replace(side, target / side.name)
    os.replace(flac, target / flac.name)
    return target / flac.name


def moment_record(moment: Moment, *, wall_time: float, threshold: float, model: str,
                  model_sha256: str, device: str, role: str = "live") -> dict:
    """The sidecar of one capture."""
    d = asdict(moment)
    d.update(wall_time=round(wall_time, 3),
             time_utc=datetime.datetime.fromtimestamp(wall_time, datetime.timezone.utc)
             .isoformat(timespec="milliseconds"),
             threshold=threshold, model=model, model_sha256=model_sha256, device=device,
             role=role)
    return d
