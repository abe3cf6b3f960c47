"""Writers whose output is byte-identical for identical content (DVC hashes these files), atomic
file and directory output (a failed step never leaves a partial result), write errors that name
their path, and process locks."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from mla.safepaths import confine

# npz entries get this date instead of "now", so that rewriting a file gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (readable with ``np.load``) but byte-identical for identical arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE), buf.getvalue())


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal objects give equal bytes."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, sort_keys=True, indent=2, ensure_ascii=False)
        fh.write("\n")


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir`` by rename.

    On any exception the temporary directory is removed and a pre-existing ``out_dir`` is left untouched.
    The sibling lives on the same filesystem, so the final rename is atomic; replacing an existing directory
    takes two renames (old out of the way, new in), which is the best POSIX offers for directories.

    ``root``: where ``out_dir`` must lie (symbolic links resolved; checked before anything is created,
    renamed or deleted), for directories whose path is built from config names (``results/``...). None
    when ``out_dir`` is a path the user named (an ``--out``). Only the previous ``out_dir`` and this
    function's own temporary siblings are ever deleted, never a link's target.
    """
    out_dir = Path(out_dir)
    if root is not None:
        confine(out_dir, root)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the final directory normal permissions
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "d")
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if old is not None:  # put the previous output back
                os.rename(old / "d", out_dir)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it is fsynced and renamed over ``path``.

    A reader (or a process restarted after a kill) sees the old file or the new one, never a torn
    one. On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give the file the umask's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # best effort: makes the rename survive a crash of the machine
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def name_on_error(path: str | Path, action: str = "write") -> Iterator[None]:
    """Re-raise an ``OSError`` from the block as one that names ``path`` and keeps its errno.

    A failed write says only "[Errno 28] No space left on device"; the user needs to know where.
    """
    try:
        yield
    except OSError as exc:
        if str(path) in str(exc):
            raise
        raise OSError(exc.errno, f"cannot {action} {path}: {exc.strerror or exc}") from exc


def writable_directory(path: str | Path) -> Path:
    """Create ``path`` (and its parents) if needed and check that it can be written; an error
    names the path. Called before hours of work whose result goes there, not after."""
    path = Path(path)
    with name_on_error(path):
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    return path


def try_lock(path: str | Path) -> IO | None:
    """Take an exclusive, non-blocking ``flock`` on ``path`` (created if absent).

    Returns the open file that holds the lock (keep it open; closing it releases the lock), or
    None if another open file holds it. The kernel releases the lock when its process exits,
    however it ends (SIGKILL included), so no stale lock outlives a crash.
    """
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def file_mode() -> int:
    """The mode a new regular file gets under the process's umask (0644 under umask 022): for files
    written through ``tempfile.mkstemp``, which creates them 0600."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask. Read from /proc where the kernel shows it: setting it to read it back
    (the fallback) leaves a moment in which another thread would create files with mode 0666/0777."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
