"""Media stored with Git LFS in a GitHub repository, fetched without git.

At a pinned commit, ``raw.githubusercontent.com/<slug>/<commit>/<path>`` returns an LFS file's
*pointer* (``version https://git-lfs.github.com/spec/v1`` / ``oid sha256:<hex>`` / ``size <n>``),
and ``media.githubusercontent.com/media/<slug>/<commit>/<path>`` its content. So the pointer, which
the pinned commit fixes, gives each file's sha256 and size, and every media download is verified
against it. ``acquire_github_lfs`` runs the whole flow for a list of paths:

1. pointers: read from ``<root>/lfs-pointers.json`` when it was written for the same repository and
   commit, otherwise fetched (in parallel) and saved there, also after a failure, so a rerun resumes;
2. media: ``download(media URL, <root>/<path>, sha256=oid, size=size)``; present, verified files are
   kept; interrupted files resume;
3. ``<root>/manifest.json`` (``mla.acquire.manifest``), written last, so its presence means complete.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from mla.acquire.download import ResponseTooLarge, download, fetch_bytes
from mla.acquire.errors import AcquireError, DownloadError
from mla.acquire.manifest import write_manifest
from mla.acquire.redact import redact_url
from mla.acquire.sources import dataset_spec, file_url, load_sources, repository, resolve_hosts
from mla.io import file_mode

log = logging.getLogger(__name__)

POINTER_VERSIONS = ("https://git-lfs.github.com/spec/v1", "https://hawser.github.com/spec/v1")
MAX_POINTER_BYTES = 1024
POINTER_INDEX = "lfs-pointers.json"
MANIFEST = "manifest.json"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class LfsPointer:
    """What a Git LFS pointer file says about the real file."""

    oid: str  # sha256, 64 hex digits
    size: int


def parse_pointer(data: bytes, source: str) -> LfsPointer:
    """Parse a pointer file's bytes; anything else raises ``AcquireError`` naming ``source``."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AcquireError(f"{source}: not a Git LFS pointer (binary content)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(" ")
        if not sep or not key or key in fields:
            raise AcquireError(f"{source}: not a Git LFS pointer (line {line[:60]!r})")
        fields[key] = value
    if not lines or not lines[0].startswith("version ") or fields.get("version") not in POINTER_VERSIONS:
        raise AcquireError(f"{source}: not a Git LFS pointer (no 'version {POINTER_VERSIONS[0]}' first line)")
    m = re.fullmatch(r"sha256:([0-9a-f]{64})", fields.get("oid", ""))
    if not m:
        raise AcquireError(f"{source}: Git LFS pointer without an 'oid sha256:<64 hex>' line")
    if not re.fullmatch(r"\d+", fields.get("size", "")):
        raise AcquireError(f"{source}: Git LFS pointer without a 'size <bytes>' line")
    return LfsPointer(m.group(1), int(fields["size"]))


def fetch_pointer(url: str, **retry: Any) -> LfsPointer:
    """GET a pointer file from a raw URL and parse it."""
    shown = redact_url(url)
    try:
        data = fetch_bytes(url, max_bytes=MAX_POINTER_BYTES, **retry)
    except ResponseTooLarge:
        raise AcquireError(f"{shown}: not a Git LFS pointer (more than {MAX_POINTER_BYTES} bytes); "
                           "is this file stored with LFS at the pinned commit?") from None
    return parse_pointer(data, shown)


