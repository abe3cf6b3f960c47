"""Hostile archives, downloads, checkpoints and manifests: each is refused with an error naming the
culprit, writes nothing outside its root, leaves no partial file, and stays within bounded time and
memory (checkpoint cases run in a subprocess whose address space is capped)."""
from __future__ import annotations

import builtins
import collections
import errno
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from torch import nn

import mla.acquire.download as download_mod
from mla.acquire.archive import extract_archive
from mla.acquire.download import download
from mla.acquire.errors import AcquireError, DownloadError, LayoutError, UnsafeArchiveError
from mla.acquire.manifest import hash_files, load_manifest, write_manifest
from mla.acquire.redact import redact_url, scrub
from mla.acquire.usercopy import verify_user_copy
from mla.weights.convert import ConversionError, gather, identity
from mla.weights.load import load_encoder_weights
from mla.weights.safe_load import UnsafeCheckpointError, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def tree(directory: Path) -> list[str]:
    """Everything under ``directory`` (names relative to it), links not followed."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# ----------------------------------------------------------------------------------------------------
# archives


def _tar_links(path: Path, links: list[tuple[str, str]], files: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
        for name, data in (files or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@contextmanager
def no_tarfile_extraction(monkeypatch) -> Iterator[None]:
    """Make any use of tarfile's own extraction (and its filters) fail the test."""
    def boom(*args, **kwargs):
        raise AssertionError("tarfile's extraction or filter was used")

    for name in ("extractall", "extract", "_extract_member"):
        monkeypatch.setattr(tarfile.TarFile, name, boom)
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.setattr(tarfile, name, boom, raising=False)
    yield


@pytest.mark.parametrize("links, files, why, member", [
    # a link to a directory, then a member written through it
    ([("a", "."), ("a/b", "x")], {}, "lies under the link member 'a'", "a/b"),
    # a link whose target passes through an earlier link
    ([("a", "sub"), ("c", "a/x")], {}, "links through the link member 'a'", "c"),
    # a chain of links: the first one already points at a link member
    ([("l1", "l2"), ("l2", "../outside")], {}, "links through the link member 'l2'", "l1"),
    # the link that would climb out
    ([("l2", "../outside")], {}, "'..' component", "l2"),
    # a file member under a link that points outside
    ([("up", "/tmp")], {"up/pwned.txt": b"x"}, "absolute path", "up"),
])
def test_symlink_chain_tar_is_refused(tmp_path, monkeypatch, links, files, why, member):
    arc = _tar_links(tmp_path / "chain.tar", links, files)
    out = tmp_path / "work" / "out"
    with no_tarfile_extraction(monkeypatch), pytest.raises(UnsafeArchiveError, match=why) as err:
        extract_archive(arc, out)
    assert str(arc) in str(err.value) and f"member {member!r}" in str(err.value)
    assert not (tmp_path / "work").exists() and tree(tmp_path) == ["chain.tar"]


