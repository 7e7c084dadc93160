"""Captures: what is picked (detections, near misses at their peak), the recent-audio ring,
and the writer (FLAC + sidecar, 0600, the cap, an unwritable disk, a full queue)."""

import contextlib
import json
import logging
import os
import stat
import subprocess

import numpy as np
import pytest
import soundfile as sf

from kwsd.captures import (CaptureSettings, CaptureWriter, Moment, MomentPicker, RecentAudio,
                           label_capture, list_captures, moment_record)


def _pick(scores, fired=(), **kw):
    """Moments from per-hop smoothed scores (hop 0.1 s); ``fired``: hop indices."""
    kw = {"threshold": 0.8, "near_miss": 0.4, "refractory_s": 1.0, "after_s": 0.5, **kw}
    p = MomentPicker(**kw)
    out = []
    for i, s in enumerate(list(scores) + [0.0] * 10):
        out += p.update(round(i * 0.1, 6), s, i in fired)
    return out


def test_a_near_miss_is_saved_once_at_its_peak():
    assert _pick([0.1, 0.45, 0.7, 0.5, 0.3, 0.1]) == [Moment("near_miss", 0.2, 0.7)]


def test_a_detection_is_saved_once_at_its_peak_not_as_a_near_miss_too():
    # the score climbs through the near-miss band into a detection, peaks, falls back
    moments = _pick([0.1, 0.5, 0.7, 0.85, 0.95, 0.9, 0.6, 0.45, 0.1], fired={3})
    assert moments == [Moment("detection", 0.4, 0.95, detection_time=0.3)]


def test_near_misses_closer_than_the_refractory_period_are_one():
    scores = [0.5, 0.1, 0.6, 0.1] + [0.1] * 12 + [0.55, 0.1]
    moments = _pick(scores)
    assert [(m.kind, m.time) for m in moments] == [("near_miss", 0.2), ("near_miss", 1.6)]


def test_near_misses_and_detections_can_be_switched_off():
    scores = [0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] + [0.1] * 20 + [0.9, 0.1]
    assert [m.kind for m in _pick(scores, fired={27})] == ["near_miss", "detection"]
    assert [m.kind for m in _pick(scores, fired={27}, near_miss=None)] == ["detection"]
    assert [m.kind for m in _pick(scores, {27}, detections=False)] == ["near_miss"]


def test_recent_audio_cuts_by_stream_time_across_the_ring_edge():
    r = RecentAudio(seconds=1.0)
    x = np.arange(3000, dtype=np.float32)
    for i in range(0, 3000, 700):                       # blocks that wrap the 1000-sample ring
        r.push(x[i:i + 700], start_time=i / 1000, rate=1000)
    samples, start, rate = r.cut(2.2, 2.5)
    assert (rate, start) == (1000, 2.2)
    assert samples.tolist() == x[2200:2500].tolist()
    samples, start, _ = r.cut(0.5, 2.1)                 # older than the ring: clipped
    assert start == 2.0 and samples.tolist() == x[2000:2100].tolist()
    r.push(np.ones(100), start_time=10.0, rate=1000)    # a gap: the old audio is gone
    assert r.cut(2.0, 2.5) is None


def _settings(tmp_path, **kw):
    return CaptureSettings(dir=str(tmp_path / "captures"), **kw)


def _record(i, kind="near_miss", score=0.5):
    return moment_record(Moment(kind, float(i), score), wall_time=1_700_000_000.0 + i,
                         threshold=0.8, model="stop.tflite", model_sha256="ab" * 32,
                         device="kwsdmic")


