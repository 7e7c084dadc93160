"""The streaming front end produces exactly the batch features, whatever the block size."""

import numpy as np
import pytest

from kwsd.frontend import FeatureStream, Resampler, resample_signal
from kwsd.profiles import PROFILES, get_profile


def _noise(seconds, rate, seed=0):
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
@pytest.mark.parametrize("input_rate", [48000, 44100, 16000])
@pytest.mark.parametrize("block", [7, 160, 1024, 4801])
def test_streamed_windows_equal_batch_features(profile_name, input_rate, block):
    profile = get_profile(profile_name)
    audio = _noise(1.6, input_rate)
    stream = FeatureStream(profile, input_rate, hop_s=0.1)
    windows = []
    for start in range(0, audio.size, block):
        windows += stream.push(audio[start:start + block])
    windows += stream.flush()
    resampled = resample_signal(audio, input_rate, profile.sample_rate)
    expected = int(round((resampled.size / profile.sample_rate - profile.window_s) / 0.1)) + 1
    assert len(windows) == expected
    for w in windows:
        end = int(round(w.time * profile.sample_rate))
        np.testing.assert_allclose(w.features, profile.features(resampled[:end]), rtol=0, atol=1e-4)


def test_windows_come_every_hop_from_the_first_full_second():
    stream = FeatureStream(get_profile("logmel40"), 48000, hop_s=0.1)
    times = [w.time for w in stream.push(np.zeros(48000 * 2, np.int16)) + stream.flush()]
    assert times == pytest.approx([1.0 + 0.1 * i for i in range(11)])


def test_int16_and_float_input_agree_and_channels_mix_or_select():
    profile = get_profile("logmel40")
    mono = (_noise(1.2, 16000) * 32767).astype(np.int16)
    as_float = mono.astype(np.float32) / 32768.0
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)
    a = FeatureStream(profile, 16000).push(mono)
    b = FeatureStream(profile, 16000).push(as_float)
    picked = FeatureStream(profile, 16000, channel=0).push(stereo)
    mixed = FeatureStream(profile, 16000, channel="mix").push(stereo)
    np.testing.assert_allclose(a[-1].features, b[-1].features, atol=1e-5)
    np.testing.assert_allclose(a[-1].features, picked[-1].features, atol=1e-5)
    # mixing in a silent channel halves the amplitude: log-mel drops by log(4)
    np.testing.assert_allclose(mixed[-1].features, a[-1].features - np.log(4), atol=1e-3)


def test_blocks_of_changing_type_and_channel_count_mix_as_each_alone():
    """A device reopened as float32 stereo after int16 mono: each block is converted as itself."""
    profile = get_profile("logmel40")
    mono = (_noise(2.0, 48000) * 32767).astype(np.int16)
    as_float = mono.astype(np.float64) / 32768.0
    reference = FeatureStream(profile, 48000).push(as_float)
    mixed = FeatureStream(profile, 48000)
    windows, start = [], 0
    for i, n in enumerate([1000, 4000, 333, 20000] * 10):
        part = mono[start:start + n]
        if i % 3 == 1:                       # float32 stereo, both channels the same
            part = np.repeat((part / 32768.0).astype(np.float32)[:, None], 2, axis=1)
        elif i % 3 == 2:                     # int16, one channel
            part = part[:, None]
        windows += mixed.push(part)
        start += n
    assert len(windows) == len(reference) > 5
    for a, b in zip(windows, reference):
        assert a.time == b.time
        np.testing.assert_allclose(a.features, b.features, atol=1e-6)


@pytest.mark.parametrize("in_rate, out_rate", [(48000, 16000), (44100, 16000), (16000, 8000),
                                               (8000, 16000), (22050, 16000)])
def test_resampler_blocks_of_any_sizes_equal_one_call(in_rate, out_rate):
    x = _noise(0.7, in_rate).astype(np.float64)
    whole = resample_signal(x, in_rate, out_rate)
    assert abs(whole.size - x.size * out_rate / in_rate) < 1
    for sizes in ([1], [7, 1000], [999], [160, 4801, 3]):
        r = Resampler(in_rate, out_rate)
        parts, start, i = [], 0, 0
        while start < x.size:
            n = sizes[i % len(sizes)]
            parts.append(r.process(x[start:start + n]))
            start, i = start + n, i + 1
        np.testing.assert_array_equal(np.concatenate(parts + [r.flush()]), whole)


