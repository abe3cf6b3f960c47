"""MVSA-Single (MLA's ``M3AEDataset``): ``data/<id>.jpg`` plus the MMBT-style jsonl files (``mla.data.mmbt``);
lists ``my_{train,test}_mvsa.txt`` (``<id>.jpg <label>``), classes sorted: negative, neutral, positive.

Label rule. MVSA-Single annotates text and image separately (``labelResultAll.txt``: ``ID<TAB>text,image``).
Every label of MLA's lists is a pair whose two annotations agree (checked on QMF's MVSA_Single jsonl
files, from which the lists come: 1,555 of 1,555 train pairs from its train.jsonl, 519 of 519 test pairs
from its test.jsonl (487) and dev.jsonl (32)); pairs that disagree
are not in the lists. When ``labelResultAll.txt`` is in the raw directory, each sample is checked
against it: text label, image label and list label must be equal, otherwise the error names the line.
"""
from __future__ import annotations

from pathlib import Path

from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.data.mmbt import LAYOUT, resolve_records
from mla.data.samples import Resolved, line_ref, read_lines

SPLIT_LISTS = "mvsa"
SECTIONS = ("image", "text")
EXTRA: dict = {}
ANNOTATIONS = "labelResultAll.txt"
__all__ = ["LAYOUT", "read_annotations", "resolve"]


def read_annotations(path: Path) -> dict[str, tuple[str, str, str]]:
    """``{id: (text label, image label, "<file>:<line>")}`` from ``labelResultAll.txt``."""
    out: dict[str, tuple[str, str, str]] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        if lineno == 1 and line.split("\t")[0].strip() == "ID":
            continue  # header "ID<TAB>text,image"
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        labels = parts[1].split(",") if len(parts) == 2 else []
        if len(labels) != 2:
            raise SplitFormatError(f"{path}:{lineno}: expected '<id><TAB><text label>,<image label>', got {line!r}")
        out[parts[0]] = (labels[0].strip(), labels[1].strip(), f"{path}:{lineno}")
    return out


def resolve(lists: SplitLists, raw_dir: Path, opts: dict) -> Resolved:
    """Samples per list with the image and text of their jsonl record, checked against the annotations."""
    resolved = resolve_records(lists, raw_dir)
    path = raw_dir / ANNOTATIONS
    if not path.is_file():
        resolved.notes["annotations"] = f"{ANNOTATIONS} absent: labels not checked against the annotations"
        return resolved
    ann = read_annotations(path)
    for role in ("train", "test"):
        for i, (sid, label) in enumerate(lists.samples[role]):
            if sid not in ann:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: id {sid} is not annotated in {path}")
            text, image, where = ann[sid]
            if not text == image == label:
                raise SplitFormatError(f"{where}: annotations text={text}, image={image} do not both give the "
                                       f"list's label {label!r} ({line_ref(lists, role, i)})")
    resolved.notes["annotations"] = (f"{ANNOTATIONS}: every sample's text and image annotations equal its label "
                                     f"({sum(len(v) for v in lists.samples.values())} checked)")
    return resolved
