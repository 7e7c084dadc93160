"""Labelled captures go through ``kwsd-train prepare --captures`` into the training windows."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("tqdm")

from kwsd.captures import (CaptureSettings, CaptureWriter, Moment, label_capture,  # noqa: E402
                           list_captures, moment_record)
from test_training_data import CORPUS, make_dataset  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.data import load_index  # noqa: E402


def _capture_folder(root: Path):
    """Real clips written as the daemon writes captures (2 s, 1.5 s before the peak), then
    labelled: six "stop"s and six other words (what a room's model fired on)."""
    w = CaptureWriter(CaptureSettings(dir=str(root)), out_rate=16000)
    labels = {}
    for i, (word, label) in enumerate([("stop", "stop")] * 6 + [("go", "other")] * 3
                                      + [("no", "other")] * 3):
        src = sorted((CORPUS / word).glob("*.wav"))[-1 - i]      # not make_dataset's clips
        x, rate = soundfile.read(src, dtype="float32")
        audio = np.concatenate([np.zeros(int(0.5 * rate), np.float32), x,
                                np.zeros(int(0.5 * rate), np.float32)])[:2 * rate]
        m = Moment("detection" if label == "other" else "near_miss", 100.0 + i, 0.7)
        w.submit(audio, rate, moment_record(m, wall_time=1_700_000_000 + i, threshold=0.8,
                                            model="stop.tflite", model_sha256="0" * 64,
                                            device="test"))
        labels[1_700_000_000 + i] = label
    w.close()
    for _, flac, record in list_captures(root):
        label_capture(flac, labels[int(record["wall_time"])])
    return root


def test_labelled_captures_become_keyword_clips_and_weighted_hard_negatives(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    caps = _capture_folder(tmp_path / "captures")
    (caps / "unlabelled").mkdir(exist_ok=True)
    soundfile.write(caps / "unlabelled" / "not-yet.flac", np.ones(16000) * 0.1, 16000)
    status = main(["-j", "1", "prepare", str(tmp_path / "data"), "--out",
                   str(tmp_path / "work"), "--variants", "2", "--partials", "1",
                   "--noise-per-second", "0.2", "--validation-percent", "20",
                   "--testing-percent", "0", "--captures", str(caps),
                   "--captures-weight", "3"])
    err = capsys.readouterr().err
    assert status == 0, err
    items, meta = load_index(tmp_path / "work" / "index.json")
    from_caps = [it for it in items if it.source == "captures"]
    assert {Path(it.path).parent.name for it in from_caps} == {"stop", "other"}
    assert not any("not-yet" in it.path for it in items)              # unlabelled: ignored
    stops = {it.path for it in from_caps if it.role == "keyword"}
    others = [it for it in from_caps if it.role == "word"]
    assert len(stops) == 6 and len({it.path for it in others}) == 6
    for path in {it.path for it in others}:                          # weighted up in training
        copies = [it for it in others if it.path == path]
        assert len(copies) == (3 if copies[0].split == "training" else 1)
        assert len({it.start for it in copies}) == len(copies)       # each its own augmentation
    # split by the capture's content hash, like everything else: a file is on one side
    sides = {}
    for it in from_caps:
        sides.setdefault(it.path, set()).add(it.split)
    assert all(len(s) == 1 for s in sides.values())
    counts = meta["data"]["from_captures"]
    assert sum(counts["stop"].values()) == 6 and sum(counts["other"].values()) == 6
    assert "captures: stop:" in err and "captures: other:" in err
    # the windows: positives from the stop captures, negatives from the others
    from training.augment import AugmentConfig
    from training.features import build_features
    from kwsd.profiles import get_profile

    arrays = build_features(items, get_profile("logmel40"),
                            AugmentConfig.from_dict(meta["augment"]), meta["seed"],
                            tmp_path / "work", workers=1, progress=False)
    tr = arrays["training"]
    group_items = [items[g] for g in tr.group]
    pos = sum(1 for it, y in zip(group_items, tr.y) if it.source == "captures" and y == 1)
    neg = sum(1 for it, y in zip(group_items, tr.y)
              if it.source == "captures" and it.role == "word" and y == 0)
    assert pos > 0 and neg > 0


def test_a_capture_folder_without_labelled_captures_is_a_clear_error(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    (tmp_path / "captures" / "unlabelled").mkdir(parents=True)
    status = main(["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--out",
                   str(tmp_path / "work"), "--captures", str(tmp_path / "captures")])
    assert status == 65
    assert "no labelled captures" in capsys.readouterr().err
