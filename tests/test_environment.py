"""The environment files agree with the lock, and CI runs the README's test command."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_pyproject_pins_the_matched_torch_set():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in ("torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"):
        assert pin in deps
    locked = locked_versions()
    assert (locked["torch"], locked["torchvision"], locked["torchaudio"]) == ("2.11.0", "0.26.0", "2.11.0")


def test_environment_yml_pins_equal_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(p.split("==") for p in pip if "==" in p)
    locked = locked_versions()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in direct}
    assert set(pins) == names, "environment.yml must list every direct dependency"
    for name, version in pins.items():
        assert locked[name] == version, f"environment.yml pins {name}=={version}, uv.lock has {locked[name]}"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_uv_commands_and_ci_runs_the_second():
    first, second = readme_commands()
    for cmd in (first, second):
        assert "pip install uv" in cmd and "uv run" in cmd
    assert first.rstrip().endswith("snakemake --cores 8 all")
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second.strip() in ci.splitlines()
