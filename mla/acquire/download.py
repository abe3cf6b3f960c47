"""HTTP(S) downloads: streamed, resumable, retried, sha256-verified and atomic (urllib only).

``download(url, dest, sha256=...)`` streams into ``.<name>.part`` beside ``dest`` and hashes while it
writes. An interrupted transfer keeps the ``.part`` file, and the next attempt (a retry, or a later run)
asks for the rest with an HTTP ``Range`` request; a server that ignores the range (answers 200) is
read from byte 0 again. Transient errors (timeouts, resets, truncated bodies, 408/429 and 5xx answers)
are retried with exponential backoff; any other HTTP status (404, 403, ...) fails at once, and so does
a host that cannot be reached at all (no DNS answer, connection refused, no route: ``NetworkUnreachable``),
since waiting for a network that is not there only delays the message. Only a file
whose size and sha256 match is moved onto ``dest`` with ``os.replace``; a mismatch deletes the
temporary file and raises ``ChecksumError`` naming the URL and both hashes (a resumed transfer that
fails verification is first retried once from byte 0, in case the partial file was stale).

Where no checksum is known, a ``ChecksumLock`` supplies it (trust on first download: the first
download records its sha256, later ones must match). URLs in messages and the lock are redacted.

Bounds against a hostile or broken server: a download whose size is not known in advance stops at
``max_bytes`` (setting ``limits.download_max_bytes``), and one download, retries included, stops at
``deadline`` seconds (``limits.download_deadline_s``) however slowly the bytes trickle in (the
``timeout`` only bounds each wait for the next bytes). A download that fails with an error, a full
disk included, removes its ``.part`` file; only a process that is killed outright leaves one behind,
which the next run resumes.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from mla.acquire.errors import AcquireError, ChecksumError, DownloadError
from mla.acquire.lockfile import ChecksumLock
from mla.acquire.redact import redact_url, request_target, scrub
from mla.acquire.sources import limit, limit_setting

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRANSIENT_STATUS = {408, 425, 429}
# connect() errors that mean the host cannot be reached from here at all (not a busy or flaky server)
_UNREACHABLE_ERRNO = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
_MAX_DELAY = 60.0
_USER_AGENT = "mla-repro-acquire/1 (+urllib)"
T = TypeVar("T")


@dataclass(frozen=True)
class Downloaded:
    """A verified file: where it is, its sha256 and size, and whether this call fetched it."""

    path: Path
    sha256: str
    size: int
    fetched: bool


class ResponseTooLarge(AcquireError):
    """``fetch_bytes`` got more than it allows."""


class NetworkUnreachable(DownloadError):
    """The host cannot be reached (DNS failure, connection refused, no route); never retried."""

    def __init__(self, message: str, *, url: str = "", host: str = "") -> None:
        super().__init__(message, url=url)
        self.host = host


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(value: str | None, what: str) -> str | None:
    """Normalise a sha256 to 64 lower-case hex digits (None stays None); anything else is an error."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v.startswith("sha256:"):
        v = v[len("sha256:"):]
    if not _HEX64.fullmatch(v):
        raise AcquireError(f"{what}: {value!r} is not a sha256 (64 hex digits)")
    return v


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    lock: ChecksumLock | None = None,
    lock_key: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    chunk_size: int = 1 << 20,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> Downloaded:
    """Download ``url`` to ``dest`` and verify it; return the verified file.

    ``sha256``/``size``: the published values, when known. Without ``sha256``, ``lock`` (if given)
    supplies the value recorded for ``lock_key`` (default: the redacted URL) or records it after this
    download. An existing ``dest`` that matches the expected checksum is kept without a request; with no
    checksum known it is downloaded again. ``retries`` transient failures are retried, waiting
    ``backoff * 2**k`` seconds (at most 60, or the server's Retry-After). ``max_bytes`` and ``deadline``
    default to ``limits.download_max_bytes`` and ``limits.download_deadline_s`` (module docstring).
    """
    dest = Path(dest)
    shown = redact_url(url)
    bounds = _Bounds.start(shown, dest, max_bytes, deadline)
    key = lock_key or shown
    expected = check_sha256(sha256, f"expected checksum for {shown}")
    origin = "the configured checksum"
    if expected is None and lock is not None:
        entry = lock.get(key)
        if entry is not None:
            expected = check_sha256(entry["sha256"], f"{lock.path}: {key}")
            size = entry.get("size", size) if size is None else size
            origin = f"recorded in {lock.path} on first download; delete that entry to accept a new file"

    if dest.exists() and expected is not None:
        if (size is None or dest.stat().st_size == size) and sha256_file(dest) == expected:
            log.debug("%s: present and verified", dest)
            return Downloaded(dest, expected, dest.stat().st_size, fetched=False)
        log.warning("%s: existing file does not match %s; downloading it again", dest, shown)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    try:
        return _download_part(url, dest, part, expected, size, origin, lock, key, bounds, retries, backoff,
                              timeout, headers, chunk_size)
    except BaseException as exc:
        _unlink(part)  # whatever failed, no partial file stays behind
        if isinstance(exc, OSError):  # writing failed: a full disk, a read-only directory, ...
            raise DownloadError(f"download of {shown} to {dest} failed writing {part}: "
                                f"{exc.strerror or exc}; the partial file was deleted", url=shown) from None
        if isinstance(exc, AcquireError) and len(exc.args) == 1 and str(dest) not in str(exc):
            exc.args = (f"{exc.args[0]} (destination {dest})",)  # same error, now naming the path too
        raise


