"""Device formats: a 48 kHz stereo microphone (resampled to the model's 8 kHz, one channel
selected) and `samplerate: auto` opening at the model's own rate."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from daemon_harness import (OTHER_CLIPS, SEED_MODEL, SPEECH, STOP_CLIPS, Daemon, FifoMic,
                            clip, write_config)

pytestmark = pytest.mark.skipif(not (SEED_MODEL.is_file() and SPEECH.is_dir()),
                                reason=f"needs ../shared (tutorial model {SEED_MODEL} and "
                                f"real clips {SPEECH}); clone with shared/ beside the repo")


def at(rate, x):
    """A 16 kHz clip at ``rate`` (int16)."""
    y = resample_poly(x.astype(np.float64), rate // 1000, 16)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def test_48k_stereo_device_uses_only_the_configured_channel(tmp_path):
    rate = 48000
    mic = FifoMic(tmp_path, rate=rate, channels=2)
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL,
                       audio={"samplerate": rate, "channels": 2, "channel": 1})
    d = Daemon(cfg, tmp_path, mic)
    try:
        d.wait_notify("READY", "1", timeout=60)
        opened = d.lines[d.wait_event("audio_open")][1]
        assert opened["KWSD_RATE"] == "48000"
        quiet = np.zeros((rate // 2, 2), np.int16)

        def both(left, right):
            n = max(left.size, right.size)
            out = np.zeros((n, 2), np.int16)
            out[:left.size, 0], out[:right.size, 1] = left, right
            return out

        stop_a, stop_b = at(rate, clip(STOP_CLIPS[0])), at(rate, clip(STOP_CLIPS[1]))
        other = at(rate, clip(OTHER_CLIPS[0]))
        mic.say(quiet)
        mic.say(both(other, stop_a))                       # "stop" on channel 1: heard
        mic.say(quiet)
        mic.say(quiet)
        mic.say(both(stop_b, np.zeros(0, np.int16)))       # "stop" on channel 0 only: not
        mic.say(np.zeros((rate * 2, 2), np.int16), mark="end")
        d.wait_event("detection")
        mic.mark_time("end")
        d.wait_notify("WATCHDOG", "1", start=len(d.notes))  # the last audio has been scored
        assert d.terminate() == 0
    finally:
        d.close()
        mic.close()
    assert len(d.events("detection")) == 1, d.log_text()


def test_samplerate_auto_opens_at_the_models_rate(tmp_path):
    mic = FifoMic(tmp_path, rate=8000)        # the tutorial model's rate
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL, audio={"samplerate": "auto"})
    d = Daemon(cfg, tmp_path, mic)
    try:
        d.wait_notify("READY", "1", timeout=60)
        assert d.lines[d.wait_event("audio_open")][1]["KWSD_RATE"] == "8000"
        mic.say(np.zeros(4000, np.int16))
        mic.say(at(8000, clip(STOP_CLIPS[2])))
        mic.say(np.zeros(8000, np.int16))
        d.wait_event("detection")
        assert d.terminate() == 0
    finally:
        d.close()
        mic.close()
