"""Finding, splitting and loading training audio.

Three kinds of source, all indexed into one list of :class:`Item` records:

* **Speech Commands layout** (:func:`scan_speech_commands`): one folder per word, files named
  ``SPEAKER_nohash_N.wav``, a ``_background_noise_/`` folder of long noise recordings, other
  ``_name_/`` folders of long speech (as ``kwsd-train synth`` writes), and optionally
  ``validation_list.txt`` / ``testing_list.txt``. Without the lists, the corpus's own
  rule (:func:`which_set`: SHA-1 of the speaker id -> a percentage) splits by speaker, so one
  voice never lands on both sides.
* **Long recordings** (:func:`scan_long_recordings`): any folder of audio files (read speech,
  home recordings, noise) that holds no keyword; cut into windows as negatives.
* **Noise** (``_background_noise_`` and ``--noise`` folders): long files split by time into
  training / validation / testing segments, used both as negatives and to mix into clips.

Audio is read with :func:`kwsd.audiofile.read_audio` and converted with the core's resampler
(:func:`load_audio`); a file that cannot be used is skipped, counted and named in a warning
(:class:`LoadProblems`), never a crash.

>>> which_set("stop/0a7c2a8d_nohash_0.wav", 10, 10)
'training'
>>> fit_window(np.ones(3, np.float32), 5).tolist()
[0.0, 1.0, 1.0, 1.0, 0.0]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from kwsd.audiofile import read_audio, to_mono
from kwsd.errors import EX_DATAERR, AudioFileError, PathError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3")
SPLITS = ("training", "validation", "testing")
BACKGROUND_NOISE_DIR = "_background_noise_"
MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # the Speech Commands README's constant


class DatasetError(PathError):
    """A data folder that cannot be used at all (missing, no audio, no keyword clips)."""

    exit_status = EX_DATAERR


@dataclasses.dataclass
class Item:
    """One indexed piece of audio.

    ``role`` is ``"keyword"`` (a clip of the keyword), ``"word"`` (a clip of another word),
    ``"long"`` (a long recording with no keyword) or ``"noise"`` (background noise);
    ``start``/``end`` (seconds) select a segment of the file (``end`` None: to its end).
    """

    path: str
    role: str
    split: str
    speaker: str = ""
    word: str = ""
    source: str = ""
    start: float = 0.0
    end: float | None = None
    sha1: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict (see :func:`save_index`)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- splitting

def speaker_of(filename) -> str:
    """The speaker id of a Speech Commands file name: the part before ``_nohash_``.

    >>> speaker_of("stop/0a7c2a8d_nohash_1.wav")
    '0a7c2a8d'
    >>> speaker_of("long/103-1240-0000.flac")
    '103-1240-0000'
    """
    base = os.path.basename(os.fspath(filename))
    stem = os.path.splitext(base)[0]
    return re.sub(r"_nohash_.*$", "", stem)


def hash_percentage(speaker: str, salt: str = "") -> float:
    """The Speech Commands rule's percentage in [0, 100) for a speaker id (``salt`` prefixed)."""
    digest = hashlib.sha1((salt + speaker).encode("utf-8")).hexdigest()
    return (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)


def which_set(filename, validation_percentage: float, testing_percentage: float,
              salt: str = "") -> str:
    """The corpus's own split rule (from the Speech Commands README): ``training``,
    ``validation`` or ``testing``, decided by a hash of the speaker id only, so all clips of
    one speaker land on the same side. ``salt`` (default none: the corpus's exact rule)
    re-draws the split for data that is itself one side of the corpus's split.
    """
    percentage = hash_percentage(speaker_of(filename), salt)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "testing"
    return "training"


def _read_list(path: Path) -> set[str]:
    with open(path, encoding="utf-8") as fh:
        return {line.strip().replace("\\", "/") for line in fh if line.strip()}


