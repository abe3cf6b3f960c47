"""The one DVC stage (``all``) of ``dvc.yaml`` and ``paper/dvc.yaml`` checked against ``mla.grid``."""
from __future__ import annotations

from pathlib import Path

import yaml

from mla import grid, real_paths


def stage_all(dvc_yaml: Path) -> dict:
    """The file's only stage, ``all``."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert list(stages) == ["all"], f"{dvc_yaml}: one stage, all (see its header), not {list(stages)}"
    return stages["all"]


def outputs(stage: dict, name: str) -> dict[str, dict]:
    """Declared outs, metrics and plots -> their options, with ``${name}`` filled in."""
    out = {}
    for key in ("outs", "metrics", "plots"):
        for o in stage.get(key, []):
            path, opts = next(iter(o.items())) if isinstance(o, dict) else (o, {})
            out[path.replace("${name}", name)] = opts or {}
    return out


def assert_covers_the_grid(cfg: dict, stage: dict) -> None:
    """The stage declares exactly ``grid.dvc_outputs``, all persistent, none inside another, and
    every path the grid writes lies in exactly one of them."""
    declared = outputs(stage, cfg["name"])
    assert sorted(declared) == sorted(grid.dvc_outputs(cfg))
    assert all(opts.get("persist") for opts in declared.values()), declared

    def inside(path: str, out: str) -> bool:
        return path == out or path.startswith(out + "/")

    for o in declared:
        assert [p for p in declared if inside(o, p)] == [o], o
    for path in grid.all_output_paths(cfg) + real_paths.data_outputs(cfg):
        assert len([o for o in declared if inside(path, o)]) == 1, path
