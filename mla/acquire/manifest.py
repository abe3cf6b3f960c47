"""Raw-data manifests: one JSON file per dataset listing every file's relative path, size and sha256.

DVC tracks the manifest instead of the data where the data must not enter the DVC cache (a
licence-restricted or user-provided copy), and beside downloaded data it records what was verified.
The file holds no absolute path, time or host, so the same data gives the same bytes on any machine::

    {"format": "mla-raw-manifest/1", "dataset": "iemocap", "source": {...},
     "n_files": 2, "total_bytes": 123,
     "files": [{"path": "Session1/...", "size": 100, "sha256": "..."}, ...]}   # sorted by path
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from mla.acquire.download import sha256_file
from mla.acquire.errors import AcquireError
from mla.io import file_mode, write_json

FORMAT = "mla-raw-manifest/1"
_DRIVE = re.compile(r"^[A-Za-z]:")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_files(root: str | Path, relpaths: Iterable[str], workers: int = 4) -> list[dict[str, Any]]:
    """``[{"path", "size", "sha256"}]`` for files under ``root``, sorted by path (hashed in parallel)."""
    root = Path(root)
    paths = sorted(set(relpaths))

    def one(rel: str) -> dict[str, Any]:
        p = root / rel
        return {"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:  # hashlib releases the GIL
        return list(ex.map(one, paths))


def write_manifest(path: str | Path, *, dataset: str, files: list[dict[str, Any]], source: dict[str, Any]) -> Path:
    """Write a manifest atomically (temporary file + ``os.replace``); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(files, key=lambda f: f["path"])
    doc = {
        "format": FORMAT,
        "dataset": dataset,
        "source": source,
        "n_files": len(files),
        "total_bytes": sum(int(f["size"]) for f in files),
        "files": [{"path": f["path"], "size": int(f["size"]), "sha256": f["sha256"]} for f in files],
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_json(tmp, doc)
        os.chmod(tmp, file_mode())  # the user's umask, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest written by ``write_manifest``; ``files`` becomes ``{path: {"size", "sha256"}}``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AcquireError(f"{path}: cannot read manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        raise AcquireError(f"{path}: not a {FORMAT} manifest")
    files: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(doc["files"]):
        rel = check_entry(path, i, entry)
        if rel in files:
            raise AcquireError(f"{path}: files[{i}] ({rel!r}): listed twice")
        files[rel] = {"size": entry["size"], "sha256": entry["sha256"]}
    doc["files"] = files
    return doc


def check_entry(manifest: Path, index: int, entry: Any) -> str:
    """The ``path`` of one manifest entry after checking it is a plain relative path inside the copy
    (no ``..``, not absolute, no drive letter or backslash) with an integer size and a sha256."""
    where = f"{manifest}: files[{index}]"
    if not isinstance(entry, dict):
        raise AcquireError(f"{where}: expected an object with path, size and sha256, got {type(entry).__name__}")
    rel = entry.get("path")
    if not isinstance(rel, str) or not rel:
        raise AcquireError(f"{where}: 'path' must be a non-empty string, got {rel!r}")
    where = f"{where} ({rel!r})"
    parts = rel.split("/")
    if rel.startswith("/") or _DRIVE.match(rel) or "\\" in rel:
        raise AcquireError(f"{where}: an absolute or non-POSIX path; entries are relative to the copy's root")
    if any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise AcquireError(f"{where}: paths must stay inside the copy (no '..', '.' or empty components)")
    size = entry.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise AcquireError(f"{where}: 'size' must be a non-negative integer, got {size!r}")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise AcquireError(f"{where}: 'sha256' must be 64 lower-case hex digits, got {digest!r}")
    return rel
