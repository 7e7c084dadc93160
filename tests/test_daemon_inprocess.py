"""The daemon in process and deterministic: an array source written block by block, a fake
clock, every step in the test's thread (or the real threads where the test is about them),
a real NOTIFY_SOCKET listener, gpiozero mock pins, the real TFLite model."""

import dataclasses
import logging
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from daemon_harness import SEED_MODEL, SPEECH, STOP_CLIPS, clip, silence
from kwsd.config import parse_config
from kwsd.service import Service
from kwsd.sources import ArraySource
from kwsd.systemd import Notifier

needs_shared = pytest.mark.skipif(not (SEED_MODEL.is_file() and SPEECH.is_dir()),
                                  reason=f"needs ../shared (tutorial model {SEED_MODEL} and "
                                  f"real clips {SPEECH}); clone with shared/ beside the repo")
TINY = os.path.join(os.path.dirname(__file__), "data", "tiny_float.tflite")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class NotifyListener:
    """A real NOTIFY_SOCKET: the datagrams the service sends, as dicts."""

    def __init__(self, folder):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.notes = []

    def notifier(self, watchdog_usec=1_000_000):
        return Notifier(env={"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(watchdog_usec)})

    def read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.notes
            self.notes.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def count(self, key):
        return sum(key in n for n in self.read())


def wait_until(cond, what, timeout=10.0):
    """Poll ``cond`` until true; fail after ``timeout`` s (a deadline, not a delay)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def make_service(model, samples, clock=None, notifier=None, **sections):
    data = {"model": str(model), "gpio": {"pin_factory": "mock"}, "watch_interval_s": 0.1,
            "detector": {"max_lag_s": 60.0},
            "actions": [{"type": "led", "pin": 17, "on_time": 0.05}]}
    data.update(sections)
    cfg = parse_config(data)
    src = ArraySource(samples, 16000)
    svc = Service(cfg, source=src, notifier=notifier or Notifier(env={}),
                  clock=clock or Clock())
    return svc, src


def play(svc, src, seconds, clock=None, until=None, step_s=0.02):
    """Feed ``seconds`` of the source in 20 ms steps (stop early when ``until()``)."""
    end = src.position + int(seconds * src.rate)
    while src.position < min(end, src.samples.shape[0]):
        src.feed(step_s)
        svc.step()
        if clock is not None:
            clock.now += step_s
        if until is not None and until():
            return True
    return False


def speech():
    """Silence, a "stop" the tutorial model spots at every hop phase, silence."""
    return np.concatenate([silence(0.5), clip(STOP_CLIPS[0]), silence(2.0)])


@needs_shared
@pytest.mark.parametrize("how", ["reload", "swap"])
def test_a_reload_or_model_swap_right_after_a_detection_never_repeats_it(tmp_path, how):
    """Fault 1: the new generation's front end is primed with the last second of audio (the
    word is in it); it must take over the old detector's history instead of firing again."""
    model = tmp_path / "stop.tflite"
    shutil.copyfile(SEED_MODEL, model)
    clock = Clock()
    svc, src = make_service(model, speech(), clock)
    svc.start(threads=False)
    hops = []
    svc.pipeline.observers.append(hops.append)
    assert play(svc, src, 10, clock, until=lambda: svc.status.detections == 1)
    first = svc.models.generation
    if how == "reload":
        svc.reload()                         # what SIGHUP does
    else:
        os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))   # "a new file"
        clock.now += 1.0                     # the next poll is due
    play(svc, src, 10, clock)
    svc.shutdown()
    assert svc.models.generation.number == first.number + 1
    # the new generation judged the word again (its primed windows scored high) ...
    again = [h for h in hops if h.generation > first.number and h.smoothed >= 0.5]
    assert again, "the new path never saw the word: the test proves nothing"
    # ... and did not fire: one detection, one LED pulse
    assert svc.status.detections == 1
    assert [h.detection is not None for h in hops].count(True) == 1