def file_sha1(path, chunk=1 << 20) -> str:
    """SHA-1 of a file's bytes: the content key of the feature cache."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _audio_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
                yield Path(dirpath) / name


def _noise_items(files, validation_percentage, testing_percentage, source, seconds_of) -> list:
    """Split each long noise file by time: the first part trains, then validation, testing."""
    items = []
    v, t = validation_percentage / 100.0, testing_percentage / 100.0
    for path in files:
        duration = seconds_of(path)
        if duration is None:
            continue
        cut1 = duration * (1.0 - v - t)
        cut2 = duration * (1.0 - t)
        for split, start, end in (("training", 0.0, cut1), ("validation", cut1, cut2),
                                  ("testing", cut2, duration)):
            if end - start >= 1.0:
                items.append(Item(str(path), "noise", split, speaker=path.stem,
                                  source=source, start=round(start, 3), end=round(end, 3)))
    return items


def _duration_or_none(path, problems):
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.frames <= 0:
            raise RuntimeError("the file holds no audio samples")
        return info.frames / info.samplerate
    except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and counted
        problems.skip(path, f"cannot read audio ({exc})".replace(str(path), "").strip())
        return None


def scan_speech_commands(root, keyword: str, validation_percentage=10.0,
                         testing_percentage=10.0, salt: str | None = None,
                         problems: "LoadProblems | None" = None,
                         clips_required: bool = True) -> list[Item]:
    """Index a folder in the Speech Commands layout.

    Word folders become ``keyword``/``word`` items; ``_background_noise_`` files become
    ``noise`` items split by time. With ``validation_list.txt`` / ``testing_list.txt`` present
    the lists decide the split, otherwise :func:`which_set` does (``salt`` None: the corpus's
    rule, falling back to a salted rule when that rule puts all speakers on one side, as it
    does for a folder that is itself one side of the corpus's split). A folder without word
    clips is refused unless ``clips_required`` is false and it holds long audio (a
    ``kwsd-train synth`` folder of music or speech only).
    """
    root = Path(root)
    problems = problems if problems is not None else LoadProblems()
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected a folder with one sub-folder per word)")
    source = root.name
    clips = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if word_dir.name.startswith((".", "_")):
            continue
        for path in _audio_files(word_dir):
            rel = path.relative_to(root).as_posix()
            clips.append((rel, path, word_dir.name))
    has_long = any(p.is_dir() and p.name.startswith("_") and p.name != BACKGROUND_NOISE_DIR
                   and any(_audio_files(p)) for p in root.iterdir())
    if not clips and (clips_required or not has_long):
        raise DatasetError(root, "no audio clips in word sub-folders "
                                 "(expected e.g. stop/SPEAKER_nohash_0.wav)")
    loose = sorted(p.name for p in root.iterdir()
                   if p.is_file() and p.name.lower().endswith(AUDIO_EXTENSIONS))
    if loose:
        problems.warn(f"{root}: {len(loose)} audio file(s) at the top of the folder are not "
                      f"used ({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}): a "
                      f"clip goes in the folder named after its word, e.g. {keyword}/")
    val_list, test_list = root / "validation_list.txt", root / "testing_list.txt"
    if val_list.exists() or test_list.exists():
        val = _read_list(val_list) if val_list.exists() else set()
        test = _read_list(test_list) if test_list.exists() else set()

        def split_of(rel):
            return "validation" if rel in val else "testing" if rel in test else "training"
        rule = f"lists ({val_list.name}, {test_list.name})"
    else:
        if salt is None:
            # The corpus's own rule, unless it leaves a requested side without keyword
            # clips: then the folder is one part of the corpus (e.g. its test set, whose
            # speakers all hash into 10-20%) and the rule is re-drawn with a salt.
            wanted = {"training"} | ({"validation"} if validation_percentage > 0 else set()) \
                | ({"testing"} if testing_percentage > 0 else set())
            kw = [rel for rel, _, w in clips if w == keyword]
            got = {which_set(rel, validation_percentage, testing_percentage) for rel in kw}
            salt = "" if not kw or wanted <= got else "kwsd"
            if salt:
                problems.warn(f"{root}: the corpus's speaker-hash rule puts the {keyword!r} "
                              f"clips only in {', '.join(sorted(got))} (this folder is one part "
                              f"of the corpus's own split); splitting by the same rule with "
                              f"salt 'kwsd'")

        def split_of(rel):
            return which_set(rel, validation_percentage, testing_percentage, salt)
        rule = f"speaker hash (sha1{' salt ' + repr(salt) if salt else ''}, " \
               f"{validation_percentage}% validation, {testing_percentage}% testing)"
    items = []
    for rel, path, word in clips:
        role = "keyword" if word == keyword else "word"
        items.append(Item(str(path), role, split_of(rel), speaker=speaker_of(rel), word=word,
                          source=source))
    # other _folders_ (e.g. the synthesiser's _speech_/) hold long speech: negatives
    for extra in sorted(p for p in root.iterdir() if p.is_dir()):
        if extra.name.startswith("_") and extra.name != BACKGROUND_NOISE_DIR:
            for path in _audio_files(extra):
                items.append(Item(str(path), "long", which_set(path.name, validation_percentage,
                                                               testing_percentage, salt),
                                  speaker=speaker_of(path.name), word=extra.name,
                                  source=source + "/" + extra.name))
    noise_dir = root / BACKGROUND_NOISE_DIR
    if noise_dir.is_dir():
        items += _noise_items(list(_audio_files(noise_dir)), validation_percentage,
                              testing_percentage, source + "/" + BACKGROUND_NOISE_DIR,
                              lambda p: _duration_or_none(p, problems))
    problems.note_rule(str(root), rule)
    return items


def scan_long_recordings(root, validation_percentage=10.0, testing_percentage=10.0,
                         salt: str = "kwsd-long", problems: "LoadProblems | None" = None
                         ) -> list[Item]:
    """Index a folder (recursively) of recordings that hold no keyword, one item per file.

    Files are split whole by the hash rule on their speaker id (``SPEAKER-...`` for
    LibriSpeech names, else the file stem), so held-out files give honest false accepts/hour.
    """
    root = Path(root)
    problems = problems if problems is not None else LoadProblems()
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected a folder of audio recordings)")
    items = []
    for path in _audio_files(root):
        speaker = path.stem.split("-")[0] if re.match(r"^\d+-\d+", path.stem) else path.stem
        items.append(Item(str(path), "long", which_set(speaker, validation_percentage,
                                                        testing_percentage, salt),
                          speaker=speaker, word=path.parent.name,
                          source=root.name))
    if not items:
        raise DatasetError(root, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the folder")
    return items


def scan_captures(root, keyword: str, validation_percentage=10.0, testing_percentage=10.0,
                  weight: int = 4, salt: str = "kwsd-captures",
                  problems: "LoadProblems | None" = None) -> list[Item]:
    """Index the labelled captures of a kwsd capture folder (``kwsd captures``, config
    ``capture.dir``): the keyword's folder (``stop/``) as keyword clips, ``other/`` as hard
    negatives; ``unlabelled/`` is ignored.

    Captures are split like everything else, by the hash rule on each file's content hash
    (one recording never lands on both sides). Hard negatives are what this room's model
    fired or nearly fired on, so each training one is used ``weight`` times, each copy cut
    10 ms later so it gets its own augmentation (``source`` is ``captures``).
    """
    from kwsd.captures import NEGATIVE

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected a kwsd capture folder with stop/ "
                                 "and other/ sub-folders)")
    folders = {keyword: ("keyword", keyword), NEGATIVE: ("word", NEGATIVE)}
    items = []
    for name, (role, word) in folders.items():
        for path in _audio_files(root / name) if (root / name).is_dir() else ():
            digest = file_sha1(path)
            split = which_set(digest, validation_percentage, testing_percentage, salt)
            item = Item(str(path), role, split, speaker=digest[:12], word=word,
                        source="captures", sha1=digest)
            items += repeat_items([item], weight if role == "word" and split == "training" else 1)
    if not items:
        raise DatasetError(root, f"no labelled captures (expected audio files in "
                                 f"{root / keyword}/ or {root / NEGATIVE}/; move captures "
                                 f"there from unlabelled/ or use `kwsd captures`)")
    if problems is not None:
        problems.note_rule(str(root), f"capture content hash (sha1 salt {salt!r}, "
                                      f"{validation_percentage}% validation, "
                                      f"{testing_percentage}% testing)")
    return items


def repeat_items(items: list[Item], copies: int) -> list[Item]:
    """Each item ``copies`` times (at least once), copy ``k`` starting ``10 * k`` ms later:
    every copy gets its own cache entry and so its own augmentation. How the trainer weights
    scarce, valuable audio (hard-negative captures, real keyword clips) without new code in
    the training loop.

    >>> [it.start for it in repeat_items([Item("a.wav", "keyword", "training")], 3)]
    [0.0, 0.01, 0.02]
    """
    return [dataclasses.replace(it, start=round(it.start + 0.01 * k, 2))
            for it in items for k in range(max(1, int(copies)))]


def capture_counts(items: list[Item]) -> dict:
    """How many distinct capture files each role and split holds (for reports)."""
    out = {}
    for it in items:
        if it.source == "captures":
            key = "stop" if it.role == "keyword" else "other"
            out.setdefault(key, {}).setdefault(it.split, set()).add(it.path)
    return {k: {s: len(v) for s, v in d.items()} for k, d in out.items()}


def scan_noise(root, validation_percentage=10.0, testing_percentage=10.0,
               problems: "LoadProblems | None" = None) -> list[Item]:
    """Index a folder of noise recordings, each file split by time (see module docstring)."""
    root = Path(root)
    problems = problems if problems is not None else LoadProblems()
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected a folder of noise recordings)")
    files = list(_audio_files(root))
    if not files:
        raise DatasetError(root, "no audio files in the folder")
    return _noise_items(files, validation_percentage, testing_percentage, root.name,
                        lambda p: _duration_or_none(p, problems))


# --------------------------------------------------------------------------- loading

class LoadProblems:
    """Counts and names files that were converted or skipped; prints one warning per kind.

    >>> p = LoadProblems(stream=None)
    >>> p.skip("a.wav", "empty"); p.convert("b.wav", "stereo -> mono")
    >>> p.summary()
    {'skipped': 1, 'converted': 1}
    """

    def __init__(self, stream="stderr"):
        self._stream = stream
        self.skipped: dict[str, str] = {}
        self.converted: dict[str, list[str]] = {}
        self.rules: dict[str, str] = {}
        self.messages: list[str] = []

    @property
    def stream(self):
        """Where warnings go: ``sys.stderr`` as it is when printing (default), or None."""
        return sys.stderr if self._stream == "stderr" else self._stream

    def skip(self, path, reason):
        """Record a file that cannot be used."""
        self.skipped[str(path)] = str(reason).replace(f"'{path}'", "the file")

    def convert(self, path, what):
        """Record a conversion (rate, channels, sample width) applied to a file."""
        self.converted.setdefault(str(path), []).append(what)

    def warn(self, message):
        """Record and print a warning."""
        self.messages.append(message)
        if self.stream:
            print(f"warning: {message}", file=self.stream)

    def note_rule(self, root, rule):
        """Remember which split rule was used for a data folder."""
        self.rules[root] = rule

    def merge(self, other: "LoadProblems"):
        """Fold in the records of another instance (e.g. from a worker process)."""
        self.skipped.update(other.skipped)
        for k, v in other.converted.items():
            self.converted.setdefault(k, []).extend(x for x in v if x not in
                                                    self.converted.get(k, []))

    def summary(self) -> dict:
        """Counts, for reports."""
        return {"skipped": len(self.skipped), "converted": len(self.converted)}

    def report(self):
        """Print one warning line per skipped file and a count of converted ones."""
        if not self.stream:
            return
        for path, reason in sorted(self.skipped.items()):
            print(f"warning: skipped {path}: {reason}", file=self.stream)
        if self.skipped:
            print(f"warning: {len(self.skipped)} file(s) skipped", file=self.stream)
        if self.converted:
            kinds = sorted({w for v in self.converted.values() for w in v})
            print(f"note: {len(self.converted)} file(s) converted ({'; '.join(kinds)})",
                  file=self.stream)


def load_audio(path, rate: int, problems: LoadProblems | None = None, start: float = 0.0,
               end: float | None = None) -> np.ndarray | None:
    """A file (or its ``start``..``end`` seconds) as mono float32 at ``rate``, or None.

    Stereo is mixed to mono, 8-bit and other sample formats become float, other rates are
    resampled with the core's resampler; each conversion is recorded in ``problems``.
    Unreadable, corrupt or empty files (and files that are all zeros) return None and are
    recorded as skipped.
    """
    from kwsd.frontend import resample_signal

    problems = problems if problems is not None else LoadProblems(stream=None)
    try:
        samples, file_rate = read_audio(path)
    except AudioFileError as exc:
        problems.skip(path, exc.reason)
        return None
    if samples.shape[1] > 1:
        problems.convert(path, f"{samples.shape[1]} channels -> mono")
    mono = np.ascontiguousarray(to_mono(samples), dtype=np.float32)
    first = int(round(start * file_rate))
    last = len(mono) if end is None else min(len(mono), int(round(end * file_rate)))
    mono = mono[first:last]
    if file_rate != rate:
        problems.convert(path, f"{file_rate} Hz -> {rate} Hz")
        mono = np.asarray(resample_signal(mono, file_rate, rate), dtype=np.float32)
    if mono.size == 0 or not np.any(mono):
        problems.skip(path, "the audio is empty or all zeros")
        return None
    return mono


def fit_window(signal: np.ndarray, n: int, offset: int | None = None) -> np.ndarray:
    """Pad or crop ``signal`` to exactly ``n`` samples, never dropping it.

    ``offset`` is where the signal's first sample lands in the window (negative: its start
    is cut off); None centres it.

    >>> fit_window(np.arange(1, 6, dtype=np.float32), 3).tolist()
    [2.0, 3.0, 4.0]
    >>> fit_window(np.arange(1, 4, dtype=np.float32), 5, offset=3).tolist()
    [0.0, 0.0, 0.0, 1.0, 2.0]
    """
    signal = np.asarray(signal, dtype=np.float32)
    if offset is None:
        offset = (n - len(signal)) // 2
    out = np.zeros(n, dtype=np.float32)
    src0 = max(0, -offset)
    dst0 = max(0, offset)
    count = min(len(signal) - src0, n - dst0)
    if count > 0:
        out[dst0:dst0 + count] = signal[src0:src0 + count]
    return out


def frame_db(signal: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Energy in dB of consecutive 10 ms frames of ``signal`` (a last partial frame left
    out), and the frame length in samples.

    >>> frame_db(np.full(480, 0.1, np.float32), 16000)[0].round(1).tolist()
    [-20.0, -20.0, -20.0]
    """
    hop = max(1, rate // 100)
    n = len(signal) // hop
    frames = np.asarray(signal[:n * hop], dtype=np.float64).reshape(n, hop)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12), hop


