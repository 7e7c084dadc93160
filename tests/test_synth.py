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
