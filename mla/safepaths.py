"""Names that become path components, and the directories the pipeline may write and delete in.

No torch here: the config, the grid and the DAG use it.

- A *name* (the config's ``name``, dataset, method and ablation variant names, job tags, missing-rate
  tags) becomes one directory name under ``results/``, ``work/``, ``logs/`` ...; it must match
  :data:`NAME_PATTERN` (lowercase letters, digits, ``_`` and ``-``; no ``/``, no ``.``, so no ``..``).
  ``mla/config_schema.yaml`` (``$defs/name``) holds the same pattern.
- Every directory the pipeline replaces or deletes is first resolved (symbolic links followed) and
  checked to lie inside its root: one of :data:`PROJECT_DIRS` under the directory ``mla`` runs in
  (Snakemake's working directory, the repository root), or an ``--out`` the user named.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mla.errors import UnsafeNameError, UnsafePathError

NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,99}$"
NAME_RULE = "lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 100 characters"
_NAME = re.compile(NAME_PATTERN)

# The project's output roots, relative to the directory mla runs in.
PROJECT_DIRS = ("results", "work", "data", "reports", "logs")


def is_name(value: object) -> bool:
    """Whether ``value`` is a string that may be used as one path component."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, what: str, fix: str) -> str:
    """Return ``value`` if it is a safe name; otherwise raise :class:`UnsafeNameError` saying
    ``what`` it is and ``fix`` (the setting to change)."""
    if not is_name(value):
        raise UnsafeNameError(f"{what} {value!r} is not a safe name ({NAME_RULE}): it becomes a directory "
                              f"name; {fix}")
    return value


def project_dir(kind: str) -> Path:
    """``results``, ``work``, ``data``, ``reports`` or ``logs`` under the directory mla runs in."""
    if kind not in PROJECT_DIRS:
        raise ValueError(f"unknown project directory {kind!r}; expected one of {', '.join(PROJECT_DIRS)}")
    return Path(kind)


def confine(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path`` resolved (symbolic links followed, ``..`` removed), if it is ``root`` or lies inside it
    (``root`` resolved the same way, so a root that is itself a link to another disk is fine).

    Raises :class:`UnsafePathError` naming both otherwise. Nothing is created.
    """
    real, real_root = Path(path).resolve(), Path(root).resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"refusing to write or delete {path}: it resolves to {real}, outside {root} "
                              f"({real_root}); the pipeline writes only under {', '.join(PROJECT_DIRS)} of the "
                              f"directory it runs in, or under an --out you name (check the names in the config "
                              f"and any symbolic link on the way)")
    return real


def remove_tree(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """``shutil.rmtree(path)`` after checking that ``path`` lies inside ``root`` (:func:`confine`), is
    not ``root`` itself and is a directory, not a symbolic link (a link is never followed into)."""
    path = Path(path)
    real = confine(path, root)
    if real == Path(root).resolve():
        raise UnsafePathError(f"refusing to delete {path}: it is the root {root} itself")
    if path.is_symlink():
        raise UnsafePathError(f"refusing to delete {path}: it is a symbolic link (to {os.readlink(path)}) inside "
                              f"{root}; remove the link yourself if it should go")
    shutil.rmtree(path)
