"""Acquisition (mla/acquire): downloads against a real HTTP server on 127.0.0.1 (Range requests,
dropped connections, 5xx, auth), the checksum lock, safe extraction, split-list parsers, the CREMA-D
LFS flow on a fixture mini-repository, and user-provided copies verified in place.

Every fixture (files, archives, split lists, repositories) is generated here; nothing is downloaded
from the internet.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mla.acquire.archive import extract_archive
from mla.acquire.cremad import acquire_cremad
from mla.acquire.download import NetworkUnreachable, download
from mla.acquire.errors import (AcquireError, ChecksumError, DownloadError, LayoutError, SplitFormatError,
                                UnsafeArchiveError)
from mla.acquire.lfs import LfsPointer, fetch_pointer, parse_pointer
from mla.acquire.lockfile import ChecksumLock
from mla.acquire.manifest import load_manifest
from mla.acquire.official_splits import fetch_split_lists, read_split_lists
from mla.acquire.redact import redact_url, scrub
from mla.acquire.sources import file_url, load_sources, repository, resolve_hosts
from mla.acquire.splitlists import (check_labels, parse_class_list, parse_mla_iemocap, parse_mla_list, parse_ogm_csv,
                                    parse_ogm_ks, read_iemocap_transcripts)
from mla.acquire.usercopy import verify_dataset_copy, verify_user_copy
from mla.cli import main as cli_main

FAST = dict(retries=3, backoff=0.0, timeout=10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes."""
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


# ----------------------------------------------------------------------------------------------------
# the loopback server


class Server:
    """Serves ``files`` (path -> bytes) with Range support and scripted faults per path.

    ``actions[path]`` is consumed one entry per request: an int answers with that status, ``"drop:N"``
    sends the headers and N body bytes, then closes the connection, ``"close"`` closes it unanswered.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ignore_range: set[str] = set()
        self.actions: dict[str, list] = {}
        self.auth: dict[str, str] = {}  # path -> required "user:password"
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                queue = server.actions.get(path) or []
                action = queue.pop(0) if queue else None
                if action == "close":  # no answer at all: the client sees the connection closed
                    self.close_connection = True
                    return
                if isinstance(action, int):
                    self.send_response(action)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in server.auth:
                    want = "Basic " + base64.b64encode(server.auth[path].encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if path not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and path not in server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if isinstance(action, str) and action.startswith("drop:"):
                    self.wfile.write(body[: int(action[5:])])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def paths_requested(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def leftovers(directory: Path) -> list[str]:
    """Temporary files or directories left beside outputs."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------------------------------
# download


def test_download_verifies_and_skips_a_verified_file(server, tmp_path):
    data = blob(300_000)
    server.files["/f.bin"] = data
    dest = tmp_path / "out" / "f.bin"
    got = download(server.url + "/f.bin", dest, sha256=sha(data), chunk_size=4096, **FAST)
    assert got.fetched and got.sha256 == sha(data) and got.size == len(data)
    assert dest.read_bytes() == data and leftovers(dest.parent) == []
    again = download(server.url + "/f.bin", dest, sha256=sha(data).upper(), **FAST)
    assert not again.fetched and len(server.requests) == 1  # present and verified: no request


def test_checksum_mismatch_deletes_and_names_url_and_hashes(server, tmp_path):
    data = blob(5000)
    server.files["/f.bin"] = data
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256=wrong, **FAST)
    msg = str(err.value)
    assert server.url + "/f.bin" in msg and wrong in msg and sha(data) in msg
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = blob(50_000, seed=1)
    server.files["/f.bin"] = data
    server.actions["/f.bin"] = ["drop:12345"]
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), chunk_size=1000, **FAST)
    reqs = server.paths_requested("/f.bin")
    assert len(reqs) == 2 and "range" not in reqs[0] and reqs[1]["range"] == "bytes=12345-"
    assert (tmp_path / "f.bin").read_bytes() == data


def test_partial_file_from_an_earlier_run_resumes(server, tmp_path):
    data = blob(40_000, seed=2)
    server.files["/f.bin"] = data
    (tmp_path / ".f.bin.part").write_bytes(data[:30_000])
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)
    assert server.paths_requested("/f.bin")[0]["range"] == "bytes=30000-"
    assert (tmp_path / "f.bin").read_bytes() == data and leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = blob(40_000, seed=3)
    server.files["/f.bin"] = data
    server.ignore_range.add("/f.bin")
    (tmp_path / ".f.bin.part").write_bytes(data[:30_000])
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)
    assert len(server.paths_requested("/f.bin")) == 1
    assert (tmp_path / "f.bin").read_bytes() == data


