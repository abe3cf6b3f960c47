"""The checksum lock: sha256 values recorded on first download, for sources that publish none.

The committed file is ``config/checksums.lock.json``::

    {
      "version": 1,
      "files": {
        "<URL without credentials>": {"sha256": "<64 hex>", "size": <bytes>}
      }
    }

Where the config (or ``sources.yaml``) gives no checksum for a URL, the first download records the
file's sha256 and size here (commit the change); every later download of that URL must match the
recorded values, or it fails naming the URL, both hashes and this file. To accept a deliberate change
upstream, delete the URL's entry and download again. Sources with a published checksum never touch
the lock. Writes are atomic (temporary file + ``os.replace``) and serialised across processes with an
advisory lock on the containing directory, so parallel Snakemake jobs can record at the same time.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

try:  # POSIX only; elsewhere writes are serialised within one process only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from mla.acquire.errors import AcquireError
from mla.io import file_mode

DEFAULT_LOCK = Path("config/checksums.lock.json")
_VERSION = 1
_thread_lock = threading.Lock()


class ChecksumLock:
    """Read and update one checksum lock file (created on first record if absent)."""

    def __init__(self, path: str | Path = DEFAULT_LOCK) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.exists():
            return {"version": _VERSION, "files": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AcquireError(f"{self.path}: unreadable checksum lock file: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("files"), dict):
            raise AcquireError(f"{self.path}: not a version-{_VERSION} checksum lock file (expected keys 'version', 'files')")
        return data

    def get(self, key: str) -> dict | None:
        """The recorded ``{"sha256": ..., "size": ...}`` for ``key`` (a redacted URL), or None."""
        entry = self._read()["files"].get(key)
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)):
            raise AcquireError(f"{self.path}: entry {key!r} has no sha256")
        return entry

    def record(self, key: str, sha256: str, size: int) -> None:
        """Record ``key``'s checksum; an existing, different entry is an error (never overwritten)."""
        with self._exclusive():
            data = self._read()
            old = data["files"].get(key)
            if old is not None and old.get("sha256") != sha256:
                raise AcquireError(
                    f"{self.path}: {key} is already recorded with sha256 {old.get('sha256')}, not {sha256}; "
                    "delete the entry to accept the new file"
                )
            data["files"][key] = {"sha256": sha256, "size": int(size)}
            self._write(data)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _write(self, data: dict) -> None:
        data = {"version": _VERSION, "files": dict(sorted(data["files"].items()))}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.chmod(tmp, file_mode())  # the user's umask, not mkstemp's 0600
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
