"""User-provided copies (IEMOCAP, a Kinetics-400 copy, any dataset the config points to): verified in
place, never copied, and described by a manifest (``mla.acquire.manifest``) that DVC tracks instead of
the data.

The expected files come from a ``layout``: templates filled per sample id (``{id}``; for IEMOCAP ids
also ``{session}`` and ``{dialog}``). A template starting with ``**/`` matches a file of that name
anywhere under the root (for copies whose directory structure varies, such as Kinetics). Without a
layout, every file under the root is listed. With a ``reference`` manifest (for example the one a
colleague committed), every file it lists must be present with the same size and sha256. Any missing
or differing file raises ``LayoutError`` naming the root, the files and where to obtain the data.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from mla.acquire.errors import AcquireError, LayoutError
from mla.acquire.manifest import hash_files, load_manifest, write_manifest
from mla.acquire.official_splits import read_split_lists
from mla.acquire.sources import dataset_spec, load_sources

_SHOW = 10  # files named in an error message


class _Fields(dict):
    """Template fields of one sample id, derived on demand."""

    def __missing__(self, key: str) -> str:
        sid = self["id"]
        if key == "dialog":  # IEMOCAP: Ses01F_impro01_F000 -> Ses01F_impro01
            return sid.rsplit("_", 1)[0]
        if key == "session":  # IEMOCAP: Ses03M_... -> 3
            m = re.match(r"Ses(\d+)", sid)
            if m:
                return str(int(m.group(1)))
        raise KeyError(key)


def expected_paths(ids: Iterable[str], layout: list[str]) -> list[str]:
    """The layout's templates filled for every id, in order, without duplicates."""
    out: dict[str, None] = {}
    for sid in ids:
        if "/" in sid or "\\" in sid or sid in ("", ".", ".."):
            raise AcquireError(f"sample id {sid!r} is not a plain file name")
        fields = _Fields(id=sid)
        for template in layout:
            try:
                out[template.format_map(fields)] = None
            except KeyError as exc:
                raise AcquireError(f"layout template {template!r}: no field {exc} for sample id {sid!r}") from None
    return list(out)


def verify_user_copy(
    dataset: str,
    root: str | Path,
    manifest: str | Path,
    *,
    ids: Iterable[str] | None = None,
    layout: list[str] | None = None,
    reference: str | Path | None = None,
    obtain: str = "",
    workers: int = 4,
    excluded: list[str] | None = None,
) -> Path:
    """Check the copy at ``root`` against ``layout`` x ``ids`` (and ``reference``); write ``manifest``.

    Nothing under ``root`` is written, moved or copied; ``manifest`` must lie outside ``root``.
    ``excluded``: sample ids left out of ``ids`` as unavailable (an allow-missing listing), recorded
    in the manifest.
    """
    root = Path(root)
    manifest = Path(manifest)
    where = f"Where to obtain it: {obtain}" if obtain else ""
    if not root.is_dir():
        raise LayoutError(f"{dataset}: the copy at {root} does not exist or is not a directory. {where}".strip())
    if _inside(manifest, root):
        raise AcquireError(f"{dataset}: the manifest {manifest} must be written outside the user's copy {root}")

    ref = load_manifest(reference) if reference is not None else None
    if ref is not None:
        for rel in ref["files"]:
            confined(root, rel, reference)
    if layout:
        if ids is None:
            raise AcquireError(f"{dataset}: a layout needs the sample ids (from the split lists)")
        wanted = expected_paths(ids, layout)
    elif ref is None:
        wanted = sorted(walk_files(root))
    else:
        wanted = []
    if ref is not None:
        have = set(wanted)
        wanted += [p for p in ref["files"] if p not in have]

    found, missing = _locate(root, wanted)
    if missing:
        listed = "\n  ".join(missing[:_SHOW]) + ("\n  ..." if len(missing) > _SHOW else "")
        what = f"Expected layout under the root, per sample id: {', '.join(layout)}. " if layout else ""
        raise LayoutError(
            f"{dataset}: the copy at {root} lacks {len(missing)} of {len(wanted)} expected files, e.g.\n  {listed}\n"
            f"{what}{where}".rstrip()
        )

    files = hash_files(root, found.values(), workers)
    if ref is not None:
        by_rel = {f["path"]: f for f in files}
        diffs = []
        for rel in found.values():
            exp = ref["files"].get(rel)
            if exp is not None and (exp["size"] != by_rel[rel]["size"] or exp["sha256"] != by_rel[rel]["sha256"]):
                diffs.append(f"{root / rel}: expected {exp['size']} bytes, sha256 {exp['sha256']}; "
                             f"found {by_rel[rel]['size']} bytes, sha256 {by_rel[rel]['sha256']}")
        if diffs:
            listed = "\n  ".join(diffs[:_SHOW]) + ("\n  ..." if len(diffs) > _SHOW else "")
            raise LayoutError(
                f"{dataset}: {len(diffs)} files of the copy at {root} differ from the reference manifest {reference}:\n"
                f"  {listed}\nReplace them with the original files. {where}".rstrip()
            )
    source = {"kind": "user_copy", "layout": list(layout or [])}
    if excluded:
        source["excluded"] = list(excluded)
    return write_manifest(manifest, dataset=dataset, files=files, source=source)


