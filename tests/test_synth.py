"""Synthetic speech: real espeak-ng and flite renderings in the Speech Commands layout."""

import argparse
import csv
import os
import re
import shutil

import numpy as np
import pytest
import soundfile

from kwsd.errors import EX_USAGE
from training import synth

NAME = re.compile(r"^([a-z0-9-]+)_nohash_(\d+)\.wav$")


def need(*binaries):
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"TTS engine binary not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    need("espeak-ng", "flite")
    out = tmp_path_factory.mktemp("synth")
    summary = synth.render_corpus(str(out), keyword="stop", negatives=["top", "shop"],
                                  engines=["espeak", "flite"], positives=8, per_negative=4,
                                  speech_minutes=0.3, seed=3, jobs=2, progress=False)
    return out, summary


def test_words_land_in_the_speech_commands_layout(corpus):
    out, summary = corpus
    assert summary["failed"] == 0, summary["failures"]
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["_speech_", "shop", "stop", "top"]
    counts = {w: len(list((out / w).glob("*.wav"))) for w in ("stop", "top", "shop")}
    assert counts == {"stop": 8, "top": 4, "shop": 4}
    speakers = set()
    for wav in out.glob("[!_]*/*.wav"):
        m = NAME.match(wav.name)
        assert m, f"{wav.name} is not SPEAKER_nohash_N.wav"
        speakers.add(m.group(1))
    # both engines said the keyword, and each id names engine and voice
    assert {s.split("-")[0] for s in speakers} == {"espeak", "flite"}
    assert all(s.startswith(("espeak-en", "flite-")) for s in speakers)


def test_clips_are_one_second_16k_mono_16bit_with_centred_speech(corpus):
    out, _ = corpus
    for wav in out.glob("[!_]*/*.wav"):
        info = soundfile.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == \
            (16000, 1, "PCM_16", 16000), wav.name
        x, _ = soundfile.read(str(wav), dtype="float32")
        assert np.sqrt(np.mean(x ** 2)) > 0.01, f"{wav.name} is (nearly) silent"
        start, end = synth.speech_bounds(x)
        assert 0.1 < (end - start) / 16000 <= 1.0, wav.name       # one spoken word
        assert abs((start + end) / 2 - 8000) < 400, f"{wav.name} speech is not centred"


def test_long_speech_and_manifest(corpus):
    out, summary = corpus
    long_files = list((out / "_speech_").glob("*.wav"))
    assert long_files and all(NAME.match(p.name) for p in long_files)
    for wav in long_files:
        info = soundfile.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 3.0
    with open(out / synth.MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(
        str(p.relative_to(out)) for p in out.glob("*/*.wav"))
    assert all("stop" not in r["text"].lower() for r in rows if r["path"].startswith("_speech_"))
    assert summary["speech_seconds"] == pytest.approx(
        sum(soundfile.info(str(p)).duration for p in long_files), rel=1e-3)


def test_rerun_keeps_existing_files_and_same_seed_same_plan(corpus):
    out, first = corpus
    again = synth.render_corpus(str(out), keyword="stop", negatives=["top", "shop"],
                                engines=["espeak", "flite"], positives=8, per_negative=4,
                                speech_minutes=0.3, seed=3, jobs=1, progress=False)
    assert again["exists"] == sum(first["folders"].values())
    assert again["folders"] == first["folders"]


def test_missing_engine_is_skipped_with_a_warning(tmp_path, monkeypatch):
    need("espeak-ng")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("espeak-ng"), bindir / "espeak-ng")
    monkeypatch.setenv("PATH", str(bindir))            # flite and festival are not on it
    with pytest.warns(UserWarning) as record:
        summary = synth.render_corpus(str(tmp_path / "out"), negatives=["top"],
                                      engines=["espeak", "flite", "festival"], positives=3,
                                      per_negative=2, speech_minutes=0, jobs=1, progress=False)
    messages = " ".join(str(w.message) for w in record)
    assert sorted(re.findall(r"skipping TTS engine '(\w+)'", messages)) == ["festival", "flite"]
    assert summary["engines"] == {"espeak": 5} and summary["failed"] == 0


