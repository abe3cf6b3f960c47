"""Errors caused by what the user gave (a config, a name, a path), as opposed to bugs.

The ``mla`` command prints a :class:`UserError` as one line (what, where, what to do) and exits
with status 1, without a traceback; ``mla --debug ...`` or ``MLA_DEBUG=1`` shows the traceback.
The classes also derive from ``ValueError``, so callers that caught ``ValueError`` before keep working.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the culprit and the setting that fixes it."""


class UnsafeNameError(UserError, ValueError):
    """A name that becomes a path component (config name, dataset, method, variant, job id) is not a plain name."""


class UnsafePathError(UserError, ValueError):
    """A path the pipeline would write or delete lies outside the directory it is confined to."""