def test_stale_partial_is_retried_from_zero_once(server, tmp_path):
    data = blob(20_000, seed=4)
    server.files["/f.bin"] = data
    (tmp_path / ".f.bin.part").write_bytes(b"x" * 5000)  # not a prefix of the file
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)
    reqs = server.paths_requested("/f.bin")
    assert [r.get("range") for r in reqs] == ["bytes=5000-", None]
    assert (tmp_path / "f.bin").read_bytes() == data


def test_complete_partial_and_http_416(server, tmp_path):
    data = blob(10_000, seed=5)
    server.files["/f.bin"] = data
    (tmp_path / ".f.bin.part").write_bytes(data)  # finished earlier, never verified
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)  # size unknown: asks, gets 416
    assert [r["range"] for r in server.paths_requested("/f.bin")] == ["bytes=10000-"]
    assert (tmp_path / "f.bin").read_bytes() == data
    (tmp_path / ".g.bin.part").write_bytes(data)
    download(server.url + "/f.bin", tmp_path / "g.bin", sha256=sha(data), size=len(data), **FAST)  # size known: no request
    assert len(server.requests) == 1 and (tmp_path / "g.bin").read_bytes() == data


def test_transient_errors_are_retried_but_not_404(server, tmp_path):
    data = blob(1000)
    server.files["/f.bin"] = data
    server.actions["/f.bin"] = [503, 500]
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)
    assert len(server.paths_requested("/f.bin")) == 3
    with pytest.raises(DownloadError, match=r"HTTP 404.*") as err:
        download(server.url + "/missing.bin", tmp_path / "m.bin", sha256=sha(data), **FAST)
    assert server.url + "/missing.bin" in str(err.value) and err.value.status == 404
    assert f"(destination {tmp_path / 'm.bin'})" in str(err.value)
    assert len(server.paths_requested("/missing.bin")) == 1
    server.actions["/f.bin"] = [503] * 10
    with pytest.raises(DownloadError, match="after 4 attempts: HTTP 503"):
        download(server.url + "/f.bin", tmp_path / "g.bin", sha256=sha(data), **FAST)
    assert not (tmp_path / "g.bin").exists()


def test_refused_connection_fails_fast_and_names_the_host_and_the_place(tmp_path, capsys):
    """A port nobody listens on: no retry (backoff 30 s would show), the host and the destination named."""
    srv = Server()
    url, host = srv.url, srv.url.removeprefix("http://")
    srv.close()
    start = time.monotonic()
    with pytest.raises(NetworkUnreachable) as err:
        download(url + "/f.bin", tmp_path / "f.bin", sha256="0" * 64, retries=5, backoff=30, timeout=5)
    assert time.monotonic() - start < 5
    assert str(err.value).startswith(f"network unreachable: {host} (")
    assert f"acquire needs access to {host}, or place the file yourself at {tmp_path / 'f.bin'}" in str(err.value)
    assert err.value.host == host and list(tmp_path.iterdir()) == []
    # the split-list command says the same through the CLI
    assert cli_main(["acquire", "--dataset", "cremad", "--splits", str(tmp_path / "s"), "--base-url", url]) == 1
    err = capsys.readouterr().err
    assert f"mla acquire: error: network unreachable: {host} (" in err and "or place the file yourself at " \
        f"{tmp_path / 's' / 'my_train_cre.txt'}" in err


def test_unreachable_means_no_name_no_route_or_refused():
    """The classification behind the fast failure: DNS failures, refused connections and missing routes
    are unreachable; timeouts and resets (and their URLError wrappers) stay transient and are retried."""
    import errno
    import socket
    import urllib.error

    from mla.acquire.download import _unreachable

    dns = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    for exc in (dns, urllib.error.URLError(dns), ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
                urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable")),
                OSError(errno.EHOSTUNREACH, "No route to host")):
        assert _unreachable(exc), exc
    for exc in (TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out")),
                ConnectionResetError(errno.ECONNRESET, "reset"), urllib.error.URLError(ConnectionResetError())):
        assert not _unreachable(exc), exc