def test_cli_renders_and_rejects_unknown_engines(tmp_path, capsys):
    need("espeak-ng")
    parser = synth.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(tmp_path / "o"), "--keyword", "go", "--negatives", "no,so",
                              "--engines", "espeak", "--positives", "2", "--per-negative", "1",
                              "--speech-minutes", "0", "--jobs", "1", "--no-progress"])
    assert synth.run(args) == 0
    assert "go" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "o" / "go")) == 2
    assert len(os.listdir(tmp_path / "o" / "so")) == 1

    bad = parser.parse_args([str(tmp_path / "b"), "--engines", "espeak,sam"])
    assert synth.run(bad) == EX_USAGE
    assert "unknown engine(s) sam in --engines" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_hard_text_is_rich_in_st_plus_vowel_and_never_says_the_keyword():
    import random

    for language in ("en", "ru", "cs", "fi", "el", "de"):
        rng = random.Random(3)
        plain = synth.speech_text(language, "stop", random.Random(3), 60)
        hard = synth.speech_text(language, "stop", rng, 60, hard_share=0.6)
        count = lambda t: len(re.findall(r"(st|ст|στ)[aeiouyáéíóúůаеиоуыэюяёαεηιουω]", t.lower()))  # noqa: E731
        assert count(hard) > 2 * max(1, count(plain)), language
        assert "stop" not in hard.lower() and "стоп" not in hard.lower()


@pytest.mark.parametrize("kind", ["music", "knocks"])
def test_generated_audio_needs_no_speech_engine_and_is_the_same_on_every_run(
        tmp_path, monkeypatch, capsys, kind):
    """``--music-minutes`` / ``--knock-minutes``: instrumental pieces in ``_music_/``, household
    knocks in ``_knocks_/``, listed in the manifest under the language "music" / "knocks"; no
    TTS engine is needed for them, and a seed gives the same audio."""
    monkeypatch.setenv("PATH", str(tmp_path))              # no espeak-ng, flite, festival
    parser = synth.add_arguments(argparse.ArgumentParser())
    out = tmp_path / kind
    option = "--music-minutes" if kind == "music" else "--knock-minutes"
    args = parser.parse_args([str(out), "--positives", "0", "--per-negative", "0",
                              "--speech-minutes", "0", option, "1.2",
                              "--engines", "espeak,flite", "--jobs", "1", "--no-progress"])
    assert synth.run(args) == 0
    assert f"{kind}: 1.2 min" in capsys.readouterr().out
    pieces = sorted((out / f"_{kind}_").glob("*.wav"))
    assert pieces and all(NAME.match(p.name) for p in pieces)
    infos = [soundfile.info(str(p)) for p in pieces]
    assert {(i.samplerate, i.channels) for i in infos} == {(16000, 1)}
    assert sum(i.duration for i in infos) == pytest.approx(72.0, abs=0.01)
    with open(out / synth.MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [f"_{kind}_/{p.name}" for p in pieces]
    assert {r["language"] for r in rows} == {kind}
    first = soundfile.read(str(pieces[0]), dtype="int16")[0]
    assert np.abs(first).max() > 0.05 * 32767                        # not silence
    synth.render_corpus(str(out), positives=0, per_negative=0, speech_minutes=0,
                        jobs=1, progress=False, overwrite=True, engines=[],
                        **{option[2:].replace("-", "_"): 1.2})
    assert np.array_equal(soundfile.read(str(pieces[0]), dtype="int16")[0], first)

    bad = parser.parse_args([str(tmp_path / "b"), option, "-1"])
    assert synth.run(bad) == EX_USAGE
    err = capsys.readouterr().err
    assert option in err and "must be >= 0" in err


def test_knocks_are_short_loud_bursts_over_a_quiet_floor():
    """What makes them knocks: most of a recording is near its noise floor, and the events
    rise 20 dB or more above it within 10 ms."""
    from training.knocks import render_knocks

    x = render_knocks(20.0, seed=3)
    frames = x[:len(x) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    floor = np.percentile(db, 10)
    assert np.mean(db < floor + 10) > 0.3          # quiet for much of the time
    assert np.sum(np.diff(db) > 20) >= 5           # and sharp onsets, many of them


def test_every_music_piece_has_the_length_asked_for():
    """Notes still ringing at the end of a piece are cut there, whatever the tempo (a long
    last note used to overrun the buffer and lose the piece)."""
    from training.music import render_piece

    for seed in range(60):
        seconds = 1.0 + (seed % 7) * 0.73
        x = render_piece(seconds, seed=seed)
        assert x.shape == (round(seconds * 16000),) and np.isfinite(x).all(), seed
