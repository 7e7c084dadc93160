"""What happens on a detection: LEDs, relays and commands (``actions`` in the config).

Outputs are gpiozero devices, pins in gpiozero's naming; the pin factory comes from the
config (``gpio.pin_factory``) or gpiozero's own ``GPIOZERO_PIN_FACTORY`` variable
(``mock`` gives gpiozero's MockFactory pins: no hardware needed).

>>> import os; os.environ["GPIOZERO_PIN_FACTORY"] = "mock"
>>> from kwsd.config import parse_config
>>> cfg = parse_config({"model": "stop.tflite", "actions": [{"type": "led", "pin": "BOARD11"}]})
>>> acts = Actions(cfg.actions)
>>> acts.outputs()[0].describe()
'led GPIO17'
>>> acts.close()          # every output to its safe state, pins released
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

log = logging.getLogger("kwsd.actions")

#: At most this many copies of one command run at once; a detection meanwhile is logged and
#: the command is not started again (a slow hook cannot pile up processes).
MAX_RUNNING = 4


def make_pin_factory(name):
    """Return a gpiozero pin factory for ``name`` (``mock``, ``lgpio``, ...), or ``None``.

    ``None`` leaves the choice to gpiozero (``GPIOZERO_PIN_FACTORY`` or auto-detection).
    """
    if not name:
        return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory
        return MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory
        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory
        return RPiGPIOFactory()
    if name == "pigpio":
        from gpiozero.pins.pigpio import PiGPIOFactory
        return PiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory
        return NativeFactory()
    raise ValueError(f"unknown pin factory {name!r}")


class LedAction:
    """An LED on ``pin``: on for ``on_time`` seconds per detection (a new one restarts it)."""

    def __init__(self, spec, factory):
        from gpiozero import LED

        self.spec = spec
        self.led = LED(spec.pin, active_high=spec.active_high, initial_value=False,
                       pin_factory=factory)

    def describe(self):
        """Short human name, e.g. ``'led GPIO17'``."""
        return f"led {self.led.pin}"

    def fire(self, detection):
        """Light the LED for ``on_time`` seconds (gpiozero's background blink, once)."""
        self.led.blink(on_time=self.spec.on_time, off_time=0, n=1, background=True)
        return "on"

    def pin(self):
        """The gpiozero pin object (``MockPin`` under the mock factory)."""
        return self.led.pin

    def close(self):
        """Safe state: off, then release the pin."""
        self.led.off()
        self.led.close()


class RelayAction:
    """A relay (gpiozero ``DigitalOutputDevice``) switched by ``mode`` on each detection.

    ``pulse``: on for ``pulse_s`` then off; ``latch_on`` / ``latch_off``: stay on / off;
    ``toggle``: flip.  The tutorial's relay (on at start, off on "stop", stays off) is
    ``initial_value: true, mode: latch_off``.
    """

    def __init__(self, spec, factory):
        from gpiozero import DigitalOutputDevice

        self.spec = spec
        self.dev = DigitalOutputDevice(spec.pin, active_high=spec.active_high,
                                       initial_value=spec.initial_value,
                                       pin_factory=factory)

    def describe(self):
        """Short human name, e.g. ``'relay GPIO27'``."""
        return f"relay {self.dev.pin}"

    def fire(self, detection):
        """Apply the configured mode; return the new state as ``'on'`` / ``'off'``."""
        mode = self.spec.mode
        if mode == "pulse":
            self.dev.blink(on_time=self.spec.pulse_s, off_time=0, n=1, background=True)
            return "on"
        if mode == "latch_on":
            self.dev.on()
        elif mode == "latch_off":
            self.dev.off()
        else:
            self.dev.toggle()
        return "on" if self.dev.value else "off"

    def pin(self):
        """The gpiozero pin object."""
        return self.dev.pin

    def close(self):
        """Safe state (``safe_state``: off, on, or the initial value), then release."""
        safe = self.spec.safe_state
        if safe == "initial":
            safe = "on" if self.spec.initial_value else "off"
        self.dev.on() if safe == "on" else self.dev.off()
        self.dev.close()


class CommandAction:
    """Run ``argv`` (no shell) per detection, in the background, killed after ``timeout_s``.

    The child gets ``KWSD_KEYWORD``, ``KWSD_SCORE`` (e.g. ``0.912``) and ``KWSD_TIME``
    (Unix time of the detection, seconds) in its environment. It runs in its own process
    group: on timeout and on shutdown the whole group is killed, so what it started in the
    background goes too. At most :data:`MAX_RUNNING` run at once.
    """

    is_output = False

    def __init__(self, spec, factory=None):
        self.spec = spec
        self._lock = threading.Lock()
        self._running = set()
        self._starting = 0

    def describe(self):
        """Short human name, e.g. ``'command /usr/local/bin/stop-it'``."""
        return "command " + self.spec.argv[0]

    def fire(self, detection):
        """Start the command and return at once; a thread waits for it."""
        with self._lock:
            if len(self._running) + self._starting >= MAX_RUNNING:
                return f"skipped ({MAX_RUNNING} still running)"
            self._starting += 1
        env = dict(os.environ,
                   KWSD_KEYWORD=str(getattr(detection, "keyword", "") or ""),
                   KWSD_SCORE=f"{detection.score:.3f}",
                   KWSD_TIME=f"{getattr(detection, 'wall_time', time.time()):.3f}")
        threading.Thread(target=self._run, args=(env,), name="kwsd-command",
                         daemon=True).start()
        return "started"

    def _run(self, env):
        argv = list(self.spec.argv)
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except (OSError, ValueError) as err:
            with self._lock:
                self._starting -= 1
            log.error("command %s could not start: %s", argv[0],
                      getattr(err, "strerror", None) or err,
                      extra={"kwsd_event": "action_error"})
            return
        with self._lock:
            self._starting -= 1
            self._running.add(proc)
        try:
            code = proc.wait(timeout=self.spec.timeout_s)
            if code != 0:
                log.warning("command %s exited with status %s", argv[0], code,
                            extra={"kwsd_event": "action_error"})
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
            log.warning("command %s still running after %ss: killed", argv[0],
                        self.spec.timeout_s, extra={"kwsd_event": "action_error"})
        finally:
            _kill_group(proc, signal.SIGKILL)      # whatever it left behind in its group
            with self._lock:
                self._running.discard(proc)

    def pin(self):
        """Commands have no pin."""
        return None

    def terminate(self):
        """SIGTERM to every running copy's process group; returns those copies."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_group(proc, signal.SIGTERM)
        return running

    def close(self, deadline=None, running=None):
        """Terminate the commands still running with their process groups: SIGTERM, then
        SIGKILL for those still there at ``deadline`` (monotonic; default 0.5 s from now)."""
        deadline = time.monotonic() + 0.5 if deadline is None else deadline
        running = self.terminate() if running is None else running
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(proc, signal.SIGKILL)


def _kill_group(proc, sig):
    """Send ``sig`` to the process group ``proc`` leads (it was started in a new session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_KINDS = {"led": LedAction, "relay": RelayAction, "command": CommandAction}


class Actions:
    """The configured list of actions, fired in order on each detection.

    ``specs`` are the validated ``actions`` of a :class:`kwsd.config.Config`.
    One action failing is logged and does not stop the others.
    """

    def __init__(self, specs, pin_factory=None):
        self.factory = make_pin_factory(pin_factory)
        self._items = []
        try:
            for spec in specs:
                self._items.append(_KINDS[spec.type](spec, self.factory))
        except Exception:
            self.close()
            raise
        self._pins = [(item.describe(), item.pin()) for item in self._items]

    def outputs(self):
        """The action objects, in config order."""
        return list(self._items)

    def fire(self, detection):
        """Run every action for ``detection``; log each output change (with its time)."""
        for item in self._items:
            try:
                state = item.fire(detection)
            except Exception as err:   # a broken output must not stop detection
                log.error("%s failed: %s", item.describe(), err,
                          extra={"kwsd_event": "action_error"})
                continue
            (log.warning if state.startswith("skipped") else log.info)(
                "%s %s", item.describe(), state,
                extra={"kwsd_event": "action", "kwsd_action": item.describe(),
                       "kwsd_state": state, "kwsd_mono": f"{time.monotonic():.6f}"})

    def pin_history(self):
        """Per output, the mock pin's changes as ``(monotonic_time, state)`` pairs.

        Only under gpiozero's MockFactory (whose pins record their history); ``{}`` otherwise.
        Still available after :meth:`close`, so the history includes the safe state.
        """
        out = {}
        for name, pin in self._pins:
            states = getattr(pin, "states", None)
            last = getattr(pin, "_last_change", None)
            if states is None or last is None:
                continue
            times, t = [], last
            for st in reversed(states):   # each timestamp is the time since the previous one
                times.append(t)
                t -= st.timestamp
            times.reverse()
            out[name] = [(tt, bool(st.state)) for tt, st in zip(times, states)]
        return out

    def close(self):
        """Every output (LED, relay) to its safe state first, pins released; then the
        running commands are stopped (all together, within 0.5 s)."""
        items, self._items = self._items, []
        for item in items:
            if getattr(item, "is_output", True):
                try:
                    item.close()
                except Exception as err:
                    log.error("%s: could not reach its safe state: %s", item.describe(), err)
        commands = [item for item in items if not getattr(item, "is_output", True)]
        running = [item.terminate() for item in commands]       # all signalled at once
        deadline = time.monotonic() + 0.5
        for item, procs in zip(commands, running):
            item.close(deadline, procs)
