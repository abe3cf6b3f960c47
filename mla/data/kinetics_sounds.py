"""Kinetics-Sounds: OGM-GE's 31-class lists over a user's Kinetics copy.

MLA's code cannot run Kinetics-Sounds: it ships no list or class file for it, and ``main.py`` L493-495
leaves its class count undefined; OGM-GE's lists are the nearest public ones.

Lists ``KineticSound_my_{train,test}.txt`` (``<clip id>,10,<class index>``; no class names, so the
class names are the indices "0" ... "30" and the index is the number itself). Each clip id names one
``<clip id>.mp4`` anywhere under the raw directory (the ``**/{id}.mp4`` layout of
``mla/acquire/sources.yaml``); its video stream gives the frames and its audio stream the fbank.

Clips missing from a Kinetics copy are common (videos removed from YouTube). They are never dropped
silently: every clip must be present unless its id is in the ``allow_missing`` listing (one id per
line, ``#`` comments), and the manifest records the excluded ids and their counts.
"""
from __future__ import annotations

from pathlib import Path

from mla import catalog
from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.acquire.usercopy import parse_id_listing
from mla.data.samples import Resolved, Sample, files_by_name, read_lines
from mla.data.splits import sha256_file
from mla.features.inputs import Input

SPLIT_LISTS = "kinetics_sounds"
SECTIONS = ("audio", "video")
EXTRA: dict = {"allow_missing": None}
LAYOUT = {"audio": "**/<id>.mp4 (audio stream)", "video": "**/<id>.mp4 (video stream)"}
HINT = ("Kinetics-Sounds clips are found by name anywhere under the raw directory (<clip id>.mp4). To exclude "
        "unavailable clips explicitly, list their ids (one per line) in a file and pass it as --allow-missing "
        "(config key prepare.ks.allow_missing); the manifest then records them.")


def read_listing(path: str | Path, known: set[str]) -> list[str]:
    """Clip ids of an ``allow_missing`` listing, in file order; unknown or repeated ids name their line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing allow_missing listing {path}")
    return parse_id_listing(path, read_lines(path), known, error=SplitFormatError, noun="clip",
                            unknown="is in neither Kinetics-Sounds list")


def resolve(lists: SplitLists, raw_dir: Path, opts: dict) -> Resolved:
    """Samples per list with their MP4 file; ids of the ``allow_missing`` listing are excluded."""
    n_classes = catalog.dataset_info("ks").n_classes
    classes = [str(i) for i in range(n_classes)]
    listing: list[str] = []
    if opts["allow_missing"] is not None:
        listing = read_listing(opts["allow_missing"], {sid for rows in lists.samples.values() for sid, _ in rows})
    excluded_set = set(listing)
    found = files_by_name(raw_dir, ".mp4")
    samples: dict[str, list[Sample]] = {}
    excluded: dict[str, list[str]] = {}
    present_but_listed = 0
    for role in ("train", "test"):
        samples[role], excluded[role] = [], []
        for sid, label in lists.samples[role]:
            hits = found.get(f"{sid}.mp4", [])
            if sid in excluded_set:
                excluded[role].append(sid)
                present_but_listed += bool(hits)
                continue
            if len(hits) > 1:
                raise SplitFormatError(f"{raw_dir}: clip {sid}.mp4 is ambiguous, found at {', '.join(hits[:5])}; keep one copy")
            path = raw_dir / hits[0] if hits else raw_dir / "**" / f"{sid}.mp4"
            samples[role].append(Sample(sid, int(label), {"audio": Input("track", path), "video": Input("frames", path)}))
    notes = {"class_names": "indices only: OGM-GE's lists carry no class names (KineticSound/my_{train,test}.txt)"}
    if opts["allow_missing"] is not None:
        notes["allow_missing"] = {"sha256": sha256_file(opts["allow_missing"]), "listed": len(listing),
                                  "present_but_listed": present_but_listed}
    return Resolved(classes, samples, excluded, notes)
