"""kwsd-train fetch: resumable, checksum-verified downloads from a real HTTP server on 127.0.0.1."""

import hashlib
import http.server
import io
import random
import re
import tarfile
import threading

import pytest

pytest.importorskip("tqdm")

from training.__main__ import main  # noqa: E402
from training.download import DownloadError, download, fetch  # noqa: E402


def make_archive() -> bytes:
    """A small .tar.gz in the Speech Commands layout (~20 kB: random bytes don't compress)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, payload in (("stop/abc_nohash_0.wav", b"RIFF" + random.Random(0).randbytes(20000)),
                              ("README.md", b"a test corpus\n")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Server:
    """Serves one payload at /corpus.tar.gz with HTTP Range support (or without, or cut
    off after ``cut`` bytes), recording the Range headers it was sent."""

    def __init__(self, payload: bytes, honour_range=True, cut=None):
        self.payload, self.honour_range, self.cut = payload, honour_range, cut
        self.ranges, self.sent = [], 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path != "/corpus.tar.gz":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                data, start = outer.payload, 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and outer.honour_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None:
                    body = body[:outer.cut]
                    outer.cut = None          # only the first response is cut short
                self.wfile.write(body)
                outer.sent += len(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/corpus.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def archive():
    data = make_archive()
    return data, hashlib.sha256(data).hexdigest()


def test_resume_sends_range_and_fetches_only_the_rest(tmp_path, archive):
    data, sha = archive
    assert len(data) > 10000
    dest = tmp_path / "corpus.tar.gz"
    (tmp_path / "corpus.tar.gz.part").write_bytes(data[:1000])
    with Server(data) as srv:
        download(srv.url, dest, sha256=sha, progress=False)
    assert srv.ranges == ["bytes=1000-"]
    assert srv.sent == len(data) - 1000
    assert dest.read_bytes() == data
    assert not (tmp_path / "corpus.tar.gz.part").exists()


def test_interrupted_download_resumes_on_the_next_run(tmp_path, archive):
    data, sha = archive
    dest = tmp_path / "corpus.tar.gz"
    with Server(data, cut=700) as srv:
        with pytest.raises(DownloadError, match="run again to resume"):
            download(srv.url, dest, sha256=sha, progress=False)
        assert (tmp_path / "corpus.tar.gz.part").stat().st_size == 700
        download(srv.url, dest, sha256=sha, progress=False)
    assert srv.ranges == [None, "bytes=700-"]
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(tmp_path, archive):
    data, sha = archive
    dest = tmp_path / "corpus.tar.gz"
    (tmp_path / "corpus.tar.gz.part").write_bytes(b"x" * 500)   # not even the right bytes
    with Server(data, honour_range=False) as srv:
        download(srv.url, dest, sha256=sha, progress=False)
    assert dest.read_bytes() == data


def test_checksum_mismatch_deletes_the_download_and_names_both_sums(tmp_path, archive):
    data, _ = archive
    wrong = "0" * 64
    dest = tmp_path / "corpus.tar.gz"
    with Server(data) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url, dest, sha256=wrong, progress=False)
    assert wrong in str(err.value) and hashlib.sha256(data).hexdigest() in str(err.value)
    assert not dest.exists() and not (tmp_path / "corpus.tar.gz.part").exists()


def test_md5_is_accepted_and_a_complete_file_is_not_fetched_again(tmp_path, archive):
    data, _ = archive
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "corpus.tar.gz"
    with Server(data) as srv:
        download(srv.url, dest, md5=md5, progress=False)
        download(srv.url, dest, md5=md5, progress=False)
    assert len(srv.ranges) == 1


def test_fetch_cli_downloads_verifies_and_unpacks(tmp_path, archive, capsys):
    data, sha = archive
    with Server(data) as srv:
        status = main(["-q", "fetch", srv.url, "--sha256", sha, "--out", str(tmp_path)])
    assert status == 0
    unpacked = tmp_path / "corpus"
    assert (unpacked / "stop" / "abc_nohash_0.wav").read_bytes().startswith(b"RIFF")
    assert str(unpacked) in capsys.readouterr().out


def test_fetch_cli_reports_a_bad_checksum_with_a_distinct_status(tmp_path, archive, capsys):
    data, _ = archive
    with Server(data) as srv:
        status = main(["-q", "fetch", srv.url, "--sha256", "1" * 64, "--out", str(tmp_path)])
    assert status == DownloadError.exit_status
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "Traceback" not in err


def test_fetch_refuses_an_archive_member_outside_the_folder(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    data = buf.getvalue()
    with Server(data) as srv:
        with pytest.raises(DownloadError, match="outside"):
            fetch(srv.url, tmp_path / "out", sha256=hashlib.sha256(data).hexdigest(),
                  progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_unreachable_server_is_a_clear_error(tmp_path):
    with Server(b"") as srv:
        url = srv.url
    with pytest.raises(DownloadError, match="cannot connect"):
        download(url, tmp_path / "x.tar.gz", progress=False, timeout=5)
