"""Parsers for the official split lists and class files, one per format.

The formats are those of the files in MLA's and OGM-GE's ``data/`` folders (``mla/acquire/sources.yaml``
pins both repositories); MLA's loaders read its lists in ``dataset/dataset.py`` L61-89, L358-383, L660-684.

Every parser returns ``[(sample id, label), ...]`` in file order (class files: the class names) and
raises ``SplitFormatError`` whose message starts with ``<file>:<line>:`` on malformed input: a line
of the wrong shape, an empty line, a duplicate id, bytes that are not UTF-8. A UTF-8 byte-order mark
and CRLF line ends (OGM-GE's files have both) are accepted everywhere; a missing final newline (MLA's
stat files) too.

| format        | line                                                   | files                          |
| ------------- | ------------------------------------------------------ | ------------------------------ |
| ``mla``       | ``<id>.<ext> <Label>`` (the loader splits on ".<ext> ") | my_{train,test}_{cre,food,mvsa}.txt |
| ``mla_iemocap`` | ``<utt>.mp4 [split|sign] <transcript> [split|sign] <Label>`` | my_{train,test}_iemo.txt |
| ``class_list`` | ``<class name>``                                      | stat_*.txt, OGM-GE stat.csv    |
| ``ogm_csv``   | ``<clip>,<LABEL>``                                     | OGM-GE CREMAD/{train,test}.csv |
| ``ogm_ks``    | ``<clip id>,<int>,<class index>``                      | OGM-GE KineticSound/my_{train,test}.txt |

Sample ids carry no extension (``1012_MTI_SAD_XX``, ``frozen_yogurt_426``); the label is the raw
string of the file (KS: the class index as a string). Class indices are a separate, documented choice
(MLA sorts the class names; OGM-GE's CREMA-D uses a fixed order), so no parser assigns them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mla.acquire.errors import SplitFormatError

_MLA = re.compile(r"(\S+)\.([A-Za-z0-9]+) (\S+)")
_IEMO_SEP = " [split|sign] "
_OGM_CSV = re.compile(r"([^,\s]+),([^,\s]+)")
_OGM_KS = re.compile(r"([^,\s]+),(\d+),(\d+)")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without line end) for every line of ``path``."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise SplitFormatError(f"{path}:{lineno}: not valid UTF-8") from None
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    for lineno, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            raise SplitFormatError(f"{path}:{lineno}: empty line")
        yield lineno, line


def _unique(path: Path, rows: list[tuple[int, str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    for lineno, sid, _label in rows:
        if sid in seen:
            raise SplitFormatError(f"{path}:{lineno}: duplicate sample id {sid!r} (first on line {seen[sid]})")
        seen[sid] = lineno
    return [(sid, label) for _l, sid, label in rows]


def _matches(path: Path, pattern: re.Pattern, expected: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line number, line, groups)`` of every line, each of which must match ``pattern`` in full; a
    line that does not is an error naming the file, the line and the ``expected`` form."""
    for lineno, line in _lines(path):
        m = pattern.fullmatch(line)
        if not m:
            raise SplitFormatError(f"{path}:{lineno}: expected '{expected}', got {line!r}")
        yield lineno, line, m.groups()


def parse_mla_list(path: str | Path, ext: str | None = None) -> list[tuple[str, str]]:
    """MLA's ``<id>.<ext> <Label>`` lists; with ``ext`` given, every line must use that extension."""
    path = Path(path)
    rows = []
    for lineno, line, (sid, found_ext, label) in _matches(path, _MLA, "<id>.<ext> <Label>"):
        if ext is not None and found_ext != ext.lstrip("."):
            raise SplitFormatError(f"{path}:{lineno}: expected a '.{ext.lstrip('.')}' file name, got {line.split(' ')[0]!r}")
        rows.append((lineno, sid, label))
    return _unique(path, rows)