def test_transient_errors_are_still_retried(server, tmp_path):
    """A 503, a dropped body and a connection closed without an answer are retried to success."""
    data = blob(3000)
    server.files["/f.bin"] = data
    server.actions["/f.bin"] = [503, "drop:100", "close"]
    got = download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), **FAST)
    assert got.fetched and (tmp_path / "f.bin").read_bytes() == data
    assert len(server.paths_requested("/f.bin")) == 4


def test_size_mismatch(server, tmp_path):
    data = blob(1000)
    server.files["/f.bin"] = data
    with pytest.raises(ChecksumError, match="expected 999 bytes, got 1000"):
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha(data), size=999, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_no_credential_in_errors_logs_or_lock(server, tmp_path, caplog):
    data = blob(2000)
    server.files["/private.bin"] = data
    server.auth["/private.bin"] = "alice:s3cr3t-pw"
    lock = ChecksumLock(tmp_path / "lock.json")
    url = server.url.replace("http://", "http://alice:s3cr3t-pw@") + "/private.bin?token=tok-123&x=1"
    with caplog.at_level(logging.DEBUG, logger="mla.acquire"):
        download(url, tmp_path / "p.bin", lock=lock, **FAST)  # Basic auth from the URL's user info
        server.actions["/private.bin"] = [503] * 10
        with pytest.raises(DownloadError) as err:
            download(url, tmp_path / "q.bin", sha256=sha(data), **FAST)
        with pytest.raises(DownloadError) as err404:
            download(url.replace("private", "nothere"), tmp_path / "r.bin", sha256=sha(data), **FAST)
    text = caplog.text + str(err.value) + str(err404.value) + (tmp_path / "lock.json").read_text()
    assert "s3cr3t" not in text and "tok-123" not in text and "alice" not in text
    assert "token=***" in str(err.value) and "x=1" in str(err.value)
    assert redact_url("https://u:p@h.example:8443/a?sig=1&b=2#frag") == "https://h.example:8443/a?sig=***&b=2"
    assert scrub("failed for u:p and sig 1", "https://u:p@h/a?sig=zz1") == "failed for ***:*** and sig 1"


# ----------------------------------------------------------------------------------------------------
# checksum lock


def test_lock_records_first_download_then_enforces_it(server, tmp_path):
    lock = ChecksumLock(tmp_path / "config" / "checksums.lock.json")
    first = blob(3000, seed=7)
    server.files["/unpublished.tar"] = first
    url = server.url + "/unpublished.tar"
    download(url, tmp_path / "a.tar", lock=lock, **FAST)
    doc = json.loads(lock.path.read_text())
    assert doc == {"version": 1, "files": {url: {"sha256": sha(first), "size": 3000}}}
    download(url, tmp_path / "b.tar", lock=lock, **FAST)  # same bytes: fine
    server.files["/unpublished.tar"] = blob(3000, seed=8)  # upstream changed
    with pytest.raises(ChecksumError) as err:
        download(url, tmp_path / "c.tar", lock=lock, **FAST)
    assert str(lock.path) in str(err.value) and sha(first) in str(err.value) and url in str(err.value)
    assert not (tmp_path / "c.tar").exists() and leftovers(tmp_path) == []
    with pytest.raises(AcquireError, match="already recorded"):
        lock.record(url, "f" * 64, 1)


def test_shipped_lock_file_is_valid():
    path = Path(__file__).resolve().parents[1] / "config" / "checksums.lock.json"
    assert ChecksumLock(path).get("https://example.invalid/none") is None


# ----------------------------------------------------------------------------------------------------
# archives


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_extract_archive(tmp_path, kind):
    members = {"d/a.txt": b"alpha", "d/sub/b.bin": blob(100)}
    arc = tmp_path / f"x.{kind}"
    if kind == "zip":
        _zip(arc, members)
    else:
        _tar(arc, list(members.items()) + [_link("d/link", "sub/b.bin")], mode="w" if kind == "tar" else "w:gz")
    dest = tmp_path / "out" / "x"
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("replaced")
    extract_archive(arc, dest)
    assert (dest / "d/a.txt").read_bytes() == b"alpha" and (dest / "d/sub/b.bin").read_bytes() == blob(100)
    assert not (dest / "old.txt").exists() and leftovers(dest.parent) == []
    if kind != "zip":
        assert (dest / "d/link").is_symlink()


