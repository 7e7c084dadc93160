"""Reading a small file a user names (a config, a model) without trusting it.

>>> read_regular_file("/dev/zero", 1024)
Traceback (most recent call last):
...
ValueError: not a regular file (a character device)
"""

from __future__ import annotations

import os
import stat


def read_regular_file(path, limit, what="file") -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Opened without blocking (a FIFO at the path cannot hang the caller) and refused unless
    it is a regular file; a larger file is refused rather than read. Raises OSError (cannot
    open or read) or ValueError (not a regular file, too large) with the reason.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file ({file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise ValueError(f"the {what} is {st.st_size} bytes; at most {limit} are accepted")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ValueError(f"the {what} is larger than {limit} bytes")
    finally:
        os.close(fd)


def file_kind(mode) -> str:
    """``'a FIFO'``, ``'a directory'``, ... for an ``st_mode`` that is not a regular file."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
