"""The daemon's small parts: the ring buffer between the audio callback and the MFCC worker,
and the log lines/journal fields."""

import io
import logging
import os
import threading

import numpy as np
import pytest

from kwsd.ring import Ring
from kwsd.systemd import FieldsFormatter, JournalFieldsHandler, setup_logging


@pytest.fixture(autouse=True)
def restore_kwsd_logger():
    """setup_logging configures the process-wide ``kwsd`` logger: put it back afterwards."""
    logger = logging.getLogger("kwsd")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_ring_keeps_order_across_wrap_around():
    r = Ring(capacity=10, channels=2, dtype=np.int16)
    seen = []
    x = np.arange(200, dtype=np.int16).reshape(-1, 2)
    for start in range(0, 100, 7):
        assert r.write(x[start:start + 7])
        seen.append(r.read().copy())
    assert np.array_equal(np.concatenate(seen), x)
    assert r.overflow_frames == 0


def test_ring_full_drops_and_counts_instead_of_overwriting():
    r = Ring(capacity=8, channels=1)
    assert r.write(np.ones((6, 1), np.float32))
    assert not r.write(np.full((3, 1), 2, np.float32))     # does not fit: dropped, counted
    assert (r.overflow_frames, r.overflow_blocks) == (3, 1)
    assert r.read().ravel().tolist() == [1.0] * 6           # what was there is intact


def test_ring_between_two_threads_loses_nothing():
    r = Ring(capacity=64, channels=1, dtype=np.int16)
    total = 20000
    got = []

    def consume():
        n = 0
        while n < total:
            if r.wait(5):
                block = r.read().copy()
                got.append(block)
                n += block.shape[0]
    t = threading.Thread(target=consume)
    t.start()
    data = (np.arange(total) % 30000).astype(np.int16).reshape(-1, 1)
    i = 0
    while i < total:           # the producer retries a dropped block, so nothing is lost
        if r.write(data[i:i + 16]):
            i += 16
    t.join(10)
    assert np.array_equal(np.concatenate(got), data)


def test_log_lines_carry_the_structured_fields():
    out = io.StringIO()
    logger = setup_logging("info", journal=False, stream=out)
    logger.getChild("service").info("detected %r", "stop", extra={
        "kwsd_event": "detection", "kwsd_score": "0.930"})
    assert out.getvalue() == ("info: detected 'stop' KWSD_EVENT=detection "
                              "KWSD_SCORE=0.930\n")


def test_journal_entries_get_kwsd_fields_under_journald(monkeypatch):
    journal = pytest.importorskip("systemd.journal", reason="systemd-python not installed")
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")   # stderr is the journal
    logger = setup_logging("info", journal="auto")
    handlers = logger.handlers
    assert [type(h) for h in handlers] == [JournalFieldsHandler]
    sent = []
    handlers[0]._journal = type("J", (), {"send": staticmethod(
        lambda msg, **f: sent.append((msg, f)))})
    logger.info("detected", extra={"kwsd_event": "detection", "kwsd_keyword": "stop"})
    msg, fields = sent[0]
    assert msg == "detected" and fields["KWSD_EVENT"] == "detection"
    assert fields["KWSD_KEYWORD"] == "stop" and fields["PRIORITY"] == "6"
    assert fields["SYSLOG_IDENTIFIER"] == "kwsd"
    assert journal.send  # the real module is what the handler uses by default


def test_outside_journald_plain_stderr_lines(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logger = setup_logging("warning", journal="auto")
    assert [type(h.formatter) for h in logger.handlers] == [FieldsFormatter]
    assert logger.level == logging.WARNING