def test_resampler_passes_speech_band_and_removes_aliases():
    t = np.arange(48000) / 48000
    # a 12 kHz tone cannot pass to 16 kHz (Nyquist 8 kHz): it must not fold back
    y = resample_signal(np.sin(2 * np.pi * 12000 * t), 48000, 16000)
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 1e-4
    # 1 kHz and 7 kHz tones (the mel filters reach 7.6 kHz) pass at full strength
    for f in (1000, 7000):
        y = resample_signal(np.sin(2 * np.pi * f * t), 48000, 16000)
        assert np.sqrt(np.mean(y[1000:-1000] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.01)


def test_a_channel_the_audio_lacks_is_refused_at_once():
    stream = FeatureStream(get_profile("logmel40"), 16000, channel=2)
    with pytest.raises(ValueError, match="channel 2 asked for; the audio has 2 channel"):
        stream.push(np.zeros((320, 2), np.int16))


def test_flushing_twice_gives_nothing_more():
    stream = FeatureStream(get_profile("logmel40"), 48000)
    windows = stream.push(np.zeros(48000 * 2, np.int16))
    assert len(windows + stream.flush()) == 11
    assert stream.flush() == []
    assert FeatureStream(get_profile("logmel40"), 44100).flush() == []


def test_audio_at_the_profile_rate_is_not_touched():
    x = _noise(0.3, 16000).astype(np.float64)
    r = Resampler(16000, 16000)
    np.testing.assert_array_equal(np.concatenate([r.process(x[:1000]), r.process(x[1000:]), r.flush()]), x)
    np.testing.assert_array_equal(resample_signal(x, 16000, 16000), x)


def test_tutorial_profile_reproduces_the_tutorial_recipe():
    """The seed README's exact call: mfcc(8 kHz second, winlen .256, step .05, ...) transposed."""
    import python_speech_features as psf

    profile = get_profile("tutorial-mfcc16")
    sig = _noise(1.0, 8000, seed=3).astype(np.float64)
    expected = psf.mfcc(sig, samplerate=8000, winlen=0.256, winstep=0.050, numcep=16, nfilt=26,
                        nfft=2048, preemph=0.0, ceplifter=0, appendEnergy=False, winfunc=np.hanning)
    ours = profile.features(sig)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
    assert profile.to_tensor(ours).shape == (1, 16, 16, 1)
    np.testing.assert_allclose(profile.to_tensor(ours)[0, :, :, 0], expected.T, atol=1e-4)


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_framing_spectrum_and_filterbank_are_python_speech_features_bit_for_bit(profile_name):
    import python_speech_features as psf
    from python_speech_features import sigproc

    from kwsd.profiles import frame_signal, mel_filterbank, power_spectrum
    p = get_profile(profile_name)
    high = p.highfreq or p.sample_rate / 2
    np.testing.assert_array_equal(mel_filterbank(p.nfilt, p.nfft, p.sample_rate, p.lowfreq, high),
                                  psf.get_filterbanks(p.nfilt, p.nfft, p.sample_rate, p.lowfreq, high))
    for n in (p.frame_samples - 1, p.frame_samples, p.frame_samples + 1, p.window_samples, 12345):
        x = _noise(n / p.sample_rate, p.sample_rate, seed=n).astype(np.float64)
        theirs = sigproc.framesig(x, p.frame_samples, p.step_samples)
        ours = frame_signal(x, p.frame_samples, p.step_samples)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(power_spectrum(ours, p.nfft), sigproc.powspec(theirs, p.nfft))


def test_the_log_mel_path_imports_neither_scipy_nor_python_speech_features():
    """They cost the daemon ~30 MB; only the tutorial's MFCC profile loads them, on demand."""
    import subprocess
    import sys
    code = ("import sys, numpy as np; from kwsd.profiles import get_profile; "
            "from kwsd.frontend import FeatureStream; "
            "FeatureStream(get_profile('logmel40'), 48000).push(np.ones(96000, np.int16)); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'python_speech_features'})); "
            "get_profile('tutorial-mfcc16').features(np.ones(8000)); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'python_speech_features'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['python_speech_features', 'scipy']"]