def read_id_listing(path: str | Path, known: Iterable[str]) -> list[str]:
    """Sample ids of an allow-missing listing (one per line, ``#`` comments), in file order; an id
    that is in no split list, or listed twice, is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise AcquireError(f"missing allow-missing listing {path}")
    return parse_id_listing(path, path.read_text(encoding="utf-8").splitlines(), set(known))


def parse_id_listing(path: Path, lines: Iterable[str], known: set[str], *, error: type[Exception] = AcquireError,
                     noun: str = "id", unknown: str = "is in none of the split lists") -> list[str]:
    """The ids of a listing's ``lines`` in order (``#`` starts a comment); a repeated id or one not in
    ``known`` raises ``error`` naming ``path`` and the line."""
    ids: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        sid = line.split("#", 1)[0].strip()
        if not sid:
            continue
        if sid in ids:
            raise error(f"{path}:{lineno}: {noun} {sid!r} listed twice (first on line {ids[sid]})")
        if sid not in known:
            raise error(f"{path}:{lineno}: {noun} {sid!r} {unknown}")
        ids[sid] = lineno
    return list(ids)


def verify_dataset_copy(
    dataset: str,
    root: str | Path,
    manifest: str | Path,
    *,
    split_dir: str | Path | None = None,
    reference: str | Path | None = None,
    sources: dict[str, Any] | None = None,
    workers: int = 4,
    allow_missing: str | Path | None = None,
) -> Path:
    """``verify_user_copy`` with the layout, ids (from the official lists in ``split_dir``) and
    instructions of a ``user_copy`` dataset in ``sources.yaml`` (a ``github_lfs`` dataset: a git-lfs
    clone, laid out by its ``media`` templates); any other name is verified as a plain directory
    (every file listed, or those of ``reference``). ``allow_missing``: a listing of sample ids that
    are known to be unavailable (``read_id_listing``); their files are not expected."""
    sources = sources or load_sources()
    if dataset not in sources["datasets"]:
        return verify_user_copy(dataset, root, manifest, reference=reference, workers=workers)
    spec = dataset_spec(sources, dataset)
    if spec.get("kind") == "github_lfs":  # a git-lfs clone of the repository, e.g. when LFS bandwidth runs out
        slug = sources["repositories"][spec["repository"]]["slug"]
        spec["layout"] = spec["media"]
        spec.setdefault("obtain", f"clone https://github.com/{slug} with git-lfs installed (git lfs install; "
                                  f"git clone https://github.com/{slug}.git) and pass the clone as the root.")
    elif spec.get("kind") != "user_copy":
        raise AcquireError(f"dataset {dataset!r} of kind {spec.get('kind')!r} cannot be verified in place")
    ids, excluded = None, []
    if spec.get("layout"):
        if split_dir is None:
            raise AcquireError(f"{dataset}: the expected layout is per sample id; give the split-list directory")
        ids = read_split_lists(spec["split_lists"], split_dir, sources=sources).ids()
        if allow_missing is not None:
            excluded = read_id_listing(allow_missing, ids)
            drop = set(excluded)
            ids = [sid for sid in ids if sid not in drop]
    elif allow_missing is not None:
        raise AcquireError(f"{dataset}: --allow-missing needs a per-sample layout (sources.yaml) and the split lists")
    return verify_user_copy(dataset, root, manifest, ids=ids, layout=spec.get("layout"), reference=reference,
                            obtain=" ".join(str(spec.get("obtain", "")).split()), workers=workers,
                            excluded=excluded)


def walk_files(root: Path) -> Iterable[str]:
    """Relative paths of the files under ``root``, following directory links (a copy spread over
    disks) but entering each real directory once, so a link cycle cannot loop."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath, name).relative_to(root).as_posix()


def _locate(root: Path, wanted: list[str]) -> tuple[dict[str, str], list[str]]:
    """``({expected path: relative path found}, [missing expected paths])``; ``**/name`` searches by name."""
    by_name: dict[str, list[str]] | None = None
    found: dict[str, str] = {}
    missing: list[str] = []
    for rel in wanted:
        if rel.startswith("**/"):
            if by_name is None:
                by_name = {}
                for path in walk_files(root):
                    by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)
            hits = by_name.get(rel[3:], [])
            if len(hits) > 1:
                raise LayoutError(f"{root}: {rel[3:]} is ambiguous, found at {', '.join(hits[:5])}; keep one copy")
            if hits:
                found[rel] = hits[0]
            else:
                missing.append(rel)
        elif (root / rel).is_file():
            found[rel] = rel
        else:
            missing.append(rel)
    return found, missing


def confined(root: Path, rel: str, reference: str | Path) -> Path:
    """``root / rel`` if it resolves inside ``root`` (links followed); otherwise an error naming the entry.

    A reference manifest comes from someone else: none of its entries may make us read a file
    outside the copy it describes, through ``..`` (refused when it is loaded) or a symbolic link.
    """
    path = root / rel
    real_root = root.resolve()
    resolved = path.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise LayoutError(
            f"{reference}: entry {rel!r} resolves to {resolved}, outside the copy at {root} (a symbolic link "
            f"under the root leads out of it); a reference manifest is only checked against files inside "
            f"the copy: replace the link by the files, or verify without the reference")
    return path


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False
