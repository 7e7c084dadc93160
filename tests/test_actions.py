"""Actions on a detection, on gpiozero's own MockFactory pins and real child processes."""

import logging
import os
import sys
import time

import pytest

from kwsd.actions import Actions
from kwsd.config import parse_config


class Det:
    keyword, score, time, wall_time = "stop", 0.912, 1.5, 1700000000.25


def wait_until(cond, timeout=5.0, what="condition"):
    """Poll ``cond`` until true; fail after ``timeout`` seconds (a deadline, not a delay)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def make(actions):
    cfg = parse_config({"model": "m", "gpio": {"pin_factory": "mock"}, "actions": actions})
    return Actions(cfg.actions, cfg.gpio.pin_factory)


def levels(pin):
    return [bool(s.state) for s in pin.states]


def test_led_lights_for_on_time_and_a_new_detection_restarts_it():
    acts = make([{"type": "led", "pin": "BOARD11", "on_time": 0.2}])
    led = acts.outputs()[0]
    pin = led.pin()
    assert led.describe() == "led GPIO17" and pin.state == 0
    acts.fire(Det())
    wait_until(lambda: pin.state == 1, what="LED on")
    acts.fire(Det())                        # restarts the on time, no flicker needed
    wait_until(lambda: pin.state == 0, what="LED off")
    assert levels(pin)[-1] is False and True in levels(pin)
    acts.close()
    assert pin.state == 0


def test_led_active_low_drives_the_pin_low_when_lit():
    acts = make([{"type": "led", "pin": 22, "on_time": 5, "active_high": False}])
    pin = acts.outputs()[0].pin()
    assert pin.state == 1                   # off = high for an active-low LED
    acts.fire(Det())
    wait_until(lambda: pin.state == 0, what="LED lit (low)")
    acts.close()                            # safe state: off (high) even mid-blink
    assert pin.state == 1


def test_relay_like_the_tutorial_on_at_start_off_on_stop_stays_off():
    acts = make([{"type": "relay", "pin": "GPIO27", "mode": "latch_off", "initial_value": True}])
    pin = acts.outputs()[0].pin()
    assert pin.state == 1
    acts.fire(Det())
    assert pin.state == 0
    acts.fire(Det())
    assert pin.state == 0
    acts.close()
    assert pin.state == 0


def test_relay_toggle_pulse_and_safe_state_on():
    acts = make([{"type": "relay", "pin": 5, "mode": "toggle", "safe_state": "on"},
                 {"type": "relay", "pin": 6, "mode": "pulse", "pulse_s": 0.1}])
    toggle, pulse = (o.pin() for o in acts.outputs())
    acts.fire(Det())
    assert toggle.state == 1
    wait_until(lambda: pulse.state == 0 and len(pulse.states) >= 3, what="pulse over")
    acts.fire(Det())
    assert toggle.state == 0
    assert levels(pulse)[:3] == [False, True, False]
    acts.close()
    assert toggle.state == 1                # its configured safe state
    assert pulse.state == 0


def test_pin_history_survives_close_and_ends_in_the_safe_state():
    acts = make([{"type": "relay", "pin": 13, "mode": "latch_on"}])
    acts.fire(Det())
    acts.close()
    (name, states), = acts.pin_history().items()
    assert name == "relay GPIO13"
    assert [v for _, v in states] == [False, True, False]
    times = [t for t, _ in states]
    assert times == sorted(times)


def test_command_gets_keyword_score_time_and_does_not_block(tmp_path):
    out, go = tmp_path / "env.txt", tmp_path / "go"
    script = (f'while [ ! -e "{go}" ]; do sleep 0.01; done; '
              f'echo "$KWSD_KEYWORD $KWSD_SCORE $KWSD_TIME" > "{out}.tmp"; mv "{out}.tmp" "{out}"')
    acts = make([{"type": "command", "argv": ["sh", "-c", script], "timeout_s": 30}])
    acts.fire(Det())          # returns although the command waits for `go`
    go.touch()
    wait_until(out.exists, what="command output")
    assert out.read_text().split() == ["stop", "0.912", "1700000000.250"]
    acts.close()


def test_command_argv_is_not_run_through_a_shell(tmp_path):
    out = tmp_path / "argv.txt"
    code = f"import sys; open({str(out)!r}, 'w').write(repr(sys.argv[1:]))"
    acts = make([{"type": "command", "argv": [sys.executable, "-c", code, "$HOME; rm -rf x", "*"]}])
    acts.fire(Det())
    wait_until(lambda: out.exists() and out.read_text(), what="argv file")
    assert out.read_text() == repr(["$HOME; rm -rf x", "*"])
    acts.close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def messages(self):
        return [r.getMessage() for r in list(self.records)]


@pytest.fixture
def records():
    h = _Records()
    logger = logging.getLogger("kwsd.actions")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield h
    logger.removeHandler(h)
    logger.setLevel(old)


def test_command_past_its_timeout_is_killed(tmp_path, records):
    pidfile = tmp_path / "pid"
    acts = make([{"type": "command", "timeout_s": 0.2,
                  "argv": ["sh", "-c", f'echo $$ > "{pidfile}.tmp"; mv "{pidfile}.tmp" "{pidfile}"; exec sleep 60']}])
    acts.fire(Det())
    wait_until(lambda: any("killed" in m for m in records.messages()), what="timeout kill")
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    acts.close()


def test_a_failing_action_does_not_stop_the_others(records):
    acts = make([{"type": "command", "argv": ["/nonexistent/kwsd-hook"]},
                 {"type": "led", "pin": 4, "on_time": 10}])
    acts.fire(Det())
    pin = acts.outputs()[1].pin()
    wait_until(lambda: pin.state == 1, what="LED on")
    wait_until(lambda: any("could not start" in m for m in records.messages()),
               what="error logged for the missing command")
    acts.close()
    assert pin.state == 0


def test_pin_factory_from_environment(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    from gpiozero import Device
    cfg = parse_config({"model": "m", "actions": [{"type": "led", "pin": 26}]})
    acts = Actions(cfg.actions, None)      # no gpio.pin_factory: gpiozero's own choice
    try:
        assert type(acts.outputs()[0].pin()).__name__.startswith("Mock")
    finally:
        acts.close()
        Device.pin_factory = None


# --- fault 5: shutdown order, process groups, a cap on running commands

def _alive(pid):
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _stubborn(tmp_path, i):
    """A command that records (monotonic time) when it gets SIGTERM, then ignores it."""
    code = ("import signal, sys, time\n"
            f"def on_term(*a): open({str(tmp_path / f'term{i}')!r}, 'w').write(repr(time.monotonic()))\n"
            "signal.signal(signal.SIGTERM, on_term)\n"
            f"open({str(tmp_path / f'up{i}')!r}, 'w').close()\n"
            "while True: time.sleep(1)\n")
    return {"type": "command", "argv": [sys.executable, "-c", code], "timeout_s": 600}


def test_outputs_go_safe_before_commands_are_stopped(tmp_path):
    """The old close() ran in reverse order: each command that ignored SIGTERM held the
    relay on for 0.5 s first. Now every output is safe before any command is signalled."""
    acts = make([{"type": "relay", "pin": 27, "mode": "latch_on"}, _stubborn(tmp_path, 0),
                 _stubborn(tmp_path, 1)])
    relay = acts.outputs()[0].pin()
    acts.fire(Det())
    wait_until(lambda: (tmp_path / "up0").exists() and (tmp_path / "up1").exists(),
               what="commands running")
    assert relay.state == 1
    acts.close()
    safe_at = acts.pin_history()["relay GPIO27"][-1]
    assert safe_at[1] is False
    for i in (0, 1):
        assert safe_at[0] < float((tmp_path / f"term{i}").read_text())


def test_a_commands_own_children_die_with_it_on_timeout_and_on_close(tmp_path):
    pids = []
    for i, timeout in enumerate((0.2, 600)):
        pidfile = tmp_path / f"pid{i}"
        acts = make([{"type": "command", "timeout_s": timeout, "argv": [
            "sh", "-c", f'sleep 600 & echo $! > "{pidfile}.tmp"; mv "{pidfile}.tmp" "{pidfile}"; wait']}])
        acts.fire(Det())
        wait_until(pidfile.exists, what="the background child's pid")
        pids.append(int(pidfile.read_text()))
        if timeout > 1:
            acts.close()                     # the daemon stopping
        wait_until(lambda: not _alive(pids[-1]), what=f"grandchild {pids[-1]} killed")
        acts.close()


def test_concurrent_copies_of_a_command_are_capped(tmp_path, records):
    from kwsd.actions import MAX_RUNNING
    acts = make([{"type": "command", "argv": ["sleep", "600"], "timeout_s": 600}])
    for _ in range(MAX_RUNNING + 3):
        acts.fire(Det())
    states = [r.kwsd_state for r in records.records if getattr(r, "kwsd_event", "") == "action"]
    assert states.count("started") == MAX_RUNNING
    assert sum(s.startswith("skipped") for s in states) == 3
    acts.close()


def test_a_nul_in_argv_is_an_error_message_not_a_dead_thread(records):
    from kwsd.actions import CommandAction
    from kwsd.config import CommandConfig
    cmd = CommandAction(CommandConfig(type="command", argv=("a\0b",), timeout_s=1.0))
    cmd.fire(Det())
    wait_until(lambda: any("could not start" in m for m in records.messages()),
               what="the error logged")