@pytest.mark.parametrize("member, why", [
    (("/etc/evil", b"x"), "absolute path"),
    (("a/../../evil", b"x"), "'..' component"),
    (_link("a/up", "../../outside"), "links outside"),
    (_link("abs", "/etc/passwd"), "absolute path"),
    (_link("hard", "../x", hard=True), "links outside"),
])
def test_unsafe_tar_members_are_refused(tmp_path, member, why):
    arc = _tar(tmp_path / "bad.tar.gz", [("ok.txt", b"fine"), member])
    name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    with pytest.raises(UnsafeArchiveError, match=why) as err:
        extract_archive(arc, tmp_path / "out" / "bad")
    assert repr(name) in str(err.value) and str(arc) in str(err.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_unsafe_zip_members_are_refused(tmp_path):
    arc = _zip(tmp_path / "bad.zip", {"ok.txt": b"1", "x/../../evil.txt": b"2"})
    with pytest.raises(UnsafeArchiveError, match=r"'x/\.\./\.\./evil\.txt'"):
        extract_archive(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    arc2 = _zip(tmp_path / "abs.zip", {"/abs.txt": b"2"})
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        extract_archive(arc2, tmp_path / "out")
    (tmp_path / "junk.bin").write_bytes(b"not an archive")
    with pytest.raises(AcquireError, match="not a zip or tar"):
        extract_archive(tmp_path / "junk.bin", tmp_path / "out")


# ----------------------------------------------------------------------------------------------------
# split lists


def test_split_list_parsers(tmp_path):
    cre = tmp_path / "my_train_cre.txt"
    cre.write_text("1001_DFA_ANG_XX.flv Anger\n1002_IEO_SAD_LO.flv Sad\n")
    assert parse_mla_list(cre, ext="flv") == [("1001_DFA_ANG_XX", "Anger"), ("1002_IEO_SAD_LO", "Sad")]
    stat = tmp_path / "stat_cre.txt"
    stat.write_text("Anger\nSad")  # no final newline, as MLA ships it
    assert parse_class_list(stat) == ["Anger", "Sad"]
    check_labels(parse_mla_list(cre), parse_class_list(stat), cre)
    iemo = tmp_path / "my_train_iemo.txt"
    iemo.write_text("Ses01F_impro01_F000.mp4 [split|sign] Excuse me.  Yes? [split|sign] Neutral\n"
                    "Ses03M_script02_1_M002.mp4 [split|sign] I wanted to go. [split|sign] Happy\n")
    assert parse_mla_iemocap(iemo) == [("Ses01F_impro01_F000", "Neutral"), ("Ses03M_script02_1_M002", "Happy")]
    assert read_iemocap_transcripts(iemo)["Ses01F_impro01_F000"] == "Excuse me.  Yes?"
    ogm = tmp_path / "train.csv"
    ogm.write_bytes(b"1001_DFA_ANG_XX,ANG\r\n1002_IEO_SAD_LO,SAD\r\n")
    assert parse_ogm_csv(ogm) == [("1001_DFA_ANG_XX", "ANG"), ("1002_IEO_SAD_LO", "SAD")]
    ostat = tmp_path / "stat.csv"
    ostat.write_bytes("\ufeffNEU\r\nHAP\r\n".encode())
    assert parse_class_list(ostat) == ["NEU", "HAP"]
    ks = tmp_path / "my_train.txt"
    ks.write_bytes(b"--4-0ihtnBU_000058_000068,10,4\r\n-3Mwkq-7TV4_2,10,23\r\n")
    assert parse_ogm_ks(ks) == [("--4-0ihtnBU_000058_000068", "4"), ("-3Mwkq-7TV4_2", "23")]


@pytest.mark.parametrize("parser, content, where", [
    (parse_mla_list, b"a.flv Anger\nb.flv\n", ":2: expected '<id>.<ext> <Label>'"),
    (parse_mla_list, b"a.flv Anger\n\nb.flv Sad\n", ":2: empty line"),
    (parse_mla_list, b"a.flv Anger\nc.jpg Sad\n", ":2: expected a '.flv' file name"),
    (parse_mla_list, b"a.flv Anger\nb.flv Sad\na.flv Sad\n", ":3: duplicate sample id 'a' (first on line 1)"),
    (parse_mla_list, b"a.flv Anger\nb\xff.flv Sad\n", ":2: not valid UTF-8"),
    (parse_mla_iemocap, b"u1.mp4 [split|sign] hi [split|sign] Sad\nu2.mp4 [split|sign] Sad\n", ":2: expected"),
    (parse_class_list, b"Anger\nAnger", ":2: duplicate class 'Anger'"),
    (parse_ogm_csv, b"a,ANG\r\nb;SAD\r\n", ":2: expected '<clip>,<LABEL>'"),
    (parse_ogm_ks, b"a,10,3\r\nb,10,x\r\n", ":2: expected '<clip id>,<int>,<class index>'"),
])
def test_split_list_errors_name_file_and_line(tmp_path, parser, content, where):
    path = tmp_path / "list.txt"
    path.write_bytes(content)
    kwargs = {"ext": "flv"} if parser is parse_mla_list else {}
    with pytest.raises(SplitFormatError) as err:
        parser(path, **kwargs)
    assert str(err.value).startswith(f"{path}:") and where in str(err.value)


def test_unknown_label_names_file_and_line(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a.flv Anger\nb.flv Joy\n")
    with pytest.raises(SplitFormatError, match=r"l\.txt:2: label 'Joy' of 'b'"):
        check_labels(parse_mla_list(path), ["Anger", "Sad"], path)


def test_shipped_sources_pin_the_reference_commits():
    src = load_sources()
    hosts = resolve_hosts(src)
    mla = repository(src, "mla")
    assert file_url(hosts, mla, src["split_lists"]["cremad"]["files"]["train"]["path"]) == (
        "https://raw.githubusercontent.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation/"
        "ab6c184579f9ff390e9c9b8216c9900c2a43545b/data/my_train_cre.txt")  # the file's raw URL on GitHub
    assert repository(src, "ogm_ge")["commit"] == "343dc1d95c9bda88f105c0da8d24f185e0e98b54"
    files = [f for spec in src["split_lists"].values() for f in spec["files"].values()]
    assert len(files) == 17 and all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in files)
    # `wc -l` over the 17 files at the pinned commits totals 124,580; 3 stat files lack a final newline
    assert sum(f["records"] for f in files) == 124_580 + 3
    with pytest.raises(AcquireError, match="no commit is pinned"):
        repository(src, "cremad")
    assert resolve_hosts(src, "http://127.0.0.1:1/") == {"raw": "http://127.0.0.1:1/raw", "media": "http://127.0.0.1:1/media"}


# ----------------------------------------------------------------------------------------------------
# the CREMA-D flow on a fixture mini-repository

CREMAD_COMMIT = "c" * 40
TRAIN = ["1001_DFA_ANG_XX", "1002_IEO_SAD_LO", "1003_TIE_HAP_XX"]
TEST = ["1004_IWW_ANG_XX"]


def _pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha(data)}\nsize {len(data)}\n".encode()


def _cremad_fixture(server: Server, tmp_path: Path) -> tuple[dict, Path]:
    """Serve MLA-format lists for 4 clips and a CREMA-D mini-repo (pointers + media); return sources and their file."""
    src = load_sources()
    mla = repository(src, "mla")
    label = {"ANG": "Anger", "SAD": "Sad", "HAP": "Happy"}
    lists = {
        "train": "".join(f"{c}.flv {label[c.split('_')[2]]}\n" for c in TRAIN).encode(),
        "test": "".join(f"{c}.flv {label[c.split('_')[2]]}\n" for c in TEST).encode(),
        "classes": b"Anger\nHappy\nSad",
    }
    spec = src["split_lists"]["cremad"]
    for role, data in lists.items():
        entry = spec["files"][role]
        server.files[f"/raw/{mla['slug']}/{mla['commit']}/{entry['path']}"] = data
        entry["sha256"], entry["records"] = sha(data), len(data.decode().splitlines())
    slug = src["repositories"]["cremad"]["slug"]
    for i, clip in enumerate(TRAIN + TEST):
        for rel, n in ((f"AudioWAV/{clip}.wav", 3000 + i), (f"VideoFlash/{clip}.flv", 7000 + i)):
            data = blob(n, seed=i)
            server.files[f"/raw/{slug}/{CREMAD_COMMIT}/{rel}"] = _pointer(data)
            server.files[f"/media/{slug}/{CREMAD_COMMIT}/{rel}"] = data
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(src))
    return src, path


