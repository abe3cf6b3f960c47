"""The image-text datasets' sources: MMBT-style ``train.jsonl``, ``dev.jsonl`` and
``test.jsonl`` in the raw directory, one JSON object per line with ``text``, ``img`` (the image path,
relative to the raw directory) and ``label``; ``data/gen_{food,mvsa}_txt.py`` made the lists from them
(``img.split("/")[-1]`` and ``label``) and ``data/extract_token.py`` tokenised their ``text``.

A list id ``<name>`` is the record whose image file is ``<name>.jpg``, looked up in all three files
(MLA's MVSA test list holds records of the dev file). The record's label must equal the list's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.data.samples import Resolved, Sample, line_ref, read_lines, sorted_classes
from mla.features.inputs import Input

JSONL = ("train.jsonl", "dev.jsonl", "test.jsonl")
LAYOUT = {"image": "<img of the jsonl record>", "text": "<text of the jsonl record>"}


@dataclass(frozen=True)
class Record:
    """One jsonl line: the image path, text, label and ``<file>:<line>``."""

    img: str
    text: str
    label: str
    where: str
    source: str


def read_records(raw_dir: Path) -> dict[str, list[Record]]:
    """``{image name without .jpg: [records]}`` over the three jsonl files (several = ambiguous)."""
    out: dict[str, list[Record]] = {}
    for name in JSONL:
        path = raw_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}: the image-text datasets read MMBT-style "
                                    f"{', '.join(JSONL)} (as MLA's data/gen_{{food,mvsa}}_txt.py do)")
        for lineno, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
                rec = Record(str(obj["img"]), str(obj["text"]), str(obj["label"]), where, name)
            except (ValueError, KeyError, TypeError) as exc:
                raise SplitFormatError(f"{where}: expected a JSON object with img, text, label ({exc})") from None
            img = PurePosixPath(rec.img)
            if img.is_absolute() or ".." in img.parts:
                raise SplitFormatError(f"{where}: image path {rec.img!r} must be relative to {raw_dir}")
            key = img.name[: -len(".jpg")] if img.name.endswith(".jpg") else img.name
            out.setdefault(key, []).append(rec)
    return out


def resolve_records(lists: SplitLists, raw_dir: Path) -> Resolved:
    """Samples per list: image = the record's ``img``, text = its ``text``; errors name list and jsonl lines."""
    classes, index = sorted_classes(lists)
    records = read_records(raw_dir)
    samples: dict[str, list[Sample]] = {}
    used: dict[str, dict[str, int]] = {}
    for role in ("train", "test"):
        samples[role], used[role] = [], {}
        for i, (sid, label) in enumerate(lists.samples[role]):
            recs = records.get(sid, [])
            if not recs:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: no record for {sid}.jpg in "
                                       f"{', '.join(str(raw_dir / n) for n in JSONL)}")
            if len(recs) > 1:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: {sid}.jpg has several records: "
                                       f"{', '.join(r.where for r in recs)}")
            rec = recs[0]
            if rec.label != label:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: label {label!r} of {sid!r} differs from "
                                       f"{rec.label!r} at {rec.where}")
            used[role][rec.source] = used[role].get(rec.source, 0) + 1
            samples[role].append(Sample(sid, index[label], {
                "image": Input("image", raw_dir / rec.img),
                "text": Input("text", text=rec.text),
            }))
    return Resolved(classes, samples, notes={"records_from": used})
