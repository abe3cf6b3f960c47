"""The acquisition sources (``sources.yaml`` beside this file): hosts, pinned repositories, split lists.

``base_url`` overrides the hosts everywhere it is accepted: a string ``URL`` maps each host key ``k``
to ``URL/k`` (so one loopback server can play ``raw`` and ``media``), a dict replaces hosts by key.
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml

from mla.acquire.errors import AcquireError

SOURCES_FILE = Path(__file__).with_name("sources.yaml")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def load_sources(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check a sources file (default: the packaged ``sources.yaml``)."""
    path = Path(path) if path is not None else SOURCES_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AcquireError(f"{path}: cannot read the sources file: {exc}") from None
    for key in ("hosts", "repositories", "split_lists", "datasets"):
        if not isinstance(data.get(key), dict):
            raise AcquireError(f"{path}: missing mapping {key!r}")
    for name, repo in data["repositories"].items():
        commit = repo.get("commit")
        if commit is not None and not _COMMIT.fullmatch(str(commit)):
            raise AcquireError(f"{path}: repositories.{name}.commit {commit!r} is not a 40-digit commit id")
    for name, spec in data["split_lists"].items():
        if spec.get("repository") not in data["repositories"]:
            raise AcquireError(f"{path}: split_lists.{name}.repository {spec.get('repository')!r} is not a known repository")
    return data


def resolve_hosts(sources: dict[str, Any], base_url: str | dict[str, str] | None = None) -> dict[str, str]:
    """The host prefixes after applying ``base_url`` (see the module docstring)."""
    hosts = dict(sources["hosts"])
    if isinstance(base_url, str) and base_url:
        hosts = {key: f"{base_url.rstrip('/')}/{key}" for key in hosts}
    elif isinstance(base_url, dict):
        unknown = set(base_url) - set(hosts)
        if unknown:
            raise AcquireError(f"base URL override for unknown host(s) {sorted(unknown)}; known: {sorted(hosts)}")
        hosts.update(base_url)
    return {k: v.rstrip("/") for k, v in hosts.items()}


def repository(sources: dict[str, Any], key: str, commit: str | None = None) -> dict[str, str]:
    """``{"slug", "commit"}`` of a repository; ``commit`` overrides the pinned one. No commit is an error."""
    if key not in sources["repositories"]:
        raise AcquireError(f"unknown repository {key!r}; known: {', '.join(sorted(sources['repositories']))}")
    repo = dict(sources["repositories"][key])
    commit = commit or repo.get("commit")
    if not commit:
        raise AcquireError(
            f"repository {repo['slug']}: no commit is pinned in sources.yaml; give one (40 hex digits) "
            "from the config or with `mla acquire --commit`, so every download names an immutable tree"
        )
    if not _COMMIT.fullmatch(str(commit)):
        raise AcquireError(f"repository {repo['slug']}: {commit!r} is not a 40-digit commit id")
    repo["commit"] = str(commit)
    return repo


def file_url(hosts: dict[str, str], repo: dict[str, str], path: str, host: str = "raw") -> str:
    """``{hosts[host]}/{slug}/{commit}/{path}``: GitHub's raw (or LFS media) URL at a pinned commit."""
    return f"{hosts[host]}/{repo['slug']}/{repo['commit']}/{path.lstrip('/')}"


def dataset_spec(sources: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The ``datasets`` entry of ``dataset`` (a copy)."""
    if dataset not in sources["datasets"]:
        raise AcquireError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(sources['datasets']))}")
    return copy.deepcopy(sources["datasets"][dataset])


def split_spec(sources: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``split_lists`` entry ``name`` (a copy)."""
    if name not in sources["split_lists"]:
        raise AcquireError(f"no official split lists for {name!r}; known: {', '.join(sorted(sources['split_lists']))}")
    return copy.deepcopy(sources["split_lists"][name])


LIMITS = ("archive_max_bytes", "download_max_bytes", "download_deadline_s")


@functools.lru_cache(maxsize=None)
def _limits(path: str) -> tuple[tuple[str, float], ...]:
    section = load_sources(path).get("limits")
    if not isinstance(section, dict):
        raise AcquireError(f"{path}: missing mapping 'limits' ({', '.join(LIMITS)})")
    out = []
    for key in LIMITS:
        value = section.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise AcquireError(f"{path}: limits.{key} must be a positive number, got {value!r}")
        out.append((key, value))
    return tuple(out)


def limit(key: str, path: str | Path | None = None) -> float:
    """The cap ``limits.<key>`` of the sources file (see ``LIMITS``); read once per file."""
    if key not in LIMITS:
        raise KeyError(f"unknown limit {key!r}; known: {', '.join(LIMITS)}")
    return dict(_limits(str(Path(path) if path is not None else SOURCES_FILE)))[key]


def limit_setting(key: str) -> str:
    """How a message names the setting that raises ``key``."""
    return f"limits.{key} in {SOURCES_FILE}"
