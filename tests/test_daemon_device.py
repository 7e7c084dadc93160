"""The capture device stalling, vanishing and coming back: the daemon logs it, shows it in
STATUS=, keeps feeding the watchdog (its threads are alive), retries with backoff, resumes
and detects again."""

import pytest

from daemon_harness import (SEED_MODEL, SPEECH, STOP_CLIPS, Daemon, FifoMic, clip, silence,
                            write_config)

pytestmark = pytest.mark.skipif(not (SEED_MODEL.is_file() and SPEECH.is_dir()),
                                reason=f"needs ../shared (tutorial model {SEED_MODEL} and "
                                f"real clips {SPEECH}); clone with shared/ beside the repo")


def test_device_vanishes_mid_run_and_comes_back(tmp_path):
    mic = FifoMic(tmp_path)
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL,
                       actions=[{"type": "led", "pin": 17, "on_time": 0.2}])
    d = Daemon(cfg, tmp_path, mic)
    try:
        ready = d.wait_notify("READY", "1", timeout=60)
        mic.say(silence(0.5))
        mic.say(clip(STOP_CLIPS[0]))
        mic.say(silence(1.0))
        d.wait_event("detection")
        d.wait_notify("WATCHDOG", "1", start=ready)

        # the microphone stops delivering (reads block), then disappears altogether
        log0, note0 = d.mark()
        mic.pause()
        lost = d.wait_event("audio_lost", start=log0)
        assert "no audio" in d.lines[lost][1]["KWSD_REASON"]
        mic.unplug()
        # not found while it is away: retried with growing delays, never exits
        r1 = d.wait_event("audio_retry", start=lost)
        r2 = d.wait_event("audio_retry", start=r1 + 1)
        assert float(d.lines[r2][1]["KWSD_RETRY_S"]) > float(d.lines[r1][1]["KWSD_RETRY_S"])
        assert "kwsdmic" in d.lines[r1][0]
        lost_note = d.wait_notify("STATUS", contains="audio lost", start=note0)
        # the watchdog contract: the process and its threads, the retrying capture
        # supervisor among them, make progress, so WATCHDOG=1 goes on while the mic is away
        d.wait_notify("WATCHDOG", "1", start=lost_note)

        # plugged in again: reopened, READY state kept, detects again
        mic.plug()
        d.wait_event("audio_open", start=r2)
        back = d.wait_notify("STATUS", contains="audio running", start=lost_note)
        log1, _ = d.mark()
        mic.say(silence(0.5))
        mic.say(clip(STOP_CLIPS[1]))
        mic.say(silence(1.0))
        d.wait_event("detection", start=log1)
        d.wait_notify("WATCHDOG", "1", start=back)
        assert d.proc.poll() is None
        assert d.terminate() == 0
    finally:
        d.close()
        mic.close()
    assert len(d.events("detection")) == 2


def test_a_device_delivering_faster_than_real_time_is_reopened(tmp_path):
    """Fault 6: a FIFO at end-of-file made the stream deliver "audio" far faster than real
    time: the daemon spun with millions of overflows and never reopened it."""
    mic = FifoMic(tmp_path)
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL)
    d = Daemon(cfg, tmp_path, mic)
    try:
        d.wait_notify("READY", "1", timeout=60)
        opened = d.wait_event("audio_open")
        mic.say(silence(0.5), mark="start")
        mic.mark_time("start")
        mic.eof()
        lost = d.wait_event("audio_lost", start=opened)
        assert "faster than real time" in d.lines[lost][1]["KWSD_REASON"]
        mic.plug()
        d.wait_event("audio_open", start=lost)
        log1, _ = d.mark()
        mic.say(silence(0.5))
        mic.say(clip(STOP_CLIPS[2]))
        mic.say(silence(1.0))
        d.wait_event("detection", start=log1)
        assert d.terminate() == 0
    finally:
        d.close()
        mic.close()