def _iemocap_rows(path: Path) -> Iterator[tuple[int, str, str, str]]:
    for lineno, line in _lines(path):
        parts = line.split(_IEMO_SEP)
        if len(parts) != 3 or not re.fullmatch(r"\S+\.mp4", parts[0]) or not re.fullmatch(r"\S+", parts[2]):
            raise SplitFormatError(
                f"{path}:{lineno}: expected '<utterance>.mp4{_IEMO_SEP}<transcript>{_IEMO_SEP}<Label>', got {line[:120]!r}"
            )
        yield lineno, parts[0][: -len(".mp4")], parts[1], parts[2]


def parse_mla_iemocap(path: str | Path) -> list[tuple[str, str]]:
    """MLA's IEMOCAP lists: ``(utterance id, label)``; the transcripts come from ``read_iemocap_transcripts``."""
    path = Path(path)
    return _unique(path, [(lineno, sid, label) for lineno, sid, _text, label in _iemocap_rows(path)])


def read_iemocap_transcripts(path: str | Path) -> dict[str, str]:
    """``{utterance id: transcript}`` from an MLA IEMOCAP list (the transcript as written, spaces kept)."""
    path = Path(path)
    rows = list(_iemocap_rows(path))
    _unique(path, [(lineno, sid, label) for lineno, sid, _t, label in rows])
    return {sid: text for _l, sid, text, _label in rows}


def parse_class_list(path: str | Path) -> list[str]:
    """A class file (MLA ``stat_*.txt``, OGM-GE ``stat.csv``): one name per line, in file order."""
    path = Path(path)
    names: dict[str, int] = {}
    for lineno, line in _lines(path):
        name = line.strip()
        if not re.fullmatch(r"[^\s,]+", name):
            raise SplitFormatError(f"{path}:{lineno}: expected one class name, got {line!r}")
        if name in names:
            raise SplitFormatError(f"{path}:{lineno}: duplicate class {name!r} (first on line {names[name]})")
        names[name] = lineno
    return list(names)


def parse_ogm_csv(path: str | Path) -> list[tuple[str, str]]:
    """OGM-GE's CREMA-D ``<clip>,<LABEL>`` lists."""
    path = Path(path)
    return _unique(path, [(lineno, *groups) for lineno, _line, groups in _matches(path, _OGM_CSV, "<clip>,<LABEL>")])


def parse_ogm_ks(path: str | Path) -> list[tuple[str, str]]:
    """OGM-GE's Kinetics-Sounds ``<clip id>,<int>,<class index>`` lists: ``(clip id, class index)``."""
    path = Path(path)
    # the middle field is 10 on every line; its meaning is undocumented
    return _unique(path, [(lineno, sid, str(int(label))) for lineno, _line, (sid, _middle, label)
                          in _matches(path, _OGM_KS, "<clip id>,<int>,<class index>")])


FORMATS: dict[str, Callable[..., list]] = {
    "mla": parse_mla_list,
    "mla_iemocap": parse_mla_iemocap,
    "class_list": parse_class_list,
    "ogm_csv": parse_ogm_csv,
    "ogm_ks": parse_ogm_ks,
}


def read_split(path: str | Path, fmt: str, **options) -> list:
    """Parse ``path`` with the parser registered as ``fmt`` (see ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown split-list format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[fmt](path, **options)


def check_labels(samples: Sequence[tuple[str, str]], classes: Sequence[str], path: str | Path) -> None:
    """Every label of ``samples`` (parsed from ``path``, no blank lines) must be one of ``classes``."""
    allowed = set(classes)
    for lineno, (sid, label) in enumerate(samples, start=1):
        if label not in allowed:
            raise SplitFormatError(f"{path}:{lineno}: label {label!r} of {sid!r} is not a known class ({len(allowed)} classes)")


def check_disjoint(train: Sequence[tuple[str, str]], test: Sequence[tuple[str, str]], test_path: str | Path) -> None:
    """No test id may also be a training id."""
    train_ids = {sid for sid, _ in train}
    for lineno, (sid, _label) in enumerate(test, start=1):
        if sid in train_ids:
            raise SplitFormatError(f"{test_path}:{lineno}: sample {sid!r} is also in the training list")
