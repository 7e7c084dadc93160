"""`kwsd run` end to end: the daemon as a subprocess capturing through PortAudio from an ALSA
FIFO device fed with real speech in real time, gpiozero mock pins, a NOTIFY_SOCKET listener."""


import pytest

from daemon_harness import (OTHER_CLIPS, SEED_MODEL, SPEECH, STOP_CLIPS, Daemon, FifoMic,
                            clip, pin_histories, silence, write_config)

pytestmark = pytest.mark.skipif(not (SEED_MODEL.is_file() and SPEECH.is_dir()),
                                reason=f"needs ../shared (tutorial model {SEED_MODEL} and "
                                f"real clips {SPEECH}); clone with shared/ beside the repo")


@pytest.fixture
def mic(tmp_path):
    m = FifoMic(tmp_path)
    yield m
    m.close()


def test_each_stop_detected_once_led_and_command_then_sigterm_safe_state(tmp_path, mic):
    out = tmp_path / "hook.txt"
    cfg = write_config(tmp_path / "kwsd.yaml", SEED_MODEL, actions=[
        {"type": "led", "pin": "GPIO17", "on_time": 0.3},
        {"type": "relay", "pin": "GPIO27", "mode": "latch_off", "initial_value": True,
         "safe_state": "off"},
        {"type": "command", "argv": ["sh", "-c",
                                     f'echo "$KWSD_KEYWORD $KWSD_SCORE $KWSD_TIME" >> "{out}"']},
    ])
    d = Daemon(cfg, tmp_path, mic)
    try:
        ready = d.wait_notify("READY", "1", timeout=60)
        assert "model wake_word_stop_lite.tflite" in d.notes[ready]["STATUS"]
        # three "stop"s among other words, 1.2 s apart
        script = [STOP_CLIPS[0], OTHER_CLIPS[0], STOP_CLIPS[1], OTHER_CLIPS[1], STOP_CLIPS[2]]
        for i, name in enumerate(script):
            mic.say(silence(0.6))
            mic.say(clip(name), mark=f"clip{i}")
        mic.say(silence(1.5), mark="end")
        mic.mark_time("end")
        d.wait_event("detection", timeout=30)
        n_log, _ = d.mark()
        mic.say(silence(0.3), mark="after")       # one more hop of quiet: nothing pending
        mic.mark_time("after")
        d.wait_notify("STATUS", contains="detections 3", timeout=30)
        dets = d.events("detection")
        assert len(dets) == 3, d.log_text()
        assert all(f["KWSD_KEYWORD"] == "stop" and float(f["KWSD_SCORE"]) >= 0.5 for f in dets)
        # each detection is the "stop" just spoken: its stream time lies after that clip
        times = [float(f["KWSD_STREAM_TIME"]) for f in dets]
        assert times == sorted(times) and times[1] - times[0] > 2 and times[2] - times[1] > 2
        # the watchdog was fed while listening
        assert sum("WATCHDOG" in n for n in d.notes[ready:]) >= 2
        stopping_from = len(d.notes)
        assert d.terminate() == 0
    finally:
        d.close()
    assert any(n.get("STOPPING") == "1" for n in d.notes[stopping_from:])
    hist = pin_histories(d)
    led = [v for _, v in hist["led GPIO17"]]
    assert led == [False] + [True, False] * 3        # lit once per detection, off at the end
    relay = [v for _, v in hist["relay GPIO27"]]
    assert relay == [False, True, False]             # on at start, off on "stop", stays off
    lines = out.read_text().split("\n")[:-1]
    assert len(lines) == 3
    for line, det in zip(lines, dets):
        keyword, score, when = line.split()
        assert keyword == "stop" and score == det["KWSD_SCORE"] and float(when) > 1.7e9
    assert d.events("safe_state")
