"""CREMA-D: the clips of MLA's official lists, from the public CREMA-D repository (Git LFS).

The ids come from MLA's ``my_train_cre.txt`` and ``my_test_cre.txt`` (7,442 clips);
each id gives ``AudioWAV/<id>.wav`` and ``VideoFlash/<id>.flv``, downloaded from GitHub's LFS media
host at a pinned commit and verified against the LFS pointers of that commit (``mla.acquire.lfs``).
Neither the MLA paper nor its code pins a CREMA-D commit, so ``commit`` is required (config or ``--commit``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mla.acquire.lfs import acquire_github_lfs
from mla.acquire.official_splits import read_split_lists
from mla.acquire.sources import dataset_spec, load_sources


def acquire_cremad(root: str | Path, split_dir: str | Path, *, sources: dict[str, Any] | None = None,
                   **options: Any) -> Path:
    """Download and verify the WAV and FLV files of every clip in MLA's CREMA-D lists (read from
    ``split_dir``, see ``fetch_split_lists``) into ``root``; return the manifest path. ``options``
    are :func:`acquire_github_lfs`'s (commit, base_url, manifest, workers, retries, ...)."""
    sources = sources or load_sources()
    lists = read_split_lists(dataset_spec(sources, "cremad")["split_lists"], split_dir, sources=sources)
    return acquire_github_lfs("cremad", root, lists.ids(), sources=sources, **options)