def test_lfs_pointer_parsing(server):
    data = blob(10)
    assert parse_pointer(_pointer(data), "u") == LfsPointer(sha(data), 10)
    server.files["/p"], server.files["/big.wav"] = _pointer(data), blob(5000)
    assert fetch_pointer(server.url + "/p", **FAST) == LfsPointer(sha(data), 10)
    with pytest.raises(AcquireError, match=r"/big\.wav: not a Git LFS pointer \(more than 1024 bytes\)"):
        fetch_pointer(server.url + "/big.wav", **FAST)
    for bad, why in [(b"RIFF....WAVE", "not a Git LFS pointer"),
                     (b"version https://example.com/v9\noid sha256:" + b"a" * 64 + b"\nsize 1\n", "not a Git LFS pointer"),
                     (b"version https://git-lfs.github.com/spec/v1\noid md5:abc\nsize 1\n", "oid sha256"),
                     (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\n", "size")]:
        with pytest.raises(AcquireError, match=why):
            parse_pointer(bad, "http://h/AudioWAV/x.wav")


def test_cremad_flow_via_cli(server, tmp_path, capsys):
    src, src_file = _cremad_fixture(server, tmp_path)
    splits, root = tmp_path / "splits", tmp_path / "raw" / "cremad"
    args = ["acquire", "--dataset", "cremad", "--sources", str(src_file), "--base-url", server.url,
            "--splits", str(splits), "--root", str(root), "--commit", CREMAD_COMMIT, "--workers", "3"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert str(root / "manifest.json") in out and str(splits / "my_train_cre.txt") in out
    assert read_split_lists("cremad", splits, sources=src).ids() == TRAIN + TEST
    man = load_manifest(root / "manifest.json")
    assert man["source"] == {"kind": "github_lfs", "repository": "CheyneyComputerScience/CREMA-D", "commit": CREMAD_COMMIT}
    assert len(man["files"]) == 8
    for rel, entry in man["files"].items():
        assert sha((root / rel).read_bytes()) == entry["sha256"] and (root / rel).stat().st_size == entry["size"]
    assert sorted(json.loads((root / "lfs-pointers.json").read_text())["files"]) == sorted(man["files"])

    n = len(server.requests)  # a rerun verifies what is there and asks the server for nothing
    assert cli_main(args) == 0 and len(server.requests) == n

    # a git-lfs clone verified in place (the fallback when LFS bandwidth runs out) gives the same files
    clone_args = ["acquire", "--dataset", "cremad", "--sources", str(src_file), "--in-place", "--splits", str(splits),
                  "--root", str(root), "--manifest", str(tmp_path / "clone.json"), "--reference", str(root / "manifest.json")]
    assert cli_main(clone_args) == 0 and len(server.requests) == n
    assert load_manifest(tmp_path / "clone.json")["files"] == man["files"]

    # no commit: a clear error; a corrupt media file: checksum error naming the URL, nothing kept
    assert cli_main(args[:-4]) == 1
    assert "no commit is pinned" in capsys.readouterr().err
    slug = src["repositories"]["cremad"]["slug"]
    server.files[f"/media/{slug}/{CREMAD_COMMIT}/AudioWAV/{TEST[0]}.wav"] = b"tampered"
    (root / f"AudioWAV/{TEST[0]}.wav").unlink()
    (root / "manifest.json").unlink()
    with pytest.raises(ChecksumError, match=rf"/media/{slug}/{CREMAD_COMMIT}/AudioWAV/{TEST[0]}\.wav"):
        acquire_cremad(root, splits, commit=CREMAD_COMMIT, sources=src, base_url=server.url, workers=2, **FAST)
    assert not (root / f"AudioWAV/{TEST[0]}.wav").exists() and not (root / "manifest.json").exists()
    assert leftovers(root / "AudioWAV") == []


def test_split_list_with_wrong_checksum_is_refused(server, tmp_path):
    src, _ = _cremad_fixture(server, tmp_path)
    mla = repository(src, "mla")
    server.files[f"/raw/{mla['slug']}/{mla['commit']}/data/my_test_cre.txt"] = b"1004_IWW_ANG_XX.flv Sad\n"
    with pytest.raises(ChecksumError, match="my_test_cre.txt"):
        fetch_split_lists("cremad", tmp_path / "splits", sources=src, base_url=server.url, **FAST)
    assert not (tmp_path / "splits" / "my_test_cre.txt").exists()


# ----------------------------------------------------------------------------------------------------
# user-provided copies


def _iemocap_copy(tmp_path: Path) -> tuple[Path, Path, dict]:
    src = load_sources()
    ids = {"train": ["Ses01F_impro01_F000", "Ses01F_impro01_M001"], "test": ["Ses03M_script02_1_M002"]}
    splits = tmp_path / "splits"
    splits.mkdir()
    spec = src["split_lists"]["iemocap"]
    for role in ("train", "test"):
        text = "".join(f"{u}.mp4 [split|sign] words here [split|sign] Sad\n" for u in ids[role])
        (splits / spec["files"][role]["name"]).write_text(text)
        spec["files"][role]["records"] = len(ids[role])
    (splits / spec["files"]["classes"]["name"]).write_text("Neutral\nAngry\nSad\nHappy")
    root = tmp_path / "IEMOCAP_full_release"
    for i, u in enumerate(ids["train"] + ids["test"]):
        s, dialog = u[4], u.rsplit("_", 1)[0]
        for rel in (f"Session{s}/sentences/wav/{dialog}/{u}.wav", f"Session{s}/dialog/avi/DivX/{dialog}.avi",
                    f"Session{s}/dialog/EmoEvaluation/{dialog}.txt"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(blob(100 + i, seed=i) + rel.encode())
    return root, splits, src


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_user_copy_verified_in_place(tmp_path):
    root, splits, src = _iemocap_copy(tmp_path)
    before = _snapshot(root)
    man_path = verify_dataset_copy("iemocap", root, tmp_path / "raw" / "manifest.json", split_dir=splits, sources=src)
    assert _snapshot(root) == before  # nothing written, moved or copied
    man = load_manifest(man_path)
    assert len(man["files"]) == 3 + 2 * 2  # 3 WAVs, 2 dialogues x (avi, EmoEvaluation)
    rel = "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert man["files"][rel]["sha256"] == sha((root / rel).read_bytes())
    assert str(root) not in man_path.read_text()  # machine-independent

    # a colleague's copy must match the committed manifest file by file
    (root / rel).write_bytes(b"re-encoded")
    with pytest.raises(LayoutError, match=rf"{re.escape(str(root / rel))}: expected .* found 10 bytes"):
        verify_dataset_copy("iemocap", root, tmp_path / "m2.json", split_dir=splits, sources=src, reference=man_path)
    assert not (tmp_path / "m2.json").exists()

    (root / "Session3/dialog/avi/DivX/Ses03M_script02_1.avi").unlink()
    with pytest.raises(LayoutError) as err:
        verify_dataset_copy("iemocap", root, tmp_path / "m3.json", split_dir=splits, sources=src)
    msg = str(err.value)
    assert "lacks 1 of 7 expected files" in msg and "Session3/dialog/avi/DivX/Ses03M_script02_1.avi" in msg
    assert "https://sail.usc.edu/iemocap/" in msg and "Session{session}/sentences/wav/{dialog}/{id}.wav" in msg
    with pytest.raises(AcquireError, match="outside the user's copy"):
        verify_user_copy("iemocap", root, root / "manifest.json")


def test_user_copy_found_by_name_and_plain_directory(tmp_path):
    root = tmp_path / "k400"
    for rel in ("train/abseiling/aa_000001_000011.mp4", "val/x/bb_3.mp4", "train/notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    disk2 = tmp_path / "disk2"  # part of the copy on another disk, linked in
    disk2.mkdir()
    (disk2 / "cc_7.mp4").write_bytes(b"cc")
    os.symlink(disk2, root / "test")
    os.symlink(root, root / "train" / "loop")  # a link cycle must not loop
    man = load_manifest(verify_user_copy("kinetics_sounds", root, tmp_path / "ks.json",
                                         ids=["aa_000001_000011", "bb_3", "cc_7"], layout=["**/{id}.mp4"]))
    assert sorted(man["files"]) == ["test/cc_7.mp4", "train/abseiling/aa_000001_000011.mp4", "val/x/bb_3.mp4"]
    (root / "val/x/aa_000001_000011.mp4").write_bytes(b"dup")
    with pytest.raises(LayoutError, match="aa_000001_000011.mp4 is ambiguous"):
        verify_user_copy("kinetics_sounds", root, tmp_path / "ks.json", ids=["aa_000001_000011"], layout=["**/{id}.mp4"])
    # any directory the config points to: every file listed; a missing root says where to get the data
    assert load_manifest(verify_dataset_copy("mydata", root, tmp_path / "my.json"))["n_files"] == 5
    with pytest.raises(LayoutError, match="does not exist"):
        verify_dataset_copy("mydata", tmp_path / "nowhere", tmp_path / "my.json")
