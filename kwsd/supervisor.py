"""The process supervisor: signals, ``sd_notify`` (READY / STATUS / WATCHDOG) and the health
of the daemon's threads, on the main thread.

The watchdog contract (``WatchdogSec=`` in the unit):

* ``READY=1`` as soon as the config and the model are loaded, the outputs set up and the
  threads started, whether or not the microphone is there yet (``STATUS=`` then says
  ``audio waiting``; a microphone missing at boot is not a start-up failure).
* ``WATCHDOG=1`` every ``WatchdogSec/2`` while *every* thread makes progress: the feature
  thread, the decision thread and the capture supervisor each advance a heartbeat on every
  pass of their loops, also while they wait for audio or retry a missing device. A thread
  that hangs (a driver call that never returns, a deadlock) stops the pings and systemd
  restarts the service; a microphone that is unplugged does not (it shows as
  ``audio lost (...)`` in ``STATUS=`` and ``KWSD_EVENT=audio_lost`` in the journal).
* A thread that dies ends the process: the error is logged and the exit status says what
  it was (69: a missing system library such as libportaudio; 70: a bug).

>>> sup = Supervisor(Notifier(env={}), clock=lambda: 0.0)
>>> sup.tick("detections 0; audio waiting", {"features": 1})
False
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from contextlib import contextmanager

from kwsd.errors import EX_SOFTWARE, KwsdError
from kwsd.systemd import Notifier

log = logging.getLogger("kwsd.supervisor")

__all__ = ["Supervisor", "Notifier"]


class Supervisor:
    """Signals in, notifications out, thread health watched.

    Args:
        notifier: a :class:`~kwsd.systemd.Notifier`.
        clock: monotonic seconds (a test passes a fake clock).
    """

    def __init__(self, notifier, clock=time.monotonic):
        self.notifier = notifier
        self.clock = clock
        self.wake = threading.Event()
        self.signals = collections.deque()
        self.fatal = None                 # (thread name, exception) of the first death
        self._last_status = None
        self._seen = None
        self._next_ping = None
        self._stuck = None

    # ---------------------------------------------------------------- signals
    def _on_signal(self, signum, frame):
        self.signals.append(signum)
        self.wake.set()

    @contextmanager
    def signal_handlers(self):
        """SIGTERM, SIGINT and SIGHUP queue into :attr:`signals` while inside."""
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def on_fatal(self, name, error):
        """A thread died (called from that thread): the main loop ends the process."""
        if self.fatal is None:
            self.fatal = (name, error)
        self.wake.set()

    def fatal_status(self) -> int:
        """Log the dead thread's error; return the exit status for it."""
        name, err = self.fatal
        if isinstance(err, KwsdError):
            log.error("%s", err, extra={"kwsd_event": "fatal", "kwsd_thread": name})
            return err.exit_status
        log.error("thread %s died: %s: %s", name, type(err).__name__, err,
                  exc_info=(type(err), err, err.__traceback__),
                  extra={"kwsd_event": "fatal", "kwsd_thread": name})
        return EX_SOFTWARE

    # ---------------------------------------------------------------- notify
    def ready(self, status):
        """``READY=1`` with the status line."""
        self.notifier.ready(status)
        self._last_status = status
        log.info("ready: %s", status, extra={"kwsd_event": "ready"})

    def reloaded(self, status):
        """``READY=1`` after a reload (``RELOADING=1`` was sent by :meth:`reloading`)."""
        self.notifier.ready(status)
        self._last_status = status

    def reloading(self):
        """``RELOADING=1``."""
        self.notifier.reloading()

    def tick(self, status, heartbeats) -> bool:
        """Send ``STATUS=`` if it changed, and ``WATCHDOG=1`` when due and every heartbeat
        in ``heartbeats`` (``{name: counter}``) moved since the last ping. True if pinged."""
        if status != self._last_status:
            self.notifier.status(status)
            self._last_status = status
        interval = self.notifier.watchdog_interval
        if not interval:
            return False
        now = self.clock()
        if self._next_ping is not None and now < self._next_ping:
            return False
        if self._seen is not None:
            stuck = [n for n, beat in heartbeats.items() if self._seen.get(n) == beat]
            if stuck:                     # try again next tick; systemd may restart us
                if stuck != self._stuck:
                    log.warning("no progress in %s: not feeding the watchdog", ", ".join(stuck),
                                extra={"kwsd_event": "stuck", "kwsd_thread": ",".join(stuck)})
                self._stuck = stuck
                return False
        self._stuck = None
        self.notifier.watchdog()
        self._seen = dict(heartbeats)
        self._next_ping = now + interval
        return True

    # ---------------------------------------------------------------- the main loop
    def run(self, daemon) -> int:
        """The main thread's loop until SIGTERM/SIGINT (0), the end of the input (0) or a
        dead thread (its status). ``daemon`` provides ``reload()``, ``poll()``,
        ``status_text()``, ``heartbeats()`` and ``feeder.finished``."""
        with self.signal_handlers():
            while True:
                self.wake.wait(0.1)
                self.wake.clear()
                while self.signals:
                    sig = self.signals.popleft()
                    if sig in (signal.SIGTERM, signal.SIGINT):
                        log.info("%s: stopping", signal.Signals(sig).name,
                                 extra={"kwsd_event": "stopping"})
                        return 0
                    log.info("SIGHUP: reloading config and model",
                             extra={"kwsd_event": "reload"})
                    self.reloading()
                    daemon.reload()
                    self.reloaded(daemon.status_text())
                if self.fatal is not None:
                    return self.fatal_status()
                if daemon.feeder.finished:
                    log.info("end of the input", extra={"kwsd_event": "input_end"})
                    return 0
                daemon.poll()
                self.tick(daemon.status_text(), daemon.heartbeats())
