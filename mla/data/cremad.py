"""CREMA-D: the repository's ``AudioWAV/<id>.wav`` and ``VideoFlash/<id>.flv`` (MLA's ``AVDataset``).

Lists ``my_{train,test}_cre.txt`` (``<id>.flv <Label>``), classes ``stat_cre.txt`` sorted. The emotion
code in the clip name (third ``_`` field) must agree with the list's label (the rule of
``data/gen_cre_txt.py``: ANG Anger, DIS Disgust, FEA Fear, HAP Happy, NEU Neutral, SAD Sad).
"""
from __future__ import annotations

from pathlib import Path

from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.data.samples import Resolved, Sample, line_ref, sorted_classes
from mla.features.inputs import Input

SPLIT_LISTS = "cremad"
SECTIONS = ("audio", "video")
EXTRA: dict = {}
LAYOUT = {"audio": "AudioWAV/<id>.wav", "video": "VideoFlash/<id>.flv"}
EMOTIONS = {"ANG": "Anger", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}


def resolve(lists: SplitLists, raw_dir: Path, opts: dict) -> Resolved:
    """Samples per list with their WAV and FLV files; a label that contradicts the clip name is an error."""
    classes, index = sorted_classes(lists)
    samples: dict[str, list[Sample]] = {}
    for role in ("train", "test"):
        rows = []
        for i, (sid, label) in enumerate(lists.samples[role]):
            fields = sid.split("_")
            code = fields[2] if len(fields) == 4 else None
            if EMOTIONS.get(code) != label:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: clip {sid!r} is labelled {label!r}, but its "
                                       f"name's emotion code {code!r} means {EMOTIONS.get(code)!r}")
            rows.append(Sample(sid, index[label], {
                "audio": Input("wav", raw_dir / "AudioWAV" / f"{sid}.wav"),
                "video": Input("frames", raw_dir / "VideoFlash" / f"{sid}.flv"),
            }))
        samples[role] = rows
    return Resolved(classes, samples)