def _download_part(url: str, dest: Path, part: Path, expected: str | None, size: int | None, origin: str,
                   lock: ChecksumLock | None, key: str, bounds: "_Bounds", retries: int, backoff: float,
                   timeout: float, headers: dict[str, str] | None, chunk_size: int) -> Downloaded:
    """Fetch into ``part``, verify, move onto ``dest`` (the body of ``download``)."""
    shown = bounds.shown
    for fresh in (False, True):
        if fresh:
            log.warning("%s: resumed download failed verification; downloading from byte 0", shown)
        try:
            digest, nbytes, resumed = _with_retries(
                shown, retries, backoff,
                lambda: _fetch_to_file(url, part, size=size, timeout=timeout, headers=headers, chunk_size=chunk_size,
                                       bounds=bounds),
                bounds,
            )
        except NetworkUnreachable as exc:
            raise NetworkUnreachable(f"{exc}, or place the file yourself at {dest}", url=exc.url, host=exc.host) from None
        problem = None
        if size is not None and nbytes != size:
            problem = f"expected {size} bytes, got {nbytes}"
        elif expected is not None and digest != expected:
            problem = f"expected sha256 {expected} ({origin}), got {digest}"
        if problem is None:
            break
        _unlink(part)
        if resumed and not fresh:
            continue
        raise ChecksumError(
            f"checksum mismatch for {shown}: {problem}; the downloaded file was deleted",
            culprit=shown, expected=expected or "", actual=digest,
        )
    if expected is None and lock is not None:
        lock.record(key, digest, nbytes)
        log.info("%s: recorded sha256 %s in %s", shown, digest, lock.path)
    os.replace(part, dest)
    log.info("%s -> %s (%d bytes, sha256 %s)", shown, dest, nbytes, digest)
    return Downloaded(dest, digest, nbytes, fetched=True)


def fetch_bytes(
    url: str,
    *,
    max_bytes: int = 1 << 20,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    deadline: float | None = None,
) -> bytes:
    """GET a small resource into memory (same retry rules as ``download``); larger than ``max_bytes`` is an
    error, and so is taking longer than ``deadline`` seconds (default ``limits.download_deadline_s``)."""
    shown = redact_url(url)
    bounds = _Bounds.start(shown, None, max_bytes, deadline)

    def once() -> bytes:
        bounds.check_time(0)
        with _open(url, 0, min(timeout, max(bounds.left(), 0.001)), headers) as resp:
            length = _int_header(resp, "Content-Length")
            body = b""
            while len(body) <= max_bytes:
                chunk = _read(resp, url, max_bytes + 1 - len(body))
                if not chunk:
                    break
                body += chunk
                bounds.check_time(len(body))
        if len(body) > max_bytes:
            raise ResponseTooLarge(f"{shown}: response is larger than {max_bytes} bytes")
        if length is not None and len(body) < length:
            raise _Transient(f"connection closed after {len(body)} of {length} bytes")
        return body

    return _with_retries(shown, retries, backoff, once, bounds)