def speech_extent(signal: np.ndarray, rate: int, floor_db: float = 30.0) -> tuple[int, int]:
    """First and one-past-last sample of the loud part (frames within ``floor_db`` of the peak).

    Used to place a word inside the window (time shifts) and to cut partial words.

    >>> x = np.zeros(16000, np.float32); x[4000:8000] = 0.5
    >>> speech_extent(x, 16000)
    (4000, 8000)
    """
    energy, hop = frame_db(signal, rate)
    if energy.size == 0:
        return 0, len(signal)
    loud = np.nonzero(energy >= energy.max() - floor_db)[0]
    return int(loud[0] * hop), int(min(len(signal), (loud[-1] + 1) * hop))


# --------------------------------------------------------------------------- the index

def save_index(path, items: list[Item], meta: dict):
    """Write the index (``meta`` + items) as JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "items": [it.to_dict() for it in items]}, fh, indent=1)


def load_index(path) -> tuple[list[Item], dict]:
    """Read an index written by :func:`save_index`."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        return [Item(**d) for d in doc["items"]], doc["meta"]
    except FileNotFoundError:
        raise DatasetError(path, "no dataset index here (run `kwsd-train prepare` first)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(path, f"not a kwsd-train dataset index ({exc})") from None


def split_counts(items: list[Item]) -> dict:
    """``{split: {role: count}}`` and speaker counts, for reports. Clips (keyword, word)
    count once however many copies :func:`repeat_items` made."""
    out: dict = {}
    for split in SPLITS:
        sel = [it for it in items if it.split == split]
        out[split] = {role: len({(it.path, it.end) for it in sel if it.role == role})
                      if role in ("keyword", "word") else sum(1 for it in sel if it.role == role)
                      for role in ("keyword", "word", "long", "noise")}
        out[split]["keyword_speakers"] = len({it.speaker for it in sel if it.role == "keyword"})
    return out
