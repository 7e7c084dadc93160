"""Audio files are streamed in blocks that add up to the whole file; bad files are refused by name."""

import struct

import numpy as np
import pytest
import soundfile

from kwsd.audiofile import AudioFile, read_audio
from kwsd.errors import EX_NOINPUT, AudioFileError


def _wav_bytes(rate, data=b"\x00\x01" * 100, channels=1, bits=16):
    """A PCM WAV whose header says whatever we like (for headers no encoder would write)."""
    align = channels * bits // 8
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * align) & 0xFFFFFFFF,
                                align, bits)
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _signal(frames, channels, seed=0):
    return (np.random.default_rng(seed).uniform(-0.9, 0.9, (frames, channels))).astype(np.float32)


@pytest.mark.parametrize("rate, channels, subtype, suffix", [
    (16000, 1, "PCM_16", ".wav"), (44100, 2, "PCM_24", ".wav"), (48000, 6, "FLOAT", ".wav"),
    (22050, 1, "PCM_16", ".flac"), (11025, 3, "PCM_U8", ".wav"), (96000, 2, "PCM_32", ".wav"),
])
@pytest.mark.parametrize("block", [1, 1000, 4096, 10**6])
def test_blocks_add_up_to_the_whole_file(tmp_path, rate, channels, subtype, suffix, block):
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, _signal(5003, channels), rate, subtype=subtype)
    whole, whole_rate = soundfile.read(path, dtype="float32", always_2d=True)
    with AudioFile(path) as f:
        assert (f.rate, f.channels, f.frames) == (rate, channels, 5003)
        assert f.duration_s == pytest.approx(5003 / rate)
        blocks = list(f.blocks(block))
    assert all(b.dtype == np.float32 and b.shape[1] == channels for b in blocks)
    assert all(b.shape[0] == block for b in blocks[:-1]) and 0 < blocks[-1].shape[0] <= block
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    samples, got_rate = read_audio(path)
    np.testing.assert_array_equal(samples, whole)
    assert got_rate == whole_rate == rate


def test_missing_corrupt_and_non_audio_files_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    text = tmp_path / "notes.flac"
    text.write_text("not audio at all\n")
    cases = {tmp_path / "missing.wav": "no such file", corrupt: "cannot read audio",
             text: "cannot read audio", tmp_path: "a folder, not an audio file"}
    for path, reason in cases.items():
        with pytest.raises(AudioFileError) as err:
            AudioFile(path)
        assert str(err.value).startswith(f"{path}: {reason}")
        assert err.value.exit_status == EX_NOINPUT
        with pytest.raises(AudioFileError):
            read_audio(path)


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(_wav_bytes(16000, data=b""))
    with pytest.raises(AudioFileError, match="empty.wav: the file holds no audio samples"):
        AudioFile(path)


@pytest.mark.parametrize("rate", [1, 999, 768001, 2**31 - 1, 2**31, 2**32 - 1])
def test_implausible_sample_rates_are_refused_before_any_allocation(tmp_path, rate):
    path = tmp_path / "odd.wav"
    path.write_bytes(_wav_bytes(rate))
    with pytest.raises(AudioFileError) as err:
        read_audio(path)
    assert str(err.value).startswith(f"{path}: ")
    assert "implausible sample rate" in str(err.value) or "cannot read audio" in str(err.value)


@pytest.mark.parametrize("rate", [1000, 768000])
def test_the_extreme_plausible_rates_are_read(tmp_path, rate):
    path = tmp_path / "edge.wav"
    path.write_bytes(_wav_bytes(rate))
    samples, got = read_audio(path)
    assert got == rate and samples.shape == (100, 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_stop_the_stream_where_they_are(tmp_path, bad):
    path = tmp_path / "nan.wav"
    x = _signal(5000, 2)
    x[3500, 1] = bad
    soundfile.write(path, x, 16000, subtype="FLOAT")
    seen = []
    with AudioFile(path) as f, pytest.raises(AudioFileError, match="NaN or infinite"):
        for block in f.blocks(1000):
            seen.append(block)
    np.testing.assert_array_equal(np.concatenate(seen), x[:3000])   # the clean blocks came first
    with pytest.raises(AudioFileError, match="nan.wav: the file holds NaN or infinite samples"):
        read_audio(path)


@pytest.mark.parametrize("block", [1000, 4096, 70000])
def test_blocks_of_a_file_longer_than_one_read(tmp_path, block):
    from kwsd.audiofile import READ_FRAMES
    path = tmp_path / "long.flac"
    x = _signal(3 * READ_FRAMES + 123, 2)
    soundfile.write(path, x, 16000, subtype="PCM_24")
    whole, _ = soundfile.read(path, dtype="float32", always_2d=True)
    with AudioFile(path) as f:
        blocks = list(f.blocks(block))
    assert [b.shape[0] for b in blocks[:-1]] == [block] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_nan_past_the_first_read_stops_at_its_block(tmp_path):
    from kwsd.audiofile import READ_FRAMES
    path = tmp_path / "late-nan.wav"
    x = _signal(2 * READ_FRAMES + 500, 1)
    x[READ_FRAMES + 1500] = np.inf
    soundfile.write(path, x, 16000, subtype="DOUBLE")
    seen = []
    with AudioFile(path) as f, pytest.raises(AudioFileError, match="NaN or infinite"):
        for block in f.blocks(1024):
            seen.append(block)
    assert sum(b.shape[0] for b in seen) == (READ_FRAMES + 1500) // 1024 * 1024