# ----------------------------------------------------------------------------------------------------
# internals


@dataclass(frozen=True)
class _Bounds:
    """The byte cap (for a download of unknown size) and the monotonic deadline of one download."""

    shown: str
    dest: Path | None
    max_bytes: int
    deadline_s: float
    until: float

    @classmethod
    def start(cls, shown: str, dest: Path | None, max_bytes: int | None, deadline: float | None) -> "_Bounds":
        cap = int(max_bytes if max_bytes is not None else limit("download_max_bytes"))
        seconds = float(deadline if deadline is not None else limit("download_deadline_s"))
        return cls(shown, dest, cap, seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.until - time.monotonic()

    def check_time(self, received: int) -> None:
        if self.left() <= 0:
            raise DownloadError(
                f"download of {self.shown}{self._to()} did not finish within {self.deadline_s:g} s "
                f"({received} bytes received); raise {limit_setting('download_deadline_s')} for a slow "
                f"but genuine server", url=self.shown)

    def check_bytes(self, total: int) -> None:
        if total > self.max_bytes:
            raise DownloadError(
                f"download of {self.shown}{self._to()} exceeds {self.max_bytes} bytes and its size is not "
                f"known in advance; raise {limit_setting('download_max_bytes')} if the file is genuine",
                url=self.shown)

    def _to(self) -> str:
        return f" to {self.dest}" if self.dest is not None else ""


def _with_retries(shown: str, retries: int, backoff: float, attempt_fn: Callable[[], T],
                  bounds: _Bounds | None = None) -> T:
    attempt = 0
    while True:
        try:
            return attempt_fn()
        except _Transient as exc:
            if attempt >= retries:
                raise DownloadError(
                    f"download of {shown}{bounds._to() if bounds else ''} failed after {attempt + 1} attempts: "
                    f"{exc}", url=shown
                ) from None
            delay = min(_MAX_DELAY, backoff * 2**attempt)
            if exc.retry_after is not None:
                delay = min(max(delay, exc.retry_after), 2 * _MAX_DELAY)
            if bounds is not None and delay >= bounds.left():
                raise DownloadError(
                    f"download of {shown}{bounds._to()} failed after {attempt + 1} attempts ({exc}) and the "
                    f"next retry would pass its deadline of {bounds.deadline_s:g} s "
                    f"({limit_setting('download_deadline_s')})", url=shown) from None
            attempt += 1
            log.warning("%s: %s; retry %d of %d in %.1f s", shown, exc, attempt, retries, delay)
            time.sleep(delay)


def _open(url: str, offset: int, timeout: float, headers: dict[str, str] | None):
    """urlopen with our headers; HTTP errors become ``_Transient`` or ``DownloadError``."""
    shown = redact_url(url)
    target, auth = request_target(url)
    req = urllib.request.Request(target, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **(headers or {})})
    for name, value in auth.items():
        req.add_unredirected_header(name, value)  # never forwarded to a redirect target
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        status, reason, hdrs = exc.code, exc.reason, exc.headers
        with contextlib.suppress(Exception):
            exc.close()
        if status == 416 and offset:
            raise _RangeNotSatisfiable(_content_range(hdrs.get("Content-Range"))[2]) from None
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {status} {reason}", _retry_after(hdrs.get("Retry-After"))) from None
        raise DownloadError(f"download of {shown} failed: HTTP {status} {reason}{_hint(status)}", url=shown, status=status) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, refused connections
        if _unreachable(exc):
            host = urllib.parse.urlsplit(shown).netloc
            raise NetworkUnreachable(f"network unreachable: {host} ({scrub(_describe(exc), url)}); acquire needs "
                                     f"access to {host}", url=shown, host=host) from None
        raise _Transient(scrub(_describe(exc), url)) from None


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (from ``urlopen``) says the host cannot be reached at all: its name does not resolve,
    or the connection is refused or has no route. Timeouts and resets stay transient."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return True
    return isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNO


