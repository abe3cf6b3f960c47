"""What a real dataset's module returns (samples per split with the inputs of each modality) and the
helpers the five modules share: MLA's class indexing, list-line references, the missing-file check,
finding files by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.acquire.usercopy import walk_files
from mla.features import MediaError
from mla.features.inputs import Input

SHOW = 20  # files named in one error message


class MissingFilesError(MediaError):
    """Samples of the official lists whose files are absent; the message names them."""


@dataclass(frozen=True)
class Sample:
    """One sample of an official list: id, class index, and where each modality comes from."""

    id: str
    label: int
    inputs: dict[str, Input]


@dataclass
class Resolved:
    """A dataset mapped onto its raw files.

    ``samples``: ``{"train": [...], "test": [...]}`` in list order, without ``excluded`` ids (only
    Kinetics-Sounds may exclude, and only the ids its listing names). ``notes`` go into the manifest.
    """

    classes: list[str]
    samples: dict[str, list[Sample]]
    excluded: dict[str, list[str]] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def sorted_classes(lists: SplitLists) -> tuple[list[str], dict[str, int]]:
    """MLA's rule: the class index is the position in ``sorted(stat file lines)``.

    As [C]'s loaders index it (``dataset/dataset.py`` L91 and L160 for CREMA-D; the others alike).
    """
    names = sorted(lists.classes)
    return names, {c: i for i, c in enumerate(names)}


def line_ref(lists: SplitLists, role: str, i: int) -> str:
    """``<list file>:<line>`` of the ``i``-th sample of ``role`` (the parsers reject blank lines)."""
    return f"{lists.paths[role]}:{i + 1}"


def require_files(samples: dict[str, list[Sample]], dataset: str, hint: str = "") -> None:
    """Every input file of every sample must exist; otherwise one error names the missing files."""
    paths: dict[Path, str] = {}  # file -> the first sample reading it (a video may give audio and frames)
    for role in samples:
        for s in samples[role]:
            for inp in s.inputs.values():
                if inp.path is not None:
                    paths.setdefault(inp.path, f"{role} sample {s.id}")
    missing = [f"{path} ({who})" for path, who in paths.items() if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:SHOW])
        more = f"\n  ... and {len(missing) - SHOW} more" if len(missing) > SHOW else ""
        raise MissingFilesError(f"{dataset}: {len(missing)} of {len(paths)} input files are missing:\n  {shown}{more}"
                                + (f"\n{hint}" if hint else ""))


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark dropped); bytes that are not UTF-8 raise
    ``SplitFormatError`` naming the file and line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise SplitFormatError(f"{path}:{lineno}: not valid UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")  # not splitlines(): JSON text may hold a raw U+2028
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def files_by_name(root: Path, suffix: str) -> dict[str, list[str]]:
    """``{file name: [paths relative to root]}`` of the files under ``root`` ending in ``suffix``,
    following directory links but entering each real directory once (sorted, so deterministic)."""
    out: dict[str, list[str]] = {}
    for rel in walk_files(root):
        name = rel.rsplit("/", 1)[-1]
        if name.endswith(suffix):
            out.setdefault(name, []).append(rel)
    return out


def counts_by_label(samples: Iterable[Sample], n_classes: int) -> list[int]:
    """Samples per class index."""
    counts = [0] * n_classes
    for s in samples:
        counts[s.label] += 1
    return counts
