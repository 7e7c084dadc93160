"""systemd integration: ``sd_notify`` datagrams and logging (journald fields + stderr).

``sd_notify`` is one datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` is the abstract namespace); outside systemd the variable is unset and
:class:`Notifier` does nothing.

>>> n = Notifier(env={})
>>> n.enabled, n.watchdog_interval
(False, None)
>>> n.notify(READY=1)        # no socket: a no-op
False

Log records may carry structured fields as ``extra={"kwsd_event": "detection", ...}``: every
``kwsd_*`` attribute becomes the journal field ``KWSD_*``, so ``journalctl -u kwsd
KWSD_EVENT=detection`` works. A terminal gets plain lines (``info: detected 'stop' ...``);
when stderr is a pipe or a file (a log collector, a test) the fields are appended to each
line as ``KWSD_EVENT=detection KWSD_SCORE=0.93`` so that they are not lost.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time


class Notifier:
    """Send ``sd_notify`` messages to ``$NOTIFY_SOCKET`` (no-op when it is unset).

    ``watchdog_interval`` is half of ``$WATCHDOG_USEC`` in seconds (``None`` when the unit
    has no ``WatchdogSec=`` or ``$WATCHDOG_PID`` names another process).
    """

    def __init__(self, env=None):
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET") or None
        if addr and addr.startswith("@"):
            addr = "\0" + addr[1:]
        self.address = addr
        self.enabled = addr is not None
        self._sock = None
        if self.enabled:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2e6

    def notify(self, **fields):
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="...")``); True if sent.

        Errors (no listener, socket gone) are swallowed: notification is best effort.
        """
        if not self.enabled:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "replace")
        try:
            self._sock.sendto(msg, self.address)
            return True
        except OSError:
            return False

    def ready(self, status=None):
        """``READY=1`` (with an optional ``STATUS=``)."""
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text):
        """``STATUS=text``: shown by ``systemctl status kwsd``."""
        return self.notify(STATUS=text)

    def watchdog(self):
        """``WATCHDOG=1``: the service is alive."""
        return self.notify(WATCHDOG=1)

    def reloading(self):
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (as ``Type=notify-reload`` requires)."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(
            time.CLOCK_MONOTONIC) // 1000)

    def stopping(self):
        """``STOPPING=1``."""
        return self.notify(STOPPING=1)

    def close(self):
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.enabled = False


def _fields(record):
    """The ``kwsd_*`` attributes of a log record as ``{"KWSD_X": "value"}``."""
    return {k.upper(): str(v) for k, v in record.__dict__.items()
            if k.startswith("kwsd_") and v is not None}


class FieldsFormatter(logging.Formatter):
    """``level: message`` for stderr (journald adds the time), with the structured fields
    appended as ``KWSD_EVENT=... KWSD_SCORE=...`` unless ``fields`` is false.

    >>> r = logging.makeLogRecord({"msg": "detected 'stop'", "levelname": "INFO",
    ...                            "kwsd_event": "detection"})
    >>> FieldsFormatter().format(r)
    "info: detected 'stop' KWSD_EVENT=detection"
    >>> FieldsFormatter(fields=False).format(r)
    "info: detected 'stop'"
    """

    def __init__(self, fields=True):
        super().__init__()
        self.fields = fields

    def format(self, record):
        """Format the message and (with ``fields``) append the structured fields."""
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        fields = _fields(record) if self.fields else None
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JournalFieldsHandler(logging.Handler):
    """Send records to journald with their ``KWSD_*`` fields (systemd-python)."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                 logging.CRITICAL: 2}

    def __init__(self, journal, identifier="kwsd"):
        super().__init__()
        self._journal = journal
        self._identifier = identifier

    def emit(self, record):
        """Send one journal entry: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and KWSD_* fields."""
        try:
            self._journal.send(record.getMessage(),
                               PRIORITY=str(self._PRIORITY.get(record.levelno, 6)),
                               SYSLOG_IDENTIFIER=self._identifier, LOGGER=record.name,
                               **_fields(record))
        except Exception:
            self.handleError(record)


def setup_logging(level="info", journal="auto", stream=None):
    """Configure the ``kwsd`` logger: stderr lines always; journald fields when possible.

    ``journal``: ``"auto"`` (use systemd-python if importable and stderr is not already the
    journal), ``True`` (use it if importable) or ``False``. Returns the ``kwsd`` logger.
    Under systemd, stderr already goes to the journal, so with ``auto`` the journal handler
    is added only when ``$JOURNAL_STREAM`` shows that stderr is the journal, replacing the
    plain stderr lines by structured entries; elsewhere stderr lines are kept: plain on a
    terminal, with the ``KWSD_*`` fields appended when the stream is not a terminal.
    """
    logger = logging.getLogger("kwsd")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.setLevel(level.upper())
    logger.propagate = False
    wanted = _stderr_is_journal() if journal == "auto" else bool(journal)
    jmod = None
    if wanted:      # imported only when used: it maps libsystemd and its libraries (1.1 MB)
        try:
            from systemd import journal as jmod
        except ImportError:
            jmod = None
    use_journal = jmod is not None
    if use_journal:
        logger.addHandler(JournalFieldsHandler(jmod))
    if not (use_journal and journal == "auto"):
        stream = stream or sys.stderr
        h = logging.StreamHandler(stream)
        h.setFormatter(FieldsFormatter(fields=not _is_terminal(stream)))
        logger.addHandler(h)
    return logger


def _is_terminal(stream):
    """True when ``stream`` is a terminal (a person reads it)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_is_journal():
    """True when ``$JOURNAL_STREAM`` says stderr is connected to journald."""
    js = os.environ.get("JOURNAL_STREAM")
    if not js or ":" not in js:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    dev, ino = js.split(":", 1)
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"
