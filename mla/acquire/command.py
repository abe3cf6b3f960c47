"""``mla acquire``: fetch official split lists, download a dataset, or verify a user-provided copy.

    mla acquire --dataset cremad --splits data/splits/cremad                       # lists only
    mla acquire --dataset cremad --splits data/splits/cremad --root data/raw/cremad --commit <sha>
    mla acquire --dataset iemocap --splits data/splits/iemocap --root /data/IEMOCAP_full_release \\
                --manifest data/raw/iemocap/manifest.json                        # verify in place
    mla acquire --dataset cremad --in-place --splits ... --root <git-lfs clone> --manifest ...
    mla acquire --dataset ks --lists data/splits/ks --root /data/kinetics400 \\
                --manifest data/raw/ks/manifest.json --allow-missing ks_unavailable.txt

``--dataset`` takes the catalog's names (cremad, ks, food101, mvsa, iemocap); sources.yaml says
how each is obtained.

``--base-url`` replaces the GitHub hosts (tests: a loopback server). Prints the files it wrote.
"""
from __future__ import annotations

import argparse
import logging

from mla.acquire.errors import AcquireError
from mla.acquire.sources import load_sources


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of the ``acquire`` subcommand."""
    sp.add_argument("--dataset", required=True, help="a dataset of mla/acquire/sources.yaml (cremad, iemocap, ...) or any name for a plain user copy")
    sp.add_argument("--splits", default=None, metavar="DIR", help="fetch (and verify) the official split lists into DIR; also where --root reads the ids")
    sp.add_argument("--lists", default=None, metavar="DIR",
                    help="read the sample ids from split lists already in DIR (as --splits writes them); fetches nothing")
    sp.add_argument("--root", default=None, metavar="DIR", help="download target (github_lfs datasets) or the user's copy to verify in place")
    sp.add_argument("--in-place", action="store_true", help="verify the copy at --root in place (never copied) instead of downloading")
    sp.add_argument("--manifest", default=None, metavar="FILE", help="manifest to write (default <root>/manifest.json for downloads; required for user copies)")
    sp.add_argument("--reference", default=None, metavar="FILE", help="a manifest the user copy must match file by file")
    sp.add_argument("--allow-missing", default=None, metavar="FILE",
                    help="user copy: ids (one per line, # comments) of samples known to be unavailable; their files "
                         "are not expected, and the manifest lists them (Kinetics-Sounds: config prepare.ks.allow_missing)")
    sp.add_argument("--commit", default=None, help="commit of the dataset's repository (required where sources.yaml pins none)")
    sp.add_argument("--base-url", default=None, help="replace every download host H with <URL>/H (testing, mirrors)")
    sp.add_argument("--sources", default=None, metavar="FILE", help="sources file (default: mla/acquire/sources.yaml)")
    sp.add_argument("--workers", type=int, default=8, help="parallel downloads / hashing threads")
    sp.add_argument("--retries", type=int, default=5, help="retries per file on transient errors")


def run(args: argparse.Namespace) -> None:
    """Carry out ``mla acquire`` (errors are ``AcquireError``/``ValueError``, reported by the CLI)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.splits and not args.root:
        raise AcquireError("acquire: nothing to do; give --splits DIR and/or --root DIR")
    if args.splits and args.lists:
        raise AcquireError("acquire: give --splits DIR (fetch the lists there) or --lists DIR (read them), not both")
    list_dir = args.splits or args.lists
    sources = load_sources(args.sources)
    spec = sources["datasets"].get(args.dataset, {})
    list_name = spec.get("split_lists") or (args.dataset if args.dataset in sources["split_lists"] else None)
    common = dict(sources=sources, base_url=args.base_url, retries=args.retries)

    if args.splits:
        from mla.acquire.official_splits import fetch_split_lists

        if list_name is None:
            raise AcquireError(f"acquire: no official split lists for {args.dataset!r}; known: {', '.join(sorted(sources['split_lists']))}")
        for path in fetch_split_lists(list_name, args.splits, **common).values():
            print(path)
    if not args.root:
        return
    if args.allow_missing and spec.get("kind") == "github_lfs" and not args.in_place:
        raise AcquireError(f"acquire: --allow-missing applies to copies verified in place; {args.dataset} is downloaded whole")
    if spec.get("kind") == "github_lfs" and not args.in_place:
        from mla.acquire.download import NetworkUnreachable
        from mla.acquire.lfs import acquire_github_lfs
        from mla.acquire.official_splits import read_split_lists

        if not list_dir:
            raise AcquireError(f"acquire: {args.dataset} downloads the clips of the official lists; "
                               "give --splits DIR or --lists DIR")
        ids = read_split_lists(list_name, list_dir, sources=sources).ids()
        try:
            print(acquire_github_lfs(args.dataset, args.root, ids, commit=args.commit, manifest=args.manifest,
                                     workers=args.workers, **common))
        except NetworkUnreachable as exc:
            raise NetworkUnreachable(
                f"{exc}; or place the files yourself: clone the dataset's repository with Git LFS, then run "
                f"mla acquire --dataset {args.dataset} --in-place --root <clone> --manifest <file> "
                f"--lists {list_dir}", url=exc.url, host=exc.host) from None
    else:
        from mla.acquire.usercopy import verify_dataset_copy

        if not args.manifest:
            raise AcquireError(f"acquire: {args.dataset} is verified in place; give --manifest FILE (outside {args.root})")
        print(verify_dataset_copy(args.dataset, args.root, args.manifest, split_dir=list_dir,
                                  reference=args.reference, sources=sources, workers=args.workers,
                                  allow_missing=args.allow_missing))
