"""The errors of data acquisition. Each message names its culprit (URL, file, archive member) and never
carries a credential; all derive from ``AcquireError``, a ``RuntimeError``, which the CLI reports."""
from __future__ import annotations


class AcquireError(RuntimeError):
    """Base class: something needed to obtain or verify raw data went wrong."""


class DownloadError(AcquireError):
    """An HTTP download failed (permanent status, or transient errors past the retry budget)."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url  # already redacted
        self.status = status


class ChecksumError(AcquireError):
    """Downloaded or found bytes do not match the expected sha256 (or size)."""

    def __init__(self, message: str, *, culprit: str = "", expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.culprit = culprit
        self.expected = expected
        self.actual = actual


class UnsafeArchiveError(AcquireError):
    """An archive member would land outside the target directory (absolute path, '..', link, device)."""


class LayoutError(AcquireError):
    """A user-provided copy lacks expected files or holds files that differ from the reference."""


class SplitFormatError(ValueError):
    """A split list or class file is malformed; the message starts with ``<file>:<line>:``."""
