"""UPMC Food-101 (MLA's ``M3AEDataset``): ``images/{train,test}/<label>/<id>.jpg`` plus the MMBT-style jsonl
files (``mla.data.mmbt``); lists ``my_{train,test}_food.txt`` (``<id>.jpg <label>``), 101 classes sorted."""
from __future__ import annotations

from pathlib import Path

from mla.acquire.official_splits import SplitLists
from mla.data.mmbt import LAYOUT, resolve_records
from mla.data.samples import Resolved

SPLIT_LISTS = "food101"
SECTIONS = ("image", "text")
EXTRA: dict = {}
__all__ = ["LAYOUT", "resolve"]


def resolve(lists: SplitLists, raw_dir: Path, opts: dict) -> Resolved:
    """Samples per list with the image and text of their jsonl record."""
    return resolve_records(lists, raw_dir)
