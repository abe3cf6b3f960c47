"""Safe extraction of zip and tar archives (plain, gzip, bzip2, xz).

Every member is checked before anything is written: an absolute path, a drive letter, a ``..``
component, a symbolic or hard link whose target lies outside the target directory, or a device/FIFO
member is refused with an ``UnsafeArchiveError`` naming the archive and the member. The archive is then
extracted into a temporary sibling of the target, which is renamed into place only when extraction
succeeds (``mla.io.atomic_directory``), so a failure leaves no partial directory. Tar extraction also
runs with Python's ``data`` filter as a second line of defence.
"""
from __future__ import annotations

import posixpath
import re
import stat
import tarfile
import zipfile
from pathlib import Path

from mla.acquire.errors import AcquireError, UnsafeArchiveError
from mla.io import atomic_directory

_DRIVE = re.compile(r"^[A-Za-z]:")


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` (zip or tar, compressed or not) to ``dest``, replacing it atomically; return ``dest``."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise AcquireError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(archive, info.filename, _zip_link_target(zf, info), hardlink=False, special=False)
                with atomic_directory(dest) as tmp:
                    zf.extractall(tmp)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise AcquireError(f"{archive}: corrupt zip archive: {exc}") from None
        return dest
    if _is_tar(archive):
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for m in members:
                    target = m.linkname if (m.issym() or m.islnk()) else None
                    _check_member(archive, m.name, target, hardlink=m.islnk(),
                                  special=m.ischr() or m.isblk() or m.isfifo())
                with atomic_directory(dest) as tmp:
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.11.4; members were checked above
                        tf.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError) as exc:
            if isinstance(exc, tarfile.FilterError):
                raise UnsafeArchiveError(f"{archive}: unsafe member refused by the tar data filter: {exc}") from None
            raise AcquireError(f"{archive}: corrupt tar archive: {exc}") from None
        return dest
    raise AcquireError(f"{archive}: not a zip or tar archive")


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The link target of a zip member stored as a Unix symlink (zipfile writes it as a plain file)."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return zf.read(info).decode("utf-8", "replace")
    return None


def _components(name: str) -> list[str]:
    return [c for c in name.replace("\\", "/").split("/") if c not in ("", ".")]


def _check_member(archive: Path, name: str, link: str | None, *, hardlink: bool, special: bool) -> None:
    def refuse(why: str) -> None:
        raise UnsafeArchiveError(f"{archive}: member {name!r} {why}; nothing was extracted")

    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        refuse("has an absolute path")
    if ".." in _components(name):
        refuse("has a '..' component")
    if special:
        refuse("is a device or FIFO")
    if link is None:
        return
    target = link.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        refuse(f"links to the absolute path {link!r}")
    # A symlink resolves relative to its own directory, a hard link relative to the archive root.
    base = "" if hardlink else posixpath.dirname(posixpath.normpath(norm))
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        refuse(f"links outside the target directory ({link!r})")
