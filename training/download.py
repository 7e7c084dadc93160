"""Downloading (resumable, checksum-verified, with a progress bar) and unpacking archives.

``kwsd-train fetch`` gets the official Speech Commands corpus by default:

    kwsd-train fetch --out data/                  # ~2.3 GB, resumes if interrupted
    kwsd-train fetch URL --sha256 HEX --out data/ # any other archive

A download goes to ``NAME.part`` first; a later run sends an HTTP ``Range`` request for the
rest (a server that ignores it is detected and the file restarts from zero). The finished
file is checked against its SHA-256 (or MD5) before it takes its final name; a mismatch
deletes the partial file and says so.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from kwsd.errors import EX_IOERR, PathError

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
CHUNK = 1 << 16


class DownloadError(PathError):
    """A download or unpacking that failed: names the URL or file and the reason."""

    exit_status = EX_IOERR


def file_digest(path, algorithm="sha256") -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected(sha256, md5):
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None, None


def _progress(total, initial, desc, enabled):
    from .progress import bar

    return bar(None, enabled, total=total, initial=initial, unit="B", unit_scale=True,
                    unit_divisor=1024, desc=desc)


def download(url: str, dest, sha256: str | None = None, md5: str | None = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; verify; return ``dest``.

    An existing ``dest`` whose checksum matches is kept without any network access.
    Raises :class:`DownloadError` on network errors (the partial file stays, so the next run
    resumes) and on a checksum mismatch (the partial file is deleted).
    """
    dest = Path(dest)
    algo, want = _expected(sha256, md5)
    if dest.exists():
        if want is None or file_digest(dest, algo) == want:
            return dest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "kwsd-train"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:      # nothing left to fetch: the part is complete
            response = None
        else:
            raise DownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(url, f"cannot connect ({getattr(exc, 'reason', exc)})") from None
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if have and status != 206:    # the server ignored Range: start again
                have = 0
            total = None
            content_range = response.headers.get("Content-Range", "")
            match = re.match(r"bytes (\d+)-(\d+)/(\d+)", content_range)
            if status == 206 and match:
                if int(match.group(1)) != have:
                    raise DownloadError(url, f"server resumed at byte {match.group(1)}, "
                                             f"expected {have}")
                total = int(match.group(3))
            elif response.headers.get("Content-Length"):
                total = have + int(response.headers["Content-Length"])
            try:
                with open(part, "ab" if have else "wb") as out, \
                        _progress(total, have, dest.name, progress) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise DownloadError(url, f"interrupted after {part.stat().st_size} bytes "
                                         f"({exc}); run again to resume") from None
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(url, f"incomplete: {size} of {total} bytes; run again to resume")
    if want is not None:
        got = file_digest(part, algo)
        if got != want:
            part.unlink()
            raise DownloadError(url, f"{algo} mismatch: expected {want}, got {got} "
                                     f"(the download was deleted)")
    os.replace(part, dest)
    return dest


def extract(archive, out_dir, progress: bool = True) -> Path:
    """Unpack a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` into ``out_dir`` (members that would
    land outside it are refused); returns ``out_dir``."""
    archive, out_dir = Path(archive), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = out_dir.resolve()
    from .progress import bar

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in bar(zf.namelist(), progress, desc=f"unpack {archive.name}",
                                unit="file"):
                    if not (root / name).resolve().is_relative_to(root):
                        raise DownloadError(archive, f"member {name!r} points outside {out_dir}")
                    zf.extract(name, out_dir)
            return out_dir
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in bar(members, progress, desc=f"unpack {archive.name}", unit="file"):
                target = (root / member.name).resolve()
                if not target.is_relative_to(root) or member.issym() or member.islnk():
                    raise DownloadError(archive, f"member {member.name!r} is a link or points "
                                                 f"outside {out_dir}")
                if hasattr(tarfile, "data_filter"):
                    tf.extract(member, out_dir, filter="data")
                else:  # Python < 3.11.4
                    tf.extract(member, out_dir)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DownloadError(archive, f"cannot unpack ({exc})") from None
    return out_dir


def fetch(url: str, out_dir, sha256=None, md5=None, keep_archive=True,
          progress=True) -> Path:
    """Download ``url`` into ``out_dir`` and unpack it into ``out_dir/<archive stem>``."""
    out_dir = Path(out_dir)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    archive = download(url, out_dir / name, sha256=sha256, md5=md5, progress=progress)
    stem = re.sub(r"(\.tar\.gz|\.tgz|\.tar|\.zip)$", "", name)
    target = extract(archive, out_dir / stem, progress=progress)
    if not keep_archive:
        archive.unlink()
    return target


def add_arguments(parser):
    """``kwsd-train fetch`` options."""
    parser.add_argument("url", nargs="?", default=SPEECH_COMMANDS_URL,
                        help="archive to fetch (default: the Speech Commands v0.02 corpus)")
    parser.add_argument("--out", default="data", help="folder to download and unpack into")
    parser.add_argument("--sha256", help="expected SHA-256 (default: known for the corpus)")
    parser.add_argument("--md5", help="expected MD5 instead")
    parser.add_argument("--delete-archive", action="store_true",
                        help="delete the archive after unpacking")


def run(args) -> int:
    """Run ``kwsd-train fetch``."""
    sha256 = args.sha256
    if sha256 is None and args.md5 is None and args.url == SPEECH_COMMANDS_URL:
        sha256 = SPEECH_COMMANDS_SHA256
    if sha256 is None and args.md5 is None:
        print("warning: no checksum given (--sha256/--md5): the download is not verified",
              file=sys.stderr)
    target = fetch(args.url, args.out, sha256=sha256, md5=args.md5,
                   keep_archive=not args.delete_archive, progress=not args.quiet)
    print(target)
    return 0
