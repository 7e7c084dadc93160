"""kwsd.ring.History: the audio kept to prime a swapped-in model and to cut captures is always
exactly the newest frames written, whatever the block sizes (also blocks longer than it)."""

import numpy as np
import pytest

from kwsd.ring import History


@pytest.mark.parametrize("capacity", [1, 3, 7, 16])
def test_history_holds_exactly_the_newest_frames(capacity):
    rng = np.random.default_rng(capacity)
    history, written = History(capacity, channels=2), []
    for _ in range(200):
        block = rng.standard_normal((int(rng.integers(0, 25)), 2)).astype(np.float32)
        history.write(block)
        written.append(block)
        everything = np.concatenate(written)
        want = int(rng.integers(0, capacity + 3))
        kept = min(want, capacity, len(everything))
        assert np.array_equal(history.last(want), everything[len(everything) - kept:])
        assert history.written == len(everything)