class _RangeNotSatisfiable(Exception):
    def __init__(self, total: int | None) -> None:
        super().__init__("HTTP 416")
        self.total = total


def _fetch_to_file(url: str, part: Path, *, size: int | None, timeout: float, headers, chunk_size: int,
                   bounds: _Bounds) -> tuple[str, int, bool]:
    """One attempt: continue or start ``part``; return (sha256, bytes in part, whether it resumed)."""
    shown = redact_url(url)
    bounds.check_time(0)
    timeout = min(timeout, max(bounds.left(), 0.001))  # the wait for headers counts against the deadline too
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        _unlink(part)
        offset = 0
    if offset and size is not None and offset == size:  # complete from an earlier run, not yet verified
        return sha256_file(part), offset, True
    try:
        resp = _open(url, offset, timeout, headers)
    except _RangeNotSatisfiable as exc:
        if exc.total is not None and exc.total == offset:  # the partial file already holds everything
            return sha256_file(part), offset, True
        _unlink(part)
        raise _Transient("server cannot resume this partial file (HTTP 416); restarting from byte 0") from None
    except NetworkUnreachable:
        raise  # not retried: an unreachable host fails at once (download() removes the partial file)
    except DownloadError:
        _unlink(part)  # a permanent failure leaves nothing behind
        raise
    with resp:
        hasher = hashlib.sha256()
        resumed = False
        if offset and resp.status == 206:
            start, _end, _total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                _unlink(part)
                raise _Transient(f"server resumed at byte {start}, not {offset}; restarting from byte 0")
            with open(part, "rb") as fh:
                for chunk in iter(lambda: fh.read(chunk_size), b""):
                    hasher.update(chunk)
            mode, resumed = "ab", True
        else:
            if offset:
                log.info("%s: server ignored the range request; restarting from byte 0", shown)
            offset, mode = 0, "wb"
        length = _int_header(resp, "Content-Length")
        if size is None and length is not None:
            bounds.check_bytes(offset + length)  # refuse a declared oversize before reading it
        received = 0
        with open(part, mode) as fh:
            while True:
                chunk = _read(resp, url, chunk_size)
                if not chunk:
                    break
                fh.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                if size is not None and offset + received > size:
                    break  # more than the expected size: stop, verification reports it
                if size is None:
                    bounds.check_bytes(offset + received)
                bounds.check_time(offset + received)
            fh.flush()
            os.fsync(fh.fileno())
    total = offset + received
    if length is not None and received < length and (size is None or total < size):
        raise _Transient(f"connection closed after {total} bytes (expected {offset + length})")
    return hasher.hexdigest(), total, resumed


def _read(resp, url: str, n: int) -> bytes:
    """At most ``n`` bytes, returning as soon as any arrive (``read(n)`` would wait for all ``n``, so a
    server trickling bytes would never reach the deadline check between reads)."""
    try:
        return getattr(resp, "read1", resp.read)(n)
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(scrub(_describe(exc), url)) from None


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes a-b/total`` or ``bytes */total``."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None, None
    start, end, total = m.groups()
    return (int(start) if start else None, int(end) if end else None, int(total) if total and total != "*" else None)


def _int_header(resp, name: str) -> int | None:
    value = resp.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _hint(status: int) -> str:
    if status == 404:
        return " (not found: check the path and the pinned commit)"
    if status in (401, 403):
        return " (access denied: missing or wrong credentials, or the host's bandwidth quota is exhausted)"
    return ""


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
    return text.rstrip(": ") or type(exc).__name__


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
