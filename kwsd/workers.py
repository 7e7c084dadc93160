"""The daemon's two pipeline threads, and the sink that connects an audio source to them.

* ``kwsd-features``: :meth:`Feeder.step` drains the source's ring into
  :meth:`Pipeline.push <kwsd.pipeline.Pipeline.push>`;
* ``kwsd-decide``: :meth:`Feeder.decide_step` runs :meth:`Pipeline.decide
  <kwsd.pipeline.Pipeline.decide>`.

Each runs in a :class:`Worker`: a thread calling its step until stopped, advancing a
``heartbeat`` on every pass (the watchdog's proof of progress) and reporting an exception
that escapes as fatal (the process then ends with a message and a distinct status).
A test calls the steps itself instead: the same code, deterministic.

>>> import threading
>>> ran = threading.Event()
>>> worker = Worker("demo", lambda timeout: ran.set(), on_fatal=print)
>>> worker.start(); ran.wait(5)
True
>>> worker.stop(); worker.heartbeat > 0, worker.error
(True, None)
"""

from __future__ import annotations

import threading
import time


class Worker:
    """A daemon thread calling ``step(timeout)`` until :meth:`stop`.

    ``on_fatal(name, error)`` is called if ``step`` raises; the thread then ends.
    """

    def __init__(self, name, step, on_fatal):
        self.name = name
        self.heartbeat = 0
        self.error = None
        self._step = step
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout=0.5):
        """Ask the thread to end and wait up to ``timeout`` s."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self):
        try:
            while not self._stop.is_set():
                self._step(0.1)
                self.heartbeat += 1
        except BaseException as err:
            self.error = err
            self._on_fatal(self.name, err)


class Feeder:
    """The sink an audio source reports to (see :mod:`kwsd.sources`), and the two steps.

    Args:
        pipeline: the :class:`~kwsd.pipeline.Pipeline`.
        status: the :class:`~kwsd.status.Status` (audio state).
        on_fatal: ``(name, error)`` when a source's thread dies.
        wake: an event set when something the supervisor shows has changed.
        clock: monotonic time for ``Hop.arrived``.
    """

    def __init__(self, pipeline, status, on_fatal, wake, clock=time.monotonic):
        self.pipeline = pipeline
        self.status = status
        self.on_fatal = on_fatal
        self.wake = wake
        self.clock = clock
        self.epoch = None
        self.ended = False           # the source has no more audio
        self.drained = False         # ... and all of it has been pushed
        self.finished = False        # ... and decided
        self._current = None
        self._epoch_event = threading.Event()

    # ---------------------------------------------------------------- the source's sink
    def on_epoch(self, epoch):
        self.epoch = epoch
        self._epoch_event.set()
        self.wake.set()

    def on_state(self, state, reason):
        if (state, reason) != (self.status.audio_state, self.status.audio_reason):
            self.status.audio(state, reason)
            self.wake.set()

    def on_end(self):
        self.ended = True
        if self.epoch is not None:
            self.epoch.ring.data_ready.set()

    # ---------------------------------------------------------------- the steps
    def step(self, timeout):
        """Feature side: push what the ring holds (waiting up to ``timeout`` s for it)."""
        epoch = self.epoch
        if epoch is None:
            self._epoch_event.wait(timeout)
            return
        if epoch is not self._current:
            self.pipeline.start_epoch(epoch.rate)
            self._current = epoch
        ring = epoch.ring
        if not ring.wait(timeout):
            if self.ended and ring.available() == 0:
                self.drained = True
                self.pipeline.window_ready.set()
            return
        self.pipeline.push(ring.read(), self.clock())

    def decide_step(self, timeout):
        """Decision side: decide what is queued (waiting up to ``timeout`` s for it)."""
        if self.pipeline.wait(timeout):
            self.pipeline.decide()
        elif self.drained and not self.pipeline.windows and not self.finished:
            self.finished = True
            self.wake.set()