def test_a_capture_is_a_private_flac_at_the_model_rate_with_its_sidecar(tmp_path):
    w = CaptureWriter(_settings(tmp_path), out_rate=16000)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(96000) / 48000)   # 2 s at 48 kHz
    assert w.submit(tone, 48000, _record(1, "detection", 0.93))
    w.close()
    (label, flac, record), = list_captures(tmp_path / "captures")
    assert label == "unlabelled" and flac.parent == tmp_path / "captures" / "unlabelled"
    data, rate = sf.read(flac)
    assert rate == 16000 and len(data) == 32000
    assert abs(np.sqrt(np.mean(data ** 2)) - 0.5 / np.sqrt(2)) < 0.01   # the tone survived
    assert record["kind"] == "detection" and record["score"] == 0.93
    assert record["threshold"] == 0.8 and record["model_sha256"] == "ab" * 32
    assert record["device"] == "kwsdmic" and record["file"] == flac.name
    assert record["time_utc"].startswith("2023-11-14T22:13:21")
    for p in (flac, flac.with_suffix(".json")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert w.written == 1 and w.failed == w.dropped == 0


def test_the_cap_deletes_the_oldest_unlabelled_captures_never_labelled_ones(tmp_path):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 32000)        # ~60 kB as FLAC
    w = CaptureWriter(_settings(tmp_path, max_mb=0.2), out_rate=16000)
    w.submit(noise, 16000, _record(0))
    w.flush()
    (_, first, _), = list_captures(tmp_path / "captures")
    kept = label_capture(first, "other")                            # the user labelled it
    for i in range(1, 9):
        w.submit(noise, 16000, _record(i))
    w.close()
    left = list_captures(tmp_path / "captures", labels=("unlabelled",))
    total = sum(p.stat().st_size for p in (tmp_path / "captures" / "unlabelled").iterdir())
    assert total <= 0.2e6 and w.deleted > 0
    names = [f.name for _, f, _ in left]
    assert names == sorted(names) and names[-1].startswith("20231114T221328")   # newest kept
    assert kept.exists() and kept.with_suffix(".json").exists()


@contextlib.contextmanager
def _read_only_dir(path):
    """``path`` made unwritable: mode 0500 for a normal user, a read-only tmpfs for root
    (root writes through file modes)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield lambda: path.chmod(0o700)
        finally:
            path.chmod(0o700)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder here (not allowed to mount)")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,rw", str(path)], check=True)
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_an_unwritable_disk_is_logged_once_and_once_more_when_it_recovers(tmp_path, caplog):
    root = tmp_path / "captures"
    with _read_only_dir(root) as make_writable:
        w = CaptureWriter(CaptureSettings(dir=str(root)), out_rate=16000)
        with caplog.at_level(logging.INFO, logger="kwsd.captures"):
            for i in range(3):
                assert w.submit(np.zeros(16000), 16000, _record(i))
            w.flush()
            assert w.failed == 3 and w.written == 0
            make_writable()
            w.submit(np.zeros(16000), 16000, _record(9))
            w.close()
        events = [r.kwsd_event for r in caplog.records if hasattr(r, "kwsd_event")]
        assert events == ["capture_failed", "capture_recovered", "captured"]
        assert "Read-only file system" in caplog.text or "Permission denied" in caplog.text
        assert w.written == 1
        assert not [p for p in (root / "unlabelled").iterdir() if ".tmp" in p.name]


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    w = CaptureWriter(_settings(tmp_path), out_rate=16000, queue_size=2, start=False)
    results = [w.submit(np.zeros(1600), 16000, _record(i)) for i in range(5)]
    assert results == [True, True, False, False, False] and w.dropped == 3
    w.start()
    w.close()
    assert w.written == 2


def test_labelling_moves_the_capture_and_its_sidecar(tmp_path):
    w = CaptureWriter(_settings(tmp_path), out_rate=16000)
    w.submit(np.zeros(1600), 16000, _record(1))
    w.close()
    (_, flac, _), = list_captures(tmp_path / "captures")
    moved = label_capture(flac, "stop")
    assert moved == tmp_path / "captures" / "stop" / flac.name
    assert moved.with_suffix(".json").exists() and not flac.exists()
    assert json.loads(moved.with_suffix(".json").read_text())["kind"] == "near_miss"
    with pytest.raises(ValueError, match="label must be one of"):
        label_capture(moved, "maybe")
