"""kwsd-train's data side: splits, awkward audio files, pad/crop, windows, feature cache."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("tqdm")

from kwsd.profiles import get_profile  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.augment import AugmentConfig, NoiseBank, keyword_windows  # noqa: E402
from training.data import (LoadProblems, fit_window, load_audio, load_index,  # noqa: E402
                           scan_speech_commands, speaker_of, which_set)

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "data" / "speech_commands"


def need_corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"real recordings not found at {CORPUS}")


def tone(seconds, rate, freq=440.0, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


# --------------------------------------------------------------------------- loading

def test_stereo_8bit_and_44k_files_are_converted_and_recorded(tmp_path):
    stereo = np.stack([tone(1, 16000), tone(1, 16000)], axis=1)
    soundfile.write(tmp_path / "stereo.wav", stereo, 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "u8.wav", tone(1, 16000), 16000, subtype="PCM_U8")
    soundfile.write(tmp_path / "cd.wav", tone(1, 44100, freq=1000.0), 44100, subtype="PCM_16")
    problems = LoadProblems(stream=None)
    s = load_audio(tmp_path / "stereo.wav", 16000, problems)
    u = load_audio(tmp_path / "u8.wav", 16000, problems)
    c = load_audio(tmp_path / "cd.wav", 16000, problems)
    assert s.ndim == 1 and len(s) == 16000 and abs(peak_hz(s, 16000) - 440) < 5
    assert len(u) == 16000 and abs(peak_hz(u, 16000) - 440) < 5 and 0.2 < np.max(u) < 0.35
    assert abs(len(c) - 16000) <= 1 and abs(peak_hz(c, 16000) - 1000) < 5
    assert problems.converted[str(tmp_path / "stereo.wav")] == ["2 channels -> mono"]
    assert problems.converted[str(tmp_path / "cd.wav")] == ["44100 Hz -> 16000 Hz"]
    assert not problems.skipped


def test_unusable_files_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00junk" + bytes(range(200)))
    soundfile.write(tmp_path / "no_frames.wav", np.zeros((0,), np.float32), 16000)
    soundfile.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    problems = LoadProblems(stream=None)
    for name in ("zero_bytes.wav", "garbage.wav", "no_frames.wav", "silent.wav", "missing.wav"):
        assert load_audio(tmp_path / name, 16000, problems) is None
    assert set(problems.skipped) == {str(tmp_path / n) for n in
                                     ("zero_bytes.wav", "garbage.wav", "no_frames.wav",
                                      "silent.wav", "missing.wav")}
    assert "no such file" in problems.skipped[str(tmp_path / "missing.wav")]
    assert "zeros" in problems.skipped[str(tmp_path / "silent.wav")]


def test_clips_are_padded_or_cropped_never_dropped():
    assert fit_window(np.ones(4000, np.float32), 16000).shape == (16000,)
    long = np.arange(20000, dtype=np.float32)
    out = fit_window(long, 16000)
    assert out.shape == (16000,) and out[0] == 2000      # centred crop
    assert fit_window(long, 16000, offset=-19000)[:1000].tolist() == long[19000:].tolist()


# --------------------------------------------------------------------------- splitting

def test_the_shared_test_set_is_one_side_of_the_corpus_rule():
    need_corpus()
    files = [p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*_nohash_*.wav")]
    assert len(files) > 1000
    # these clips are the corpus's own test set: its rule must put every one in testing
    assert {which_set(f, 10, 10) for f in files} == {"testing"}


def test_speaker_hash_split_keeps_each_speaker_on_one_side_and_resalts_one_sided_data():
    need_corpus()
    problems = LoadProblems(stream=None)
    items = scan_speech_commands(CORPUS, "stop", 15, 15, problems=problems)
    sides = {}
    for it in items:
        if it.role in ("keyword", "word"):
            sides.setdefault(it.speaker, set()).add(it.split)
    assert all(len(s) == 1 for s in sides.values())
    stop_splits = [it.split for it in items if it.role == "keyword"]
    for split in ("training", "validation", "testing"):
        assert stop_splits.count(split) > 5
    assert "salt 'kwsd'" in problems.rules[str(CORPUS)]
    assert any("one part of the corpus" in m for m in problems.messages)


def test_lists_decide_the_split_when_present(tmp_path):
    for word in ("stop", "go"):
        (tmp_path / word).mkdir()
        for spk in ("aaaa1111", "bbbb2222", "cccc3333"):
            soundfile.write(tmp_path / word / f"{spk}_nohash_0.wav", tone(1, 16000), 16000)
    (tmp_path / "validation_list.txt").write_text("stop/aaaa1111_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("go/bbbb2222_nohash_0.wav\n")
    items = scan_speech_commands(tmp_path, "stop", 10, 10)
    split = {Path(it.path).relative_to(tmp_path).as_posix(): it.split for it in items}
    assert split["stop/aaaa1111_nohash_0.wav"] == "validation"
    assert split["go/bbbb2222_nohash_0.wav"] == "testing"
    assert sum(1 for s in split.values() if s == "training") == 4
    assert speaker_of("go/bbbb2222_nohash_0.wav") == "bbbb2222"


# --------------------------------------------------------------------------- windows

def test_keyword_windows_hold_the_whole_word_and_partials_only_part_of_it():
    rate, n = 16000, 16000
    clip = np.zeros(rate, np.float32)
    clip[6000:10000] = 0.5                     # a 0.25 s "word"
    cfg = AugmentConfig(variants=6, partials=4, noise_prob=0, speed_prob=0, ir_prob=0,
                        gain_db=(0.0, 0.0))
    wins = keyword_windows(clip, rate, n, np.random.default_rng(1), cfg, NoiseBank([]), [])
    full = [w for w in wins if w.label == 1]
    part = [w for w in wins if w.kind == "partial"]
    assert len(full) == 6 and len(part) == 4 and all(w.label == 0 for w in part)
    word_energy = np.sum(clip ** 2)
    for w in full:
        assert np.isclose(np.sum(w.samples ** 2), word_energy, rtol=1e-3)
    for w in part:
        assert 0.05 * word_energy < np.sum(w.samples ** 2) < 0.5 * word_energy
    offsets = {int(np.argmax(w.samples > 0)) for w in full}
    assert len(offsets) > 3                    # shifted, not all centred


def test_cut_finals_hear_the_vowel_but_never_the_final_consonant():
    # "s" (soft), "o" (loud), a silent closure, then a soft "p" burst
    rate, n = 16000, 16000
    clip = np.zeros(rate, np.float32)
    clip[4000:6000], clip[6000:9000], clip[9800:10200] = 0.06, 0.5, 0.04
    cfg = AugmentConfig(variants=1, partials=0, cut_finals=8, noise_prob=0, speed_prob=0,
                        ir_prob=0, gain_db=(0.0, 0.0))
    wins = keyword_windows(clip, rate, n, np.random.default_rng(1), cfg, NoiseBank([]), [])
    cut = [w for w in wins if w.label == 0]
    assert len(cut) == 8
    for w in cut:
        assert not np.any(np.isclose(w.samples, 0.04))            # no "p"
        assert 0 < np.count_nonzero(np.isclose(w.samples, 0.5)) <= 3000  # some of the "o"
        assert np.any(np.isclose(w.samples[-160:], 0.5))          # its last 10 ms: the vowel
    assert AugmentConfig().cut_finals == 0                        # off unless asked for


# --------------------------------------------------------------------------- prepare CLI

def make_dataset(root: Path):
    """A few real clips (two words, a couple of speakers each) plus awkward files."""
    need_corpus()
    for word in ("stop", "yes"):
        (root / word).mkdir(parents=True)
        for src in sorted((CORPUS / word).glob("*.wav"))[:8]:
            shutil.copy(src, root / word / src.name)
    # awkward but usable: stereo, 8-bit, 44.1 kHz, short, long
    x, rate = soundfile.read(sorted((CORPUS / "yes").glob("*.wav"))[0], dtype="float32")
    soundfile.write(root / "yes" / "st3r30aa_nohash_0.wav", np.stack([x, x], 1), rate)
    soundfile.write(root / "yes" / "u8u8u8u8_nohash_0.wav", x, rate, subtype="PCM_U8")
    soundfile.write(root / "yes" / "cdcdcdcd_nohash_0.wav",
                    np.repeat(x, 3)[:int(len(x) * 44100 / 16000)], 44100)
    soundfile.write(root / "yes" / "sh0rt000_nohash_0.wav", x[4000:9000], rate)
    soundfile.write(root / "yes" / "l0ng0000_nohash_0.wav", np.concatenate([x, x[:8000]]), rate)
    # unusable
    (root / "yes" / "empty000_nohash_0.wav").write_bytes(b"")
    (root / "yes" / "c0rrupt0_nohash_0.wav").write_bytes(b"RIFF1234WAVEfmt garbage")
    (root / "_background_noise_").mkdir()
    shutil.copy(CORPUS / "_background_noise_" / "white_noise.wav", root / "_background_noise_")


def test_prepare_skips_bad_files_with_warnings_and_keeps_awkward_ones(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    status = main(["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--out",
                   str(tmp_path / "work"), "--variants", "2", "--partials", "2",
                   "--noise-per-second", "0.2", "--validation-percent", "20",
                   "--testing-percent", "0"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "empty000_nohash_0.wav" in err and "c0rrupt0_nohash_0.wav" in err
    assert "2 file(s) skipped" in err
    items, meta = load_index(tmp_path / "work" / "index.json")
    names = {Path(it.path).name for it in items}
    for kept in ("st3r30aa", "u8u8u8u8", "cdcdcdcd", "sh0rt000", "l0ng0000"):
        assert f"{kept}_nohash_0.wav" in names
    assert "empty000_nohash_0.wav" not in names
    assert set(meta["problems"]["skipped"]) == {str(tmp_path / "data" / "yes" / n) for n in
                                                ("empty000_nohash_0.wav", "c0rrupt0_nohash_0.wav")}
    windows = meta["windows"]["training"]
    assert windows["keyword"] > 0 and windows["partial"] > 0 and windows["noise"] > 0


def test_features_come_from_the_profile_and_are_cached(tmp_path):
    make_dataset(tmp_path / "data")
    args = ["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--out", str(tmp_path / "work"),
            "--variants", "1", "--partials", "0", "--validation-percent", "20",
            "--testing-percent", "0"]
    assert main(args) == 0
    cache = tmp_path / "work" / "cache"
    first = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == first  # nothing redone
    from training.features import build_features
    from training.augment import AugmentConfig as A

    items, meta = load_index(tmp_path / "work" / "index.json")
    profile = get_profile("logmel40")
    arrays = build_features(items, profile, A.from_dict(meta["augment"]), meta["seed"],
                            tmp_path / "work", workers=1, progress=False)
    va = arrays["validation"]
    i = int(np.nonzero(va.y == 1)[0][0]) if np.any(va.y == 1) else 0
    item = items[va.group[i]]
    from training.augment import plain_windows

    signal = load_audio(item.path, 16000)
    expected = profile.features(plain_windows(signal, 16000, 16000, item.role, 1.0)[0].samples)
    np.testing.assert_allclose(va.x[i].astype(np.float32), expected, atol=0.02)
    # another profile: other cache entries, none reused
    args[args.index("--variants"):args.index("--variants")] = ["--profile", "tutorial-mfcc16"]
    assert main(args) == 0
    assert len(list(cache.iterdir())) == 2 * len(first)


def test_missing_folder_and_missing_keyword_are_clear_errors(tmp_path, capsys):
    assert main(["-q", "prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "w")]) == 65
    assert "nope: no such folder" in capsys.readouterr().err
    (tmp_path / "data" / "go").mkdir(parents=True)
    soundfile.write(tmp_path / "data" / "go" / "a_nohash_0.wav", tone(1, 16000), 16000)
    assert main(["-q", "prepare", str(tmp_path / "data"), "--out", str(tmp_path / "w")]) == 65
    err = capsys.readouterr().err
    assert "no clips of the keyword 'stop'" in err and "Traceback" not in err


def band_energy(x, rate, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def test_a_random_microphone_band_limits_every_kind_of_window_and_overdrive_clips_it():
    """--mic-prob / --overdrive-prob: keyword windows and the negatives cut from long audio
    alike (so neither class can be told by the colouring); at probability 0 the windows are
    exactly those of a recipe without the steps."""
    from training.augment import long_windows

    rate = n = 16000
    noise = np.random.default_rng(0).standard_normal(3 * rate).astype(np.float32) * 0.05
    clip = noise[:rate].copy()
    quiet = dict(noise_prob=0, speed_prob=0, ir_prob=0, gain_db=(0.0, 0.0), partials=0,
                 variants=4, onsets=0)

    def wins(**kw):
        cfg = AugmentConfig(**quiet, **kw)
        kws = keyword_windows(clip, rate, n, np.random.default_rng(1), cfg, NoiseBank([]), [])
        longs = long_windows(noise, rate, n, np.random.default_rng(1), cfg, NoiseBank([]))
        return [w.samples for w in kws], [w.samples for w in longs]

    plain_kw, plain_long = wins()
    off_kw, off_long = wins(mic_prob=0.0, overdrive_prob=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(plain_kw + plain_long, off_kw + off_long))
    mic_kw, mic_long = wins(mic_prob=1.0)
    for plain, heard in zip(plain_kw + plain_long, mic_kw + mic_long):
        assert band_energy(heard, rate, 0, 40) < 0.3 * band_energy(plain, rate, 0, 40)
        assert band_energy(heard, rate, 7600, 8000) < 0.5 * band_energy(plain, rate, 7600, 8000)
        assert np.isclose(np.sqrt(np.mean(heard ** 2)), np.sqrt(np.mean(plain ** 2)), rtol=0.05)

    def flat_topped(x):      # share of samples at the window's own peak
        return np.mean(np.abs(x) >= 0.999 * np.abs(x).max())

    hot_kw, hot_long = wins(overdrive_prob=1.0, overdrive=(4.0, 4.0))
    assert all(flat_topped(x) < 0.001 for x in plain_kw + plain_long)
    assert all(flat_topped(x) > 0.01 for x in hot_kw + hot_long)
    assert np.isclose(np.abs(hot_kw[0]).max(), np.abs(plain_kw[0]).max() / 4, rtol=1e-3)


def test_optional_augmentation_changes_the_cache_key_only_when_it_is_on():
    """Caches made before --mic-prob/--overdrive-prob existed stay valid while they are off."""
    from training.data import Item
    from training.features import cache_key

    item = Item(path="/x/stop/a_nohash_0.wav", role="keyword", split="training", speaker="a",
                word="stop", source="speech_commands", sha1="0" * 40)
    profile = get_profile("logmel40")
    key = lambda **kw: cache_key(profile, item, AugmentConfig(**kw), 1, "bank")  # noqa: E731
    assert key() == key(mic_prob=0.0, overdrive_prob=0.0, overdrive=(2.0, 3.0))
    assert len({key(), key(mic_prob=0.5), key(overdrive_prob=0.1),
                key(overdrive_prob=0.1, overdrive=(2.0, 3.0))}) == 4


def test_a_probability_outside_0_to_1_is_refused_before_anything_is_written(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    for option in ("--mic-prob", "--overdrive-prob", "--noise-prob"):
        assert main(["-q", "prepare", str(tmp_path / "data"), option, "1.5",
                     "--out", str(tmp_path / "bad")]) == 65
        assert f"{option}: must be a probability from 0 to 1, not 1.5" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_speed_range_is_recorded_and_a_backwards_or_zero_one_refused(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    for lo, hi in (("1.2", "0.9"), ("0", "1.1")):
        assert main(["-q", "prepare", str(tmp_path / "data"), "--speed", lo, hi,
                     "--out", str(tmp_path / "bad")]) == 65
        err = capsys.readouterr().err
        assert f"--speed: must be two factors LO <= HI above 0, not {float(lo):g} {float(hi):g}" in err
    assert not (tmp_path / "bad").exists()
    assert main(["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--speed", "0.75", "1.3",
                 "--speed-prob", "1", "--variants", "1", "--partials", "0",
                 "--out", str(tmp_path / "work")]) == 0
    augment = load_index(tmp_path / "work" / "index.json")[1]["augment"]
    assert (augment["speed"], augment["speed_prob"]) == ([0.75, 1.3], 1.0)


def test_changing_one_roles_augmentation_recomputes_only_that_role(tmp_path):
    make_dataset(tmp_path / "data")
    base = ["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--out", str(tmp_path / "work"),
            "--variants", "1", "--partials", "0", "--validation-percent", "20",
            "--testing-percent", "0"]
    assert main(base + ["--word-variants", "1"]) == 0
    cache = tmp_path / "work" / "cache"
    before = {p.name for p in cache.iterdir()}
    assert main(base + ["--word-variants", "2"]) == 0
    added = {p.name for p in cache.iterdir()} - before
    items, meta = load_index(tmp_path / "work" / "index.json")
    training_words = [it for it in items if it.split == "training" and it.role == "word"]
    assert meta["windows"]["training"]["word"] == 2 * len(training_words)
    assert len(added) == len(training_words)     # keyword, noise, held-out: reused


def test_a_synthetic_folder_of_music_alone_gives_training_negatives_only(tmp_path, capsys):
    """``prepare --synthetic`` takes a ``kwsd-train synth`` folder that holds only
    ``_music_/`` (no word clips): its pieces become training negatives, never held out; a
    real data folder without word clips is still refused."""
    from training import synth

    make_dataset(tmp_path / "data")
    synth.render_corpus(str(tmp_path / "music"), positives=0, per_negative=0, speech_minutes=0,
                        music_minutes=0.5, engines=[], jobs=1, progress=False)
    base = ["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--variants", "1",
            "--partials", "0", "--validation-percent", "20", "--testing-percent", "0"]
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0
    assert main(base + ["--synthetic", str(tmp_path / "music"),
                        "--out", str(tmp_path / "with")]) == 0
    items, meta = load_index(tmp_path / "with" / "index.json")
    music = [it for it in items if "_music_" in it.path]
    assert music and {(it.role, it.split) for it in music} == {("long", "training")}
    _, plain = load_index(tmp_path / "plain" / "index.json")
    assert meta["windows"]["training"]["long"] > plain["windows"]["training"].get("long", 0)
    assert meta["windows"]["validation"] == plain["windows"]["validation"]
    assert main(["-q", "prepare", str(tmp_path / "music"), "--out", str(tmp_path / "no")]) == 65
    assert "no audio clips in word sub-folders" in capsys.readouterr().err


def test_real_keyword_weight_copies_real_training_stops_only(tmp_path, capsys):
    """--real-keyword-weight N: each real training "stop" yields N times the windows, each
    copy augmented differently; synthetic and held-out clips are untouched, and the summary
    still counts clips, not copies."""
    make_dataset(tmp_path / "data")
    (tmp_path / "synth" / "stop").mkdir(parents=True)
    for src in sorted((CORPUS / "stop").glob("*.wav"))[8:10]:
        shutil.copy(src, tmp_path / "synth" / "stop" / src.name)
    base = ["-q", "-j", "1", "prepare", str(tmp_path / "data"), "--synthetic",
            str(tmp_path / "synth"), "--variants", "2", "--partials", "0",
            "--validation-percent", "20", "--testing-percent", "0"]
    assert main(base + ["--out", str(tmp_path / "one")]) == 0
    assert main(base + ["--out", str(tmp_path / "three"), "--real-keyword-weight", "3"]) == 0
    _, one = load_index(tmp_path / "one" / "index.json")
    items, three = load_index(tmp_path / "three" / "index.json")
    real = {it.path for it in items if it.role == "keyword" and it.split == "training"
            and not it.source.startswith("synthetic")}
    assert real
    assert (three["windows"]["training"]["keyword"] - one["windows"]["training"]["keyword"]
            == 2 * 2 * len(real))                      # 2 more copies x 2 variants each
    assert three["windows"]["validation"] == one["windows"]["validation"]
    from training.features import build_features

    x = build_features(items, get_profile("logmel40"), AugmentConfig.from_dict(three["augment"]),
                       three["seed"], tmp_path / "three", progress=False)["training"]
    copies = [np.asarray(x.x[x.group == g], np.float32) for g, it in enumerate(items)
              if it.path == sorted(real)[0] and it.split == "training"]
    assert len(copies) == 3 and not np.array_equal(copies[0], copies[1])
    assert main(base + ["--out", str(tmp_path / "bad"), "--real-keyword-weight", "0"]) == 65
    assert "--real-keyword-weight: must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()                    # refused before anything is written
