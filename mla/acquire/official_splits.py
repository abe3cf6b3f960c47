"""Download the official split lists at their pinned commits, verify them (sha256 in sources.yaml),
and read them back as ``(sample id, label)`` lists with their class names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mla.acquire.download import download
from mla.acquire.errors import SplitFormatError
from mla.acquire.sources import file_url, load_sources, repository, resolve_hosts, split_spec
from mla.acquire.splitlists import check_disjoint, check_labels, read_split


@dataclass(frozen=True)
class SplitLists:
    """One dataset's official lists: samples per role (train, test) and class names (may be empty)."""

    name: str
    samples: dict[str, list[tuple[str, str]]]
    classes: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    def ids(self) -> list[str]:
        """Every sample id of every role, train first, in file order."""
        return [sid for role in sorted(self.samples, key=lambda r: (r != "train", r)) for sid, _ in self.samples[role]]


def fetch_split_lists(
    name: str,
    out_dir: str | Path,
    *,
    sources: dict[str, Any] | None = None,
    base_url: str | dict[str, str] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Download ``name``'s lists (e.g. ``cremad``) into ``out_dir``; return ``{role: path}``.

    Each file comes from the raw URL at the pinned commit and must match its sha256; files already
    present and verified are kept. The lists are then parsed and checked (record counts, labels within
    the class file, train/test disjoint), so a parser problem shows up here rather than later.
    """
    sources = sources or load_sources()
    spec = split_spec(sources, name)
    hosts = resolve_hosts(sources, base_url)
    repo = repository(sources, spec["repository"])
    out_dir = Path(out_dir)
    paths = {}
    for role, entry in spec["files"].items():
        url = file_url(hosts, repo, entry["path"])
        paths[role] = download(url, out_dir / entry["name"], sha256=entry["sha256"],
                               retries=retries, backoff=backoff, timeout=timeout).path
    read_split_lists(name, out_dir, sources=sources)
    return paths


def read_split_lists(name: str, split_dir: str | Path, *, sources: dict[str, Any] | None = None) -> SplitLists:
    """Parse ``name``'s lists from ``split_dir`` (as written by ``fetch_split_lists``) and check them."""
    sources = sources or load_sources()
    spec = split_spec(sources, name)
    split_dir = Path(split_dir)
    samples: dict[str, list[tuple[str, str]]] = {}
    classes: list[str] = []
    paths: dict[str, Path] = {}
    for role, entry in spec["files"].items():
        path = split_dir / entry["name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split list missing; run `python -m mla acquire --dataset ... --splits {split_dir}`")
        fmt = entry.get("format", spec["format"])
        parsed = read_split(path, fmt) if fmt == "class_list" else read_split(path, fmt, **spec.get("options", {}))
        expected = entry.get("records")
        if expected is not None and len(parsed) != expected:
            raise SplitFormatError(
                f"{path}: {len(parsed)} records, expected {expected}; these are not the official lists: fetch them "
                f"with `mla acquire --dataset <d> --splits DIR`, or, for other lists (a subset, or an `mla fixture` "
                f"copy), give acquire a sources file that pins them (--sources FILE; `mla fixture` writes one) and "
                f"set config key prepare.<d>.verify_lists: false for prepare")
        paths[role] = path
        if role == "classes":
            classes = parsed
        else:
            samples[role] = parsed
    if classes:
        allowed = classes
    elif "n_classes" in spec:  # lists that carry class indices only (OGM-GE's Kinetics-Sounds)
        allowed = [str(i) for i in range(spec["n_classes"])]
    else:
        allowed = None
    for role, rows in samples.items():
        if allowed is not None:
            check_labels(rows, allowed, paths[role])
    if "train" in samples and "test" in samples:
        check_disjoint(samples["train"], samples["test"], paths["test"])
    return SplitLists(name, samples, classes, paths)