@needs_shared
def test_windows_further_behind_than_max_lag_are_skipped_and_counted(tmp_path):
    samples = speech()
    svc, src = make_service(SEED_MODEL, samples, detector={"max_lag_s": 0.3})
    svc.start(threads=False)
    hops = []
    svc.pipeline.observers.append(hops.append)
    src.feed(1.0)                               # audio arrives ...
    svc.feeder.step(0)                          # ... features computed ...
    src.feed(1.0)
    svc.feeder.step(0)                          # ... while the decision side was stalled
    queued = len(svc.pipeline.windows)
    svc.feeder.decide_step(0)
    assert svc.pipeline.skipped > 0
    assert svc.pipeline.skipped + svc.pipeline.decided == queued
    assert hops and all(svc.pipeline.stream_time - h.time <= 0.3 for h in hops)
    assert "skipped" in svc.status_text()
    svc.shutdown()


def test_ready_at_once_and_watchdog_while_the_microphone_is_missing(tmp_path):
    """Fault 6: a microphone missing at boot: READY=1 with "audio waiting"/"lost" in STATUS=,
    and WATCHDOG=1 keeps coming because the capture supervisor's retry loop is alive."""
    listener = NotifyListener(tmp_path)
    clock = Clock()
    cfg = parse_config({"model": TINY, "audio": {"device": "no-such-microphone",
                                                 "retry_initial_s": 0.05, "retry_max_s": 0.1}})
    svc = Service(cfg, notifier=listener.notifier(), clock=clock, actions=False)
    svc.start()
    try:
        notes = listener.read()
        assert notes[0]["READY"] == "1"
        assert "audio waiting" in notes[0]["STATUS"] or "audio lost" in notes[0]["STATUS"]
        pings = 0
        for _ in range(3):
            beats = svc.heartbeats()
            assert set(beats) == {"kwsd-features", "kwsd-decide", "source"}
            wait_until(lambda: all(svc.heartbeats()[k] != v for k, v in beats.items()),
                       "every thread to make progress")
            clock.now += 0.5
            pings += svc.supervisor.tick(svc.status_text(), svc.heartbeats())
        assert pings == 3 and listener.count("WATCHDOG") == 3
        wait_until(lambda: "audio lost" in svc.status_text(), "the loss in STATUS=")
    finally:
        svc.shutdown()


def test_no_watchdog_while_a_thread_is_stuck(tmp_path):
    """The other half of the contract: a thread that stops making progress (here the
    decision thread, held by an observer) stops WATCHDOG=1; it resumes when it moves."""
    listener = NotifyListener(tmp_path)
    clock = Clock()
    svc, src = make_service(TINY, np.zeros(48000, np.int16), clock, listener.notifier())
    svc.start()
    entered, release = threading.Event(), threading.Event()

    def hold(hop):
        entered.set()
        release.wait(30)
    svc.pipeline.observers.append(hold)
    try:
        src.feed(1.5)
        assert entered.wait(30)
        stuck = svc.heartbeats()["kwsd-decide"]
        assert svc.supervisor.tick(svc.status_text(), svc.heartbeats())     # first ping
        features = svc.heartbeats()["kwsd-features"]
        wait_until(lambda: svc.heartbeats()["kwsd-features"] != features, "feature thread")
        clock.now += 0.5
        warnings = []
        handler = logging.Handler()
        handler.emit = warnings.append
        logging.getLogger("kwsd.supervisor").addHandler(handler)
        try:
            assert not svc.supervisor.tick(svc.status_text(), svc.heartbeats())
        finally:
            logging.getLogger("kwsd.supervisor").removeHandler(handler)
        assert svc.heartbeats()["kwsd-decide"] == stuck
        assert [(w.kwsd_event, w.kwsd_thread) for w in warnings] == [("stuck", "kwsd-decide")]
        release.set()
        wait_until(lambda: svc.heartbeats()["kwsd-decide"] != stuck, "decision thread")
        clock.now += 0.5
        assert svc.supervisor.tick(svc.status_text(), svc.heartbeats())
        assert listener.count("WATCHDOG") == 2
    finally:
        release.set()
        svc.shutdown()


def test_config_objects_are_frozen_and_replace_makes_a_copy():
    cfg = parse_config({"model": TINY})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.block_s = 1.0
    other = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, block_s=0.05))
    assert (cfg.audio.block_s, other.audio.block_s) == (0.02, 0.05)