def _pathmax_chain_tar(path: Path, dest: Path) -> Path:
    """The symlink chain of CVE-2025-4517, sized for extraction into ``dest``: sixteen directories with
    names long enough that the chain of one-letter links to them stays short while what it resolves
    to exceeds PATH_MAX (where ``os.path.realpath`` in tarfile's filter stops resolving); a link at
    the end climbs back sixteen levels to the extraction root, ``escape`` points one level above it,
    and a file is written through ``escape``, beside the extraction root."""
    steps = "abcdefghijklmnop"
    root_len = len(str(dest.parent / f".{dest.name}.tmp-xxxxxxxx")) + 1  # atomic_directory's sibling
    comp = "d" * ((os.pathconf(dest.parent, "PC_PATH_MAX") - root_len) // (len(steps) + 1))
    with tarfile.open(path, "w") as tf:
        def add(name: str, kind: bytes, link: str = "", data: bytes | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if data is not None else 0
            tf.addfile(info, io.BytesIO(data) if data is not None else None)

        deep = ""
        for step in steps:
            add(os.path.join(deep, comp), tarfile.DIRTYPE)
            add(os.path.join(deep, step), tarfile.SYMTYPE, comp)
            deep = os.path.join(deep, comp)
        linkpath = os.path.join(*steps, "l" * 254)
        add(linkpath, tarfile.SYMTYPE, "/".join([".."] * len(steps)))
        add("escape", tarfile.SYMTYPE, linkpath + "/..")
        add("escape/pwned", tarfile.REGTYPE, data=b"written outside")
    return path


def test_pathmax_symlink_chain_of_cve_2025_4517_is_refused_by_our_checks(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "out"
    arc = _pathmax_chain_tar(tmp_path / "cve.tar", dest)
    with tarfile.open(arc) as tf:  # the archive really is the chain: 16 links to long names, then 2 more
        assert sum(m.issym() for m in tf.getmembers()) == 18
    start = time.perf_counter()
    with no_tarfile_extraction(monkeypatch), pytest.raises(UnsafeArchiveError) as err:
        extract_archive(arc, dest)
    msg = str(err.value)
    assert str(arc) in msg and "nothing was extracted" in msg
    assert "lies under the link member 'a'" in msg  # stopped at the first member that goes through a link
    assert time.perf_counter() - start < 20  # generous: two CPUs shared by many jobs
    assert tree(work) == []  # neither the extraction nor the escaped file


def test_duplicate_and_fifo_members_are_refused(tmp_path):
    arc = tmp_path / "dup.tar"
    with tarfile.open(arc, "w") as tf:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo("same.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="member 'same.txt' appears twice"):
        extract_archive(arc, tmp_path / "out")
    fifo = tmp_path / "fifo.tar"
    with tarfile.open(fifo, "w") as tf:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="member 'pipe' is a device or FIFO"):
        extract_archive(fifo, tmp_path / "out")
    zdup = tmp_path / "dup.zip"
    with zipfile.ZipFile(zdup, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("x.txt", b"1")
        zf.writestr("x.txt", b"2")
    with pytest.raises(UnsafeArchiveError, match="member 'x.txt' appears twice"):
        extract_archive(zdup, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


BOMB = 8 << 20  # 8 MiB of zeros: packs into a few kB


def test_zip_bomb_is_refused_before_writing(tmp_path):
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("zeros.bin", bytes(BOMB))
    assert arc.stat().st_size < 64 << 10
    written = []
    real_open = builtins.open

    def spy(file, mode="r", *args, **kwargs):  # records any file the extraction creates
        if any(c in mode for c in "wxa"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(UnsafeArchiveError) as err:
        mp.setattr(builtins, "open", spy)
        extract_archive(arc, tmp_path / "out", max_bytes=1 << 20)
    msg = str(err.value)
    assert str(arc) in msg and "member 'zeros.bin'" in msg and "1048576 bytes" in msg
    assert "limits.archive_max_bytes" in msg and "sources.yaml" in msg
    assert written == [] and not (tmp_path / "out").exists()


def test_zip_with_lying_sizes_stops_at_its_declared_size(tmp_path):
    arc = tmp_path / "liar.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.bin", bytes(BOMB))
    raw = bytearray(arc.read_bytes())
    # declare 100 bytes in both the local header and the central directory (uncompressed-size fields)
    real = BOMB.to_bytes(4, "little")
    assert raw.count(real) == 2
    raw = raw.replace(real, (100).to_bytes(4, "little"))
    arc.write_bytes(bytes(raw))
    with zipfile.ZipFile(arc) as zf:
        assert zf.getinfo("small.bin").file_size == 100  # passes the declared-size cap
    with pytest.raises(AcquireError, match=r"liar\.zip.*small\.bin"):
        extract_archive(arc, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists() and tree(tmp_path) == ["liar.zip"]


def test_tar_bomb_is_refused_before_writing(tmp_path):
    arc = tmp_path / "bomb.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"part{i}.bin")
            info.size = BOMB // 2
            tf.addfile(info, io.BytesIO(bytes(info.size)))
    assert arc.stat().st_size < 64 << 10
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(arc, tmp_path / "out", max_bytes=BOMB)
    msg = str(err.value)
    assert "member 'part2.bin'" in msg and f"past {BOMB} bytes" in msg and "limits.archive_max_bytes" in msg
    assert not (tmp_path / "out").exists() and tree(tmp_path) == ["bomb.tar.gz"]
    # a header declaring 1 TB is refused as soon as it is read, without decompressing anything after it
    huge = tmp_path / "huge.tar.gz"
    info = tarfile.TarInfo("terabyte.bin")
    info.size = 1 << 40
    huge.write_bytes(gzip.compress(info.tobuf()))  # the header alone: the data never comes
    start = time.perf_counter()
    with pytest.raises(UnsafeArchiveError, match=r"member 'terabyte.bin' brings the unpacked size past"):
        extract_archive(huge, tmp_path / "out", max_bytes=BOMB)
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()
    extract_archive(arc, tmp_path / "out", max_bytes=3 * (BOMB // 2))  # exactly at the cap: fine
    assert sorted(p.stat().st_size for p in (tmp_path / "out").iterdir()) == [BOMB // 2] * 3


# ----------------------------------------------------------------------------------------------------
# downloads


@contextmanager
def serve(body: Callable[[BaseHTTPRequestHandler, threading.Event], None]) -> Iterator[str]:
    """A loopback HTTP server whose every GET answers 200 and then runs ``body``; yields its URL."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            body(self, stop)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


def endless(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """No Content-Length, and bytes until the client hangs up."""
    handler.end_headers()
    chunk = bytes(64 << 10)
    try:
        while not stop.is_set():
            handler.wfile.write(chunk)
    except OSError:
        pass


def trickle(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """One byte every 50 ms, forever: each read gets data well within any per-read timeout."""
    handler.end_headers()
    try:
        while not stop.is_set():
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def test_endless_download_without_length_hits_the_byte_cap(tmp_path):
    dest = tmp_path / "lists" / "train.txt"
    cap = 1 << 20
    with serve(endless) as url:
        start = time.perf_counter()
        with pytest.raises(DownloadError) as err:
            download(url + "/list.txt?token=s3cret", dest, retries=3, backoff=0, timeout=10, max_bytes=cap)
    msg = str(err.value)
    assert f"exceeds {cap} bytes" in msg and "limits.download_max_bytes" in msg
    assert url + "/list.txt?token=***" in msg and str(dest) in msg and "s3cret" not in msg
    assert time.perf_counter() - start < 20
    assert tree(tmp_path) == ["lists"]  # neither the file nor its .part


def test_trickling_download_hits_the_overall_deadline(tmp_path):
    dest = tmp_path / "media.flv"
    with serve(trickle) as url:
        start = time.perf_counter()
        with pytest.raises(DownloadError) as err:
            download(url + "/media.flv", dest, sha256="0" * 64, retries=5, backoff=0, timeout=30, deadline=2)
        elapsed = time.perf_counter() - start
    msg = str(err.value)
    assert "did not finish within 2 s" in msg and "limits.download_deadline_s" in msg
    assert url + "/media.flv" in msg and str(dest) in msg
    assert 1.9 <= elapsed < 15  # the deadline ended it (the server never stops; each read gets a byte)
    assert tree(tmp_path) == []


def test_disk_full_removes_the_partial_file(tmp_path, monkeypatch):
    data = bytes(range(256)) * 12_000  # 3 MB: several 1 MiB writes

    def whole(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except OSError:
            pass

    real_open = builtins.open
    writes = []

    class FullDisk:
        """The .part file as opened, except that the second write finds the disk full."""

        def __init__(self, fh):
            self.fh = fh

        def write(self, chunk):
            writes.append(len(chunk))
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(chunk)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    def opener(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return FullDisk(fh) if str(file).endswith(".part") and "w" in mode else fh

    monkeypatch.setattr(download_mod, "open", opener, raising=False)  # the module's `open` only
    dest = tmp_path / "big.bin"
    with serve(whole) as url:
        with pytest.raises(DownloadError) as err:
            download(url + "/big.bin", dest, retries=3, backoff=0, timeout=10)
    msg = str(err.value)
    assert os.strerror(errno.ENOSPC) in msg and url + "/big.bin" in msg and str(dest) in msg
    assert ".big.bin.part" in msg and len(writes) == 2  # not retried: a full disk is not transient
    assert tree(tmp_path) == []


SECRET_PARAMS = ["password", "passwd", "pw", "pwd", "token", "access_token", "sas", "sig", "signature", "key",
                 "api_key", "apikey", "secret", "client_secret", "auth", "credential", "X-Amz-Signature",
                 "X-Amz-Credential", "X-Amz-Security-Token", "PW", "Api-Key"]


@pytest.mark.parametrize("name", SECRET_PARAMS)
def test_redaction_of_each_credential_parameter(name):
    url = f"https://user:hunter2@data.example.org/f.tar?keep=1&{name}=Zq9secretvalue&page=2#frag"
    shown = redact_url(url)
    assert shown == f"https://data.example.org/f.tar?keep=1&{name}=***&page=2"
    text = f"GET {url} failed; Authorization user:hunter2 value Zq9secretvalue"
    clean = scrub(text, url)
    assert "Zq9secretvalue" not in clean and "hunter2" not in clean and "user" not in clean.split("GET")[1]


def test_redaction_leaves_ordinary_parameters():
    url = "https://h.example/f?page=2&format=json&X-Amz-Date=20240101T000000Z"
    assert redact_url(url) == "https://h.example/f?page=2&format=json&X-Amz-Date=***"


# ----------------------------------------------------------------------------------------------------
# checkpoints (memory-bound cases in a subprocess with a capped address space)

AS_LIMIT = 4 << 30  # importing torch needs about 3.5 GB of address space; the attacks ask for 8-128 GB


def run_capped(code: str) -> dict:
    """Run ``code`` (which prints one JSON line) under RLIMIT_AS = AS_LIMIT; return that JSON."""
    prelude = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT}))
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _absurd_head_checkpoint(path: Path) -> Path:
    """A [C]-style MLA checkpoint whose shared head declares 10**9 classes: a stride-0 view of one
    float, so the file stays small while loading and copying it would need 10**9 x 32 x 4 = 128 GB."""
    head = torch.zeros(1).expand(10**9, 32)
    model = {"module.audio_net.conv1.weight": torch.zeros(4, 1, 3, 3),
             "module.visual_net.conv1.weight": torch.zeros(4, 3, 3, 3),
             "module.fusion_module.fc_out.weight": head, "module.fusion_module.fc_out.bias": torch.zeros(3)}
    torch.save({"model": model, "saved_epoch": 1}, path)
    return path


def _lying_record_checkpoint(path: Path) -> Path:
    """A torch zip whose storage declares 2**29 floats (2 GiB) while its record holds 16 bytes."""
    src = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                # the storage numel (BININT1 4 after 'cpu') becomes 2**29 (BININT)
                i = data.index(b"cpu")
                j = data.index(b"K\x04", i)
                data = data[:j] + b"J" + (2**29).to_bytes(4, "little") + data[j + 2:]
            zout.writestr(info, data)
    return path


def test_checkpoint_declaring_an_absurd_head_is_refused_without_allocating(tmp_path):
    src = _absurd_head_checkpoint(tmp_path / "mla_cremad.pth")
    lying = _lying_record_checkpoint(tmp_path / "lying.pth")
    assert src.stat().st_size < 64 << 10 and lying.stat().st_size < 64 << 10
    out = run_capped(f"""
        import time
        from mla.weights.convert import convert_file
        from mla.weights.safe_load import UnsafeCheckpointError, read_checkpoint
        res = {{}}
        for name, call in (("convert", lambda: convert_file("released", {str(src)!r}, {str(tmp_path / 'o.pt')!r},
                                                            {{"resnet18": {{"width": 4}}}})),
                           ("read", lambda: read_checkpoint({str(src)!r})),
                           ("lying", lambda: read_checkpoint({str(lying)!r}))):
            start = time.perf_counter()
            try:
                call()
                res[name] = "loaded"
            except UnsafeCheckpointError as exc:
                res[name] = str(exc)
            res[name + "_s"] = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{**res, "peak_kb": peak}}))
    """)
    for name in ("convert", "read"):
        assert "a tensor of shape (1000000000, 32)" in out[name] and str(src) in out[name], out[name]
        assert "needs more than the 1 elements of its storage" in out[name]
        assert "weights_only=False" not in out[name] and out[name + "_s"] < 30
    assert "declares 536870912 x FloatStorage (2147483648 bytes), but its record holds 16 bytes" in out["lying"]
    assert out["peak_kb"] < 2 << 20  # < 2 GiB resident: nothing near 128 GB (or 2 GiB) was touched
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o.pt.json").exists()


def test_declared_state_agrees_with_torch_load_on_genuine_files(tmp_path):
    """The independent value: torch.load's own tensors (shapes, dtypes) for views, shared storages,
    parameters, every common dtype and numpy scalars."""
    import numpy as np

    from mla.weights.declared import declared_state
    from mla.weights.safe_load import torch_load

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"model": collections.OrderedDict(
        view=base[1:, 2:5], t=base.T, shared=base, p=nn.Parameter(torch.ones(3, 2)),
        **{str(dt).removeprefix("torch."): torch.ones(2, 1, dtype=dt) for dt in
           (torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8, torch.uint8,
            torch.bool, torch.complex64)}),
        "acc": np.float64(0.75), "epoch": 3, "name": "x", "empty": torch.zeros(0, 5)}
    torch.save(obj, tmp_path / "ok.pt")
    declared, real = declared_state(tmp_path / "ok.pt"), torch_load(tmp_path / "ok.pt")
    assert declared["model"].keys() == real["model"].keys()
    for name, tensor in real["model"].items():
        d = declared["model"][name]
        assert d.device.type == "meta" and d.shape == tensor.shape and d.dtype == tensor.dtype, name
    assert declared["empty"].shape == (0, 5) and declared["acc"] == 0.75 and declared["epoch"] == 3


PICKLE_ATTACKS = {
    # 37 bytes: builtins.bytearray(8 * 10**9) (the global is not admitted)
    "bytearray_global": b"cbuiltins\nbytearray\n(\x8a\x05" + (8 * 10**9).to_bytes(5, "little") + b"tR.",
    # protocol 5's BYTEARRAY8 opcode declaring 8 GB (no global at all)
    "bytearray8": b"\x80\x05\x96" + (8 * 10**9).to_bytes(8, "little") + b".",
    # BINBYTES8 declaring 8 GB: the C unpickler would allocate it before reading
    "binbytes8": b"\x80\x04\x8e" + (8 * 10**9).to_bytes(8, "little") + b"x.",
    # numpy.ndarray((10**10,)) called directly
    "ndarray_call": b"cnumpy\nndarray\n((\x8a\x05" + (10**10).to_bytes(5, "little") + b"ttR.",
    # numpy's _reconstruct asked for a non-empty array of 10**10 bytes
    "reconstruct": (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(\x8a\x05"
                    + (10**10).to_bytes(5, "little") + b"tC\x01btR."),
}


def test_pickles_that_would_allocate_at_will_are_refused(tmp_path):
    paths = {}
    for name, data in PICKLE_ATTACKS.items():
        paths[name] = tmp_path / f"{name}.pkl"
        paths[name].write_bytes(data)
    assert len(PICKLE_ATTACKS["bytearray_global"]) < 58
    out = run_capped(f"""
        from mla.weights.safe_load import UnsafeCheckpointError, read_checkpoint
        res = {{}}
        for name, path in {({k: str(v) for k, v in paths.items()})!r}.items():
            try:
                read_checkpoint(path)
                res[name] = "loaded"
            except UnsafeCheckpointError as exc:
                res[name] = str(exc)
            except MemoryError:
                res[name] = "MemoryError"
        print(json.dumps(res))
    """)
    assert "refusing to unpickle builtins.bytearray" in out["bytearray_global"]
    assert "a bytearray of 8000000000 bytes in a file of 12" in out["bytearray8"]
    assert "not a readable pickle" in out["binbytes8"]
    assert "not a readable pickle" in out["ndarray_call"] and "not callable" in out["ndarray_call"]
    assert "pickled arrays start empty" in out["reconstruct"]
    for name, path in paths.items():
        assert str(path) in out[name]


def test_nan_weight_is_refused_by_name(tmp_path):
    module = nn.Linear(3, 2)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    state["bias"][1] = float("nan")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"w\.pt: tensor 'bias' holds 1 NaN or infinite value"):
        load_encoder_weights(module, tmp_path / "w.pt")
    assert not torch.isnan(module.bias).any()  # the module was left as it was
    with pytest.raises(ConversionError, match=r"src\.pth: parameter 'fc\.weight' \(for head\.weight\) holds NaN"):
        gather({"fc.weight": torch.tensor([[1.0, float("inf")]])}, {"head.weight": (1, 2)},
               lambda ours: ("fc.weight", identity), "src.pth")


def test_shapes_are_checked_before_the_weights_are_read(tmp_path, monkeypatch):
    torch.save({"weight": torch.zeros(7, 3), "bias": torch.zeros(7)}, tmp_path / "w.pt")
    import mla.weights.load as load_mod

    def no_load(path):
        raise AssertionError("torch.load reached")

    monkeypatch.setattr(load_mod, "torch_load", no_load)
    with pytest.raises(ValueError, match=r"parameter 'weight' has shape \(7, 3\), expected \(2, 3\)"):
        load_encoder_weights(nn.Linear(3, 2), tmp_path / "w.pt")


def test_legacy_torch_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"model": {"w": torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "legacy torch.save file" in msg and "re-save it once in the zip format" in msg
    assert "weights_only=False" not in msg


# ----------------------------------------------------------------------------------------------------
# reference manifests


def _copy_with_reference(tmp_path: Path, entries: list[dict]) -> tuple[Path, Path]:
    root = tmp_path / "copy"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.wav").write_bytes(b"audio")
    ref = tmp_path / "reference.json"
    good = hash_files(root, ["a/x.wav"])
    doc = {"format": "mla-raw-manifest/1", "dataset": "d", "source": {}, "n_files": 0, "total_bytes": 0,
           "files": good + entries}
    ref.write_text(json.dumps(doc))
    return root, ref


SHA = "0" * 64


@pytest.mark.parametrize("entry, why", [
    ({"path": "../outside", "size": 1, "sha256": SHA}, "paths must stay inside the copy"),
    ({"path": "/etc/hostname", "size": 1, "sha256": SHA}, "an absolute or non-POSIX path"),
    ({"path": "a\\..\\..\\x", "size": 1, "sha256": SHA}, "an absolute or non-POSIX path"),
    ({"path": "a/./x.wav", "size": 1, "sha256": SHA}, "paths must stay inside the copy"),
    ({"path": "a/y", "size": "1", "sha256": SHA}, "'size' must be a non-negative integer"),
    ({"path": "a/y", "size": 1, "sha256": "abc"}, "'sha256' must be 64 lower-case hex digits"),
    ({"path": "a/x.wav", "size": 5, "sha256": SHA}, "listed twice"),
    (["a/y"], "expected an object with path, size and sha256"),
])
def test_reference_manifest_entries_are_confined_and_checked(tmp_path, entry, why):
    root, ref = _copy_with_reference(tmp_path, [entry])
    with pytest.raises(AcquireError, match=why) as err:
        verify_user_copy("d", root, tmp_path / "out" / "manifest.json", reference=ref)
    assert f"{ref}: files[1]" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_reference_manifest_entry_through_a_symlink_out_of_the_copy_is_refused(tmp_path):
    secret = tmp_path / "private" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    root, ref = _copy_with_reference(tmp_path, [])
    os.symlink(secret, root / "a" / "key.wav")  # a file link leading out
    os.symlink(secret.parent, root / "b")  # a directory link leading out
    doc = json.loads(ref.read_text())
    for rel in ("a/key.wav", "b/id_rsa"):
        doc["files"] = [{"path": rel, "size": 9, "sha256": SHA}]
        ref.write_text(json.dumps(doc))
        with pytest.raises(LayoutError) as err:
            verify_user_copy("d", root, tmp_path / "out.json", reference=ref)
        assert f"entry {rel!r} resolves to {secret.resolve()}, outside the copy at {root}" in str(err.value)
    assert not (tmp_path / "out.json").exists()
    # the same copy verifies against an honest reference
    good = tmp_path / "good.json"
    write_manifest(good, dataset="d", files=hash_files(root, ["a/x.wav"]), source={})
    assert load_manifest(verify_user_copy("d", root, tmp_path / "out.json", reference=good))["n_files"] == 1


class _Payload:
    """Any class: torch.load(weights_only=True) refuses it."""


def test_torch_refusals_never_advise_lifting_the_guard(tmp_path):
    from mla.weights.safe_load import torch_load

    torch.save({"w": torch.ones(1), "x": _Payload()}, tmp_path / "obj.pt")
    with pytest.raises(UnsafeCheckpointError) as err:  # torch's own refusal, reworded
        torch_load(tmp_path / "obj.pt")
    msg = str(err.value)
    assert msg == (f"{tmp_path / 'obj.pt'}: torch.load(weights_only=True) refused it: "
                   f"Unsupported global: GLOBAL {__name__}._Payload")
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to unpickle {__name__}\._Payload") as err:
        read_checkpoint(tmp_path / "obj.pt")  # our reading of data.pkl refuses it first
    assert "weights_only=False" not in str(err.value)
