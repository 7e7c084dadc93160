"""Progress bars for kwsd-train's long steps (tqdm on stderr)."""

import sys


def bar(iterable=None, enabled=True, **kwargs):
    """A tqdm progress bar on stderr; redrawn at most every 10 s when stderr is not a
    terminal (logs stay readable), none when ``enabled`` is false."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    return tqdm(iterable, disable=not enabled, file=sys.stderr, **kwargs)