def acquire_github_lfs(
    dataset: str,
    root: str | Path,
    ids: Iterable[str],
    *,
    commit: str | None = None,
    sources: dict[str, Any] | None = None,
    base_url: str | dict[str, str] | None = None,
    manifest: str | Path | None = None,
    workers: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download every media file of ``ids`` for a ``github_lfs`` dataset of ``sources.yaml`` into ``root``.

    The file paths are the dataset's ``media`` templates filled with each id. ``commit`` overrides the
    repository's pinned commit (required where ``sources.yaml`` pins none). Returns the manifest path
    (default ``<root>/manifest.json``), written only when every file is present and verified.
    """
    sources = sources or load_sources()
    spec = dataset_spec(sources, dataset)
    if spec.get("kind") != "github_lfs":
        raise AcquireError(f"dataset {dataset!r} is not downloaded from a GitHub LFS repository (kind {spec.get('kind')!r})")
    try:
        repo = repository(sources, spec["repository"], commit)
    except AcquireError as exc:
        raise AcquireError(f"{dataset}: {exc}") from None
    hosts = resolve_hosts(sources, base_url)
    root = Path(root)
    rel_paths = _media_paths(spec["media"], ids, dataset)
    retry = dict(retries=retries, backoff=backoff, timeout=timeout)

    # 1. pointers (cached per repository and commit)
    index_path = root / POINTER_INDEX
    pointers = _load_index(index_path, repo)
    missing = [p for p in rel_paths if p not in pointers]
    if missing:
        log.info("%s: fetching %d LFS pointers from %s at %s", dataset, len(missing), repo["slug"], repo["commit"][:12])
        try:
            _parallel(lambda p: (p, fetch_pointer(file_url(hosts, repo, p, "raw"), **retry)), missing, workers,
                      on_result=lambda r: pointers.__setitem__(r[0], r[1]))
        finally:
            _save_index(index_path, repo, pointers)

    # 2. media, verified against the pointers
    def fetch_media(rel: str) -> None:
        ptr = pointers[rel]
        url = file_url(hosts, repo, rel, "media")
        try:
            download(url, root / rel, sha256=ptr.oid, size=ptr.size, **retry)
        except DownloadError as exc:
            if exc.status in (403, 429):
                raise DownloadError(
                    f"{exc}. GitHub serves LFS media within the owner's bandwidth quota; if it is exhausted, "
                    f"clone {repo['slug']} with git-lfs and verify the clone in place instead "
                    f"(mla acquire --dataset {dataset} --in-place --root <clone> --manifest <file>)",
                    url=exc.url, status=exc.status) from None
            raise

    log.info("%s: %d media files into %s", dataset, len(rel_paths), root)
    _parallel(fetch_media, rel_paths, workers)

    # 3. manifest, last
    files = [{"path": p, "size": pointers[p].size, "sha256": pointers[p].oid} for p in rel_paths]
    source = {"kind": "github_lfs", "repository": repo["slug"], "commit": repo["commit"]}
    return write_manifest(manifest or root / MANIFEST, dataset=dataset, files=files, source=source)


def _media_paths(templates: list[str], ids: Iterable[str], dataset: str) -> list[str]:
    paths: list[str] = []
    seen: set[str] = set()
    for sid in ids:
        if not _SAFE_ID.fullmatch(sid):
            raise AcquireError(f"{dataset}: sample id {sid!r} is not a plain file name")
        for template in templates:
            rel = template.format(id=sid)
            if rel not in seen:
                seen.add(rel)
                paths.append(rel)
    if not paths:
        raise AcquireError(f"{dataset}: no sample ids to download")
    return paths


def _load_index(path: Path, repo: dict[str, str]) -> dict[str, LfsPointer]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("repository") != repo["slug"] or doc.get("commit") != repo["commit"]:
            return {}  # another commit: its pointers may differ
        return {p: LfsPointer(v["oid"], int(v["size"])) for p, v in doc["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: unreadable pointer index; fetching the pointers again", path)
        return {}


def _save_index(path: Path, repo: dict[str, str], pointers: dict[str, LfsPointer]) -> None:
    if not pointers:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"repository": repo["slug"], "commit": repo["commit"],
           "files": {p: {"oid": ptr.oid, "size": ptr.size} for p, ptr in sorted(pointers.items())}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, file_mode())  # the user's umask, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parallel(fn: Callable[[T], R], items: list[T], workers: int, on_result: Callable[[R], None] | None = None) -> None:
    """Run ``fn`` over ``items`` on ``workers`` threads; the first failure cancels what has not started."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        futures = [ex.submit(fn, item) for item in items]
        try:
            for fut in as_completed(futures):
                result = fut.result()
                if on_result is not None:
                    on_result(result)
        except BaseException:
            for fut in futures:
                fut.cancel()
            if on_result is not None:  # keep what finished (e.g. pointers fetched before the failure)
                for fut in futures:
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        on_result(fut.result())
            raise
