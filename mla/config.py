"""Load, override and validate an experiment config (no torch: the DAG imports this).

One JSON schema (``config_schema.yaml``) validates every config; unknown keys and wrong
types are errors that name the key. ``--set key.sub=value`` overrides are applied before
validation, so they are checked the same way.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from mla import catalog

SCHEMA_PATH = Path(__file__).with_name("config_schema.yaml")


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


@lru_cache(maxsize=1)
def schema() -> dict:
    """The config schema as a dict."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    where = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        keys = ", ".join(f"{where}.{k}" if err.absolute_path else k for k in extra)
        return f"unknown config key {keys}"
    if err.validator == "required":
        return f"config key {where}: {err.message}"
    return f"config key {where}: {err.message}"


def validate(cfg: dict) -> dict:
    """Check ``cfg`` against the schema and the catalog; return it unchanged."""
    errors = sorted(
        jsonschema.Draft202012Validator(schema()).iter_errors(cfg),
        key=lambda e: (len(e.absolute_path), _key(e.absolute_path)),
    )
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors[:5]))
    _check_names(cfg)
    return cfg


def _check_names(cfg: dict) -> None:
    try:
        for d in cfg["datasets"] + cfg["missing"]["datasets"] + cfg["ablation"]["datasets"] + cfg["analysis"]["datasets"]:
            catalog.dataset_info(d)
        for m in cfg["methods"] + cfg["missing"]["methods"] + cfg["analysis"]["methods"] + list(cfg["method_options"]):
            catalog.method_info(m)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for d in cfg["datasets"]:
        info = catalog.dataset_info(d)
        if info.family == "builtin" and d not in cfg["data"]:
            raise ConfigError(f"config key data.{d}: missing generator parameters for built-in dataset {d}")
        if info.family == "builtin":
            gen = set(cfg["data"][d]["modalities"])
            if gen != set(info.modalities):
                raise ConfigError(
                    f"config key data.{d}.modalities: expected {sorted(info.modalities)}, got {sorted(gen)}"
                )
        for m in info.modalities:
            if m not in cfg["model"]["encoders"]:
                raise ConfigError(f"config key model.encoders.{m}: no encoder for modality {m} of {d}")
            if m not in cfg["features"]:
                raise ConfigError(f"config key features.{m}: no feature parameters for modality {m} of {d}")
    for section in ("missing", "ablation", "analysis"):
        for d in cfg[section]["datasets"]:
            if d not in cfg["datasets"]:
                raise ConfigError(f"config key {section}.datasets: {d} is not in datasets {cfg['datasets']}")
    for m in cfg["analysis"]["methods"] if cfg["analysis"]["datasets"] else []:
        if m not in cfg["methods"]:
            raise ConfigError(f"config key analysis.methods: {m} is not in methods {cfg['methods']}")
    if cfg["analysis"]["datasets"] and cfg["analysis"]["seed"] not in cfg["seeds"]:
        raise ConfigError(f"config key analysis.seed: {cfg['analysis']['seed']} is not in seeds {cfg['seeds']}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``cfg`` with ``key.path=value`` overrides applied.

    Only existing sections can be descended into; the schema then rejects unknown leaves.
    """
    out = copy.deepcopy(cfg)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown config key {'.'.join(path[: i + 1])} (in override {text!r})")
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"config key {'.'.join(path[:-1])} is not a section (in override {text!r})")
        node[path[-1]] = value
    return out


def load(path: str | Path, overrides: Iterable[str] = ()) -> dict:
    """Load a YAML config, apply overrides and validate it."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return validate(apply_overrides(cfg, overrides))


def dump(cfg: dict) -> str:
    """The config as YAML with sorted keys, for ``config.resolved.yaml`` files."""
    return yaml.safe_dump(cfg, sort_keys=True, default_flow_style=False)
