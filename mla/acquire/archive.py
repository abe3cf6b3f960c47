"""Safe extraction of zip and tar archives (plain, gzip, bzip2, xz).

Every member is checked before anything is written, by our own rules rather than Python's tarfile
``data`` filter (3.11 before 3.11.13 lets a PATH_MAX symlink chain through it, CVE-2025-4517):

- a member name that is absolute, has a drive letter or a ``..`` component, or repeats an earlier
  member (a second copy could replace what the first one checked) is refused;
- a link whose target is absolute or contains ``..`` is refused, and so is any member whose path
  or link target passes through a link member, so no chain of links can lead out of the target;
- a hard link must name an earlier regular file; devices, FIFOs and other special members are refused;
- the declared sizes of all files are summed first and more than ``max_bytes`` (setting
  ``limits.archive_max_bytes`` of ``sources.yaml``) is refused; while writing, bytes are counted
  again, so a zip whose headers lie about sizes stops at its declared size or at the cap.

Errors (``UnsafeArchiveError``) name the archive and the member. The members are then written by
this module (files created exclusively, never through an existing path) into a temporary sibling of
the target, which is renamed into place only when everything succeeded (``mla.io.atomic_directory``),
so a failure leaves no partial output.
"""
from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from mla.acquire.errors import AcquireError, UnsafeArchiveError
from mla.acquire.sources import limit, limit_setting
from mla.io import atomic_directory

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_LINK_TARGET = 4096  # bytes of a zip symlink's target that are read to check it
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One archive member as checked: normalised name, kind, link target, declared size."""

    name: str
    kind: str  # "file", "dir", "symlink" or "hardlink"
    size: int = 0
    target: str | None = None  # symlink: as stored; hardlink: the normalised name of the file it repeats
    mode: int = 0o644
    raw: object = None  # the TarInfo / ZipInfo


def extract_archive(archive: str | Path, dest: str | Path, *, max_bytes: int | None = None) -> Path:
    """Extract ``archive`` (zip or tar, compressed or not) to ``dest``, replacing it atomically; return ``dest``.

    ``max_bytes``: the most the unpacked files may hold together (default ``limits.archive_max_bytes``).
    """
    archive, dest = Path(archive), Path(dest)
    cap = int(max_bytes if max_bytes is not None else limit("archive_max_bytes"))
    if not archive.is_file():
        raise AcquireError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                members = check_members(archive, [_zip_member(archive, zf, info) for info in zf.infolist()], cap)
                with atomic_directory(dest) as tmp:
                    _write(archive, members, tmp, cap, lambda m: zf.open(m.raw))
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
            raise AcquireError(f"{archive}: corrupt zip archive: {exc}") from None
        except (RuntimeError, NotImplementedError) as exc:  # encrypted or unsupported compression
            if isinstance(exc, AcquireError):
                raise
            raise AcquireError(f"{archive}: cannot read zip archive: {exc}") from None
        return dest
    if _is_tar(archive):
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = check_members(archive, _tar_members(archive, tf, cap), cap)
                with atomic_directory(dest) as tmp:
                    _write(archive, members, tmp, cap, lambda m: tf.extractfile(m.raw))
        except (tarfile.TarError, EOFError) as exc:
            raise AcquireError(f"{archive}: corrupt tar archive: {exc}") from None
        return dest
    raise AcquireError(f"{archive}: not a zip or tar archive")


def check_members(archive: Path, members: list[Member], cap: int) -> list[Member]:
    """Apply the rules of the module docstring to all members; return them unchanged or raise."""
    def refuse(m: Member, why: str) -> None:
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} {why}; nothing was extracted")

    links = {m.name for m in members if m.kind in ("symlink", "hardlink")}
    seen: dict[str, Member] = {}
    total = 0
    for m in members:
        previous = seen.get(m.name)
        if previous is not None and not (m.kind == previous.kind == "dir"):
            refuse(m, "appears twice in the archive")
        seen[m.name] = m
        via = _through_link(m.name, links, include_self=False)
        if via:
            refuse(m, f"lies under the link member {via!r}")
        if m.kind == "symlink":
            target = (m.target or "").replace("\\", "/")
            if not target:
                refuse(m, "is a link with an empty target")
            if target.startswith("/") or _DRIVE.match(target):
                refuse(m, f"links to the absolute path {m.target!r}")
            if ".." in target.split("/"):
                refuse(m, f"links outside the target directory: its target {m.target!r} has a '..' component")
            parent = m.name.rsplit("/", 1)[0] if "/" in m.name else ""
            resolved = "/".join(_components(f"{parent}/{target}"))
            via = _through_link(resolved, links, include_self=True)
            if via:
                refuse(m, f"links through the link member {via!r} ({m.target!r})")
        elif m.kind == "hardlink":
            raw = str(getattr(m.raw, "linkname", m.target)).replace("\\", "/")
            if raw.startswith("/") or _DRIVE.match(raw) or ".." in raw.split("/"):
                refuse(m, f"links outside the target directory ({raw!r})")
            first = seen.get(m.target or "") if m.target != m.name else None
            if first is None or first.kind != "file":
                refuse(m, f"is a hard link to {m.target!r}, which is not an earlier regular file of the archive")
            total += first.size  # written as a copy
        elif m.kind == "file":
            total += m.size
        if total > cap:
            refuse(m, f"brings the unpacked size past {cap} bytes (the archive declares at least {total}); "
                      f"if the archive is genuine, raise {limit_setting('archive_max_bytes')}")
    return members


def _through_link(path: str, links: set[str], *, include_self: bool) -> str | None:
    """The first link member among the parents of ``path`` (and ``path`` itself if ``include_self``)."""
    parts = path.split("/")
    for i in range(1, len(parts) + (1 if include_self else 0)):
        prefix = "/".join(parts[:i])
        if prefix in links:
            return prefix
    return None


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _components(name: str) -> list[str]:
    return [c for c in name.replace("\\", "/").split("/") if c not in ("", ".")]


def _name(archive: Path, raw: str) -> str:
    """The member name, normalised; absolute names, drive letters and ``..`` are refused."""
    norm = raw.replace("\\", "/")
    def refuse(why: str) -> None:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} {why}; nothing was extracted")

    if norm.startswith("/") or _DRIVE.match(norm):
        refuse("has an absolute path")
    parts = _components(norm)
    if ".." in parts:
        refuse("has a '..' component")
    if not parts:
        refuse("has an empty name")
    return "/".join(parts)


def _tar_members(archive: Path, tf: tarfile.TarFile, cap: int) -> list[Member]:
    """The members, read header by header: a compressed bomb is refused at the header that passes the
    cap, without decompressing the rest (``getmembers`` would read the whole stream first)."""
    members, declared = [], 0
    for info in tf:
        members.append(_tar_member(archive, info))
        declared += info.size if info.isreg() else 0
        if declared > cap:
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} brings the unpacked size past {cap} bytes (the archive declares "
                f"at least {declared}); if the archive is genuine, raise {limit_setting('archive_max_bytes')}; "
                f"nothing was extracted")
    return members


def _tar_member(archive: Path, info: tarfile.TarInfo) -> Member:
    name = _name(archive, info.name)
    if info.ischr() or info.isblk() or info.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a device or FIFO; nothing was extracted")
    if info.issym():
        return Member(name, "symlink", target=info.linkname, raw=info)
    if info.islnk():
        return Member(name, "hardlink", target="/".join(_components(info.linkname)), raw=info)
    if info.isdir():
        return Member(name, "dir", raw=info)
    if info.isreg():
        return Member(name, "file", size=info.size, mode=0o755 if info.mode & 0o111 else 0o644, raw=info)
    raise UnsafeArchiveError(f"{archive}: member {info.name!r} has the unsupported tar type {info.type!r}; "
                             f"nothing was extracted")


def _zip_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    name = _name(archive, info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):  # a Unix symlink: its target is the member's content
        if info.file_size > _MAX_LINK_TARGET:
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link whose target declares "
                                     f"{info.file_size} bytes; nothing was extracted")
        with zf.open(info) as fh:
            target = fh.read(_MAX_LINK_TARGET + 1).decode("utf-8", "replace")
        return Member(name, "symlink", target=target, raw=info)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device or FIFO; nothing was extracted")
    if info.is_dir():
        return Member(name, "dir", raw=info)
    return Member(name, "file", size=info.file_size, mode=0o755 if mode & 0o111 else 0o644, raw=info)


def _write(archive: Path, members: list[Member], root: Path, cap: int,
           open_member: Callable[[Member], IO[bytes] | None]) -> None:
    """Create the checked members under ``root``, counting the bytes actually written."""
    real_root = os.path.realpath(root)
    sizes = {m.name: m.size for m in members if m.kind == "file"}
    total = 0
    for m in members:
        try:
            total = _write_one(archive, m, root, real_root, sizes, total, cap, open_member)
        except OSError as exc:  # e.g. a file member where an earlier one made a directory, or a full disk
            raise AcquireError(f"{archive}: cannot write member {m.name!r}: {exc}; nothing was extracted") from None


def _write_one(archive: Path, m: Member, root: Path, real_root: str, sizes: dict[str, int], total: int, cap: int,
               open_member: Callable[[Member], IO[bytes] | None]) -> int:
    """Write one member; return the running total of bytes written."""
    path = root / m.name
    parent = os.path.realpath(path.parent)
    if m.kind != "dir" and os.path.commonpath([real_root, parent]) != real_root:  # cannot happen after the checks
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} would be written outside the target")
    if m.kind == "dir":
        path.mkdir(parents=True, exist_ok=True)
        return total
    path.parent.mkdir(parents=True, exist_ok=True)
    if m.kind == "symlink":
        os.symlink(m.target.replace("\\", "/"), path)
        return total
    source = root / m.target if m.kind == "hardlink" else None
    fh = open(source, "rb") if source is not None else open_member(m)
    declared = sizes[m.target] if source is not None else m.size
    written = 0
    with fh, open(path, "xb") as out:  # "x": never through an existing file or link
        while chunk := fh.read(_CHUNK):
            written += len(chunk)
            total += len(chunk)
            if written > declared:
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} holds more than the {declared} bytes "
                                         f"its header declares; nothing was extracted")
            if total > cap:
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} brings the unpacked size past {cap} "
                                         f"bytes; if the archive is genuine, raise "
                                         f"{limit_setting('archive_max_bytes')}; nothing was extracted")
            out.write(chunk)
    os.chmod(path, m.mode)
    return total
