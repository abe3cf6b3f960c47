"""Load, override and validate an experiment config (no torch: the DAG imports this).

One JSON schema (``config_schema.yaml``) validates every config; unknown keys and wrong
types are errors that name the key. A run's config is composed by :func:`compose`: the default
config, ``--configfile`` files (complete configs replace, overlays merge), ``snakemake --config``
settings and ``--set key.sub=value`` overrides, all through one deep merge (:func:`merge`) and
validated once, so every route is checked the same way. :func:`model_for` gives the model section one
dataset trains with (``model.datasets.<name>`` merged over ``model``); :func:`method_options_for`
gives a method's options on one dataset (``method_options.<method>.datasets.<name>`` merged over
``method_options.<method>``).

Hostile input fails fast with a :class:`ConfigError` naming the file or key: YAML aliases whose
expansion would exceed :data:`MAX_NODES` (a "billion laughs" file) or that refer to themselves,
files over :data:`MAX_BYTES`, NaN or infinite numbers anywhere, and floats where the schema wants
an integer (``3.0``, ``1.0e+30``); names that become directories match ``$defs/name``.
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from mla import catalog
from mla.errors import UserError
from mla.safepaths import NAME_PATTERN, NAME_RULE

SCHEMA_PATH = Path(__file__).with_name("config_schema.yaml")
WEIGHTS_DIR = "data/weights"  # converted encoder weights (``weights.<name>`` -> <name>.pt)
# model.inputs defaults: how stored pixels and fbanks become encoder inputs (mla/batches.py PIXEL_NORMS, FBANK_NORMS)
INPUTS = {"pixels": "centred", "fbank": "standardised"}
INIT = "pytorch"  # model.init default: PyTorch's own initialisation (mla/models/init.py)


# A config is a few hundred values; these bounds stop hostile files long before memory or time run out.
MAX_BYTES = 1 << 20  # a config file's size
MAX_NODES = 100_000  # values (mappings, lists, scalars) once every YAML alias is expanded


class ConfigError(UserError, ValueError):
    """An invalid config; the message names the offending file or key."""


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema's ``integer`` accepts 3.0 and 1.0e+30 (floats with no fraction); ours wants an int."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


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
    if err.validator == "pattern" and err.validator_value == NAME_PATTERN:
        return (f"config key {where}: {err.instance!r} is not a safe name ({NAME_RULE}): it becomes a "
                f"directory name; rename it")
    if err.validator == "type" and "integer" in err.validator_value and isinstance(err.instance, float):
        return (f"config key {where}: {err.instance!r} is not an integer "
                "(write a whole number without a point or exponent)")
    return f"config key {where}: {err.message}"


def validate(cfg: dict) -> dict:
    """Check ``cfg`` against the schema and the catalog; return it unchanged."""
    _check_values(cfg)
    errors = sorted(
        _Validator(schema()).iter_errors(cfg),
        key=lambda e: (len(e.absolute_path), _key(e.absolute_path)),
    )
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors[:5]))
    _check_names(cfg)
    return cfg


def _check_values(node: Any, path: tuple = ()) -> None:
    """Refuse NaN and infinities (they pass every ``minimum``/``maximum``) and mapping keys that are not
    strings (YAML allows ``1:``; a key becomes a name or a path), naming the key."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {_key(path)}: {node!r} is not a finite number")
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key {_key(path + (k,))}: keys must be strings, got {type(k).__name__} {k!r}")
            _check_values(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_values(v, path + (i,))


def _check_rates(cfg: dict) -> None:
    """Missing rates appear in paths as whole percent (``eta30``); two rates with one tag would write
    the same directories."""
    from mla.grid import rate_tag  # not at the top: mla.grid imports mla.real_paths, which imports this module

    seen: dict[str, float] = {}
    for r in cfg["missing"]["rates"]:
        tag = rate_tag(r)
        if tag in seen or tag in ("eta00", "eta100"):
            raise ConfigError(f"config key missing.rates: {r} is written as {tag} in paths"
                              + (f", like {seen[tag]}" if tag in seen else "")
                              + "; give rates between 0.01 and 0.99 that differ by at least 0.01")
        seen[tag] = r


def _check_names(cfg: dict) -> None:
    try:
        for d in cfg["datasets"] + cfg["missing"]["datasets"] + cfg["ablation"]["datasets"] + cfg["analysis"]["datasets"]:
            catalog.dataset_info(d)
        for m in cfg["methods"] + cfg["missing"]["methods"] + cfg["analysis"]["methods"] + list(cfg["method_options"]):
            catalog.method_info(m)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_method_options(cfg)
    _check_model(cfg)
    _check_rates(cfg)
    for d in cfg["datasets"]:
        info = catalog.dataset_info(d)
        if info.family == "builtin":
            _check_builtin(cfg, d)
        for m in info.modalities:
            if m not in model_for(cfg, d)["encoders"]:
                raise ConfigError(f"config key model.encoders.{m}: no encoder for modality {m} of {d} "
                                  f"(nor model.datasets.{d}.encoders.{m})")
    _check_real(cfg)
    _check_released(cfg)
    for section in ("missing", "ablation", "analysis"):
        for d in cfg[section]["datasets"]:
            if d not in cfg["datasets"]:
                raise ConfigError(f"config key {section}.datasets: {d} is not in datasets {cfg['datasets']}")
    for m in cfg["analysis"]["methods"] if cfg["analysis"]["datasets"] else []:
        if m not in cfg["methods"]:
            raise ConfigError(f"config key analysis.methods: {m} is not in methods {cfg['methods']}")
    if cfg["analysis"]["datasets"] and cfg["analysis"]["seed"] not in cfg["seeds"]:
        raise ConfigError(f"config key analysis.seed: {cfg['analysis']['seed']} is not in seeds {cfg['seeds']}")


def training_for(cfg: dict, method: str) -> dict:
    """The ``training`` section a ``method`` trains with: ``missing.frozen_training`` merged over it for a
    method that trains on frozen unimodal features (Table 2's baselines, whose sources use their own
    optimiser and epochs), ``training`` itself for every other method. Returns a new dict."""
    tr = copy.deepcopy(cfg["training"])
    if catalog.method_info(method).frozen_features:
        tr.update(copy.deepcopy(cfg["missing"].get("frozen_training") or {}))
    return tr


def _check_method_options(cfg: dict) -> None:
    """Method options (``method_options.<m>``, each ``method_options.<m>.datasets.<d>`` merged over them,
    ``ablation.variants.<v>`` for mla) against each method's ``CATALOG`` (names, types, choices), so a
    typo fails when the config loads; per-dataset tables name catalog datasets."""
    checks = []
    for m, opts in cfg["method_options"].items():
        base = {k: v for k, v in (opts or {}).items() if k != "datasets"}
        checks.append((m, base, f"method_options.{m}"))
        for d, over in ((opts or {}).get("datasets") or {}).items():
            if d not in catalog.DATASETS:
                raise ConfigError(f"config key method_options.{m}.datasets.{d}: unknown dataset; valid names: "
                                  f"{', '.join(sorted(catalog.DATASETS))}")
            checks.append((m, {**base, **(over or {})}, f"method_options.{m}.datasets.{d}"))
    checks += [("mla", opts, f"ablation.variants.{v}") for v, opts in cfg["ablation"]["variants"].items()]
    for method, opts, where in checks:
        try:
            catalog.check_options(method, opts or {}, where)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _check_builtin(cfg: dict, d: str) -> None:
    """A built-in dataset needs its generator parameters (``data.<d>``) and the feature
    parameters of its modalities (``features``); real datasets use neither."""
    info = catalog.dataset_info(d)
    if d not in cfg["data"]:
        raise ConfigError(f"config key data.{d}: missing generator parameters for built-in dataset {d}")
    gen = set(cfg["data"][d]["modalities"])
    if gen != set(info.modalities):
        raise ConfigError(f"config key data.{d}.modalities: expected {sorted(info.modalities)}, got {sorted(gen)}")
    if "shard_size" not in cfg["features"]:
        raise ConfigError(f"config key features.shard_size: required for built-in dataset {d}")
    for m in info.modalities:
        if m not in cfg["features"]:
            raise ConfigError(f"config key features.{m}: no feature parameters for modality {m} of {d}")


def model_for(cfg: dict, dataset: str) -> dict:
    """The model section that ``dataset`` trains with: ``model.datasets.<dataset>`` over ``model``.

    ``feature_dim`` is replaced; ``encoders`` are merged per modality, an override replacing its
    modality's whole encoder spec (the options of two encoders have nothing in common). Returns
    a new ``{"feature_dim": int, "encoders": {modality: spec}, "inputs": {...}, "init": str}``; ``inputs``
    (pixel and fbank normalisation, mla/batches.py) are merged per key over :data:`INPUTS`; ``init``
    (mla/models/init.py) is the dataset's, else the section's, else :data:`INIT`.
    """
    model = cfg["model"]
    over = (model.get("datasets") or {}).get(dataset) or {}
    encoders = copy.deepcopy(model["encoders"])
    encoders.update(copy.deepcopy(over.get("encoders") or {}))
    inputs = {**INPUTS, **(model.get("inputs") or {}), **(over.get("inputs") or {})}
    init = over.get("init", model.get("init", INIT))
    return {"feature_dim": over.get("feature_dim", model["feature_dim"]), "encoders": encoders, "inputs": inputs,
            "init": init}


def method_options_for(cfg: dict, method: str, dataset: str) -> dict:
    """The options ``method`` trains with on ``dataset``: ``method_options.<method>.datasets.<dataset>``
    merged key by key over ``method_options.<method>`` (without its ``datasets`` table). Returns a
    new dict; a method without options gives ``{}``."""
    opts = copy.deepcopy(cfg["method_options"].get(method) or {})
    per_dataset = opts.pop("datasets", None) or {}
    opts.update(copy.deepcopy(per_dataset.get(dataset) or {}))
    return opts


def weights_path(name: str) -> str:
    """Where ``convert-weights`` writes the declared weights ``weights.<name>``."""
    return f"{WEIGHTS_DIR}/{name}.pt"


def _check_model(cfg: dict) -> None:
    """Per-dataset overrides name catalog datasets; an encoder's ``weights`` under data/weights/
    must be a declared conversion (``weights.<name>``), so a rule can make it."""
    for d in cfg["model"].get("datasets") or {}:
        if d not in catalog.DATASETS:
            raise ConfigError(f"config key model.datasets.{d}: unknown dataset; valid names: "
                              f"{', '.join(sorted(catalog.DATASETS))}")
    specs = [("model.encoders", cfg["model"]["encoders"])] + [
        (f"model.datasets.{d}.encoders", (o or {}).get("encoders") or {})
        for d, o in (cfg["model"].get("datasets") or {}).items()]
    declared = cfg.get("weights") or {}
    for where, encoders in specs:
        for m, spec in encoders.items():
            path = spec.get("weights")
            if path is None or not str(path).startswith(WEIGHTS_DIR + "/"):
                continue  # from scratch, or a file the user converted and placed elsewhere
            name = str(path)[len(WEIGHTS_DIR) + 1:].removesuffix(".pt")
            if weights_path(name) != path or name not in declared:
                raise ConfigError(
                    f"config key {where}.{m}.weights: {path} lies in {WEIGHTS_DIR}/, so it must be "
                    f"{WEIGHTS_DIR}/<name>.pt of a declared conversion weights.<name> "
                    f"(declared: {', '.join(sorted(declared)) or 'none'})")


def _check_real(cfg: dict) -> None:
    """Real datasets: where their raw data are (``raw.<d>``) and their preprocessing options
    (``prepare.<d>``, checked by mla/data/options.py). Sections may hold datasets the grid does
    not use (e.g. after ``--set datasets=[cremad]``), but only real ones."""
    raw, prep = cfg.get("raw") or {}, cfg.get("prepare") or {}
    for section, names in (("raw", raw), ("prepare", prep)):
        for d in names:
            if d not in catalog.DATASETS or catalog.dataset_info(d).family == "builtin":
                real = sorted(n for n, i in catalog.DATASETS.items() if i.family != "builtin")
                raise ConfigError(f"config key {section}.{d}: not a real dataset; valid names: {', '.join(real)}")
    for d in cfg["datasets"]:
        if catalog.dataset_info(d).family != "builtin" and d not in raw:
            raise ConfigError(f"config key raw.{d}: where the raw data of {d} are is not configured "
                              "(download: true, or path: <your copy>)")
    if raw:
        from mla.acquire.sources import load_sources

        sources = load_sources()
        for d, entry in raw.items():
            _check_raw_entry(d, entry, sources)
    if prep:
        from mla.data.options import resolve_options
        from mla.data.prepare import dataset_module

        for d, opts in prep.items():
            module = dataset_module(d)
            try:
                resolve_options(d, opts, module.SECTIONS, module.EXTRA)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None


def _check_released(cfg: dict) -> None:
    """``released_checkpoints.<d>`` (optional, default none): ``d`` must be a dataset of the grid, whose
    feature store and model the scoring uses (mla/score_released.py)."""
    for d, entry in (cfg.get("released_checkpoints") or {}).items():
        if d not in cfg["datasets"]:
            raise ConfigError(f"config key released_checkpoints.{d}: {d} is not in datasets {cfg['datasets']} "
                              f"(the scoring needs its feature store and model)")
        classes = entry.get("classes")
        n = catalog.dataset_info(d).n_classes
        if classes is not None and len(classes) != n:
            raise ConfigError(f"config key released_checkpoints.{d}.classes: {len(classes)} names, {d} has {n} classes")


def _check_raw_entry(d: str, entry: dict, sources: dict) -> None:
    spec = sources["datasets"].get(d, {})
    if entry.get("download"):
        if "path" in entry:
            raise ConfigError(f"config key raw.{d}: give either download: true or path, not both")
        if spec.get("kind") != "github_lfs":
            raise ConfigError(f"config key raw.{d}.download: {d} cannot be downloaded (mla/acquire/sources.yaml: "
                              f"kind {spec.get('kind')!r}); give path: <your copy>")
        pinned = sources["repositories"][spec["repository"]].get("commit")
        if not entry.get("commit") and not pinned:
            raise ConfigError(f"config key raw.{d}.commit: sources.yaml pins no commit of "
                              f"{sources['repositories'][spec['repository']]['slug']}; give one (40 hex digits)")
        for key in ("reference",):
            if key in entry:
                raise ConfigError(f"config key raw.{d}.{key}: only for a copy verified in place (path)")
    elif "path" in entry:
        if "commit" in entry:
            raise ConfigError(f"config key raw.{d}.commit: only with download: true")
    else:
        raise ConfigError(f"config key raw.{d}: give download: true or path: <your copy>")


DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` deep-merged over ``base`` (a new dict): mappings merge key by key, anything
    else (lists included) is replaced. The one merge of configs: ``--configfile`` overlays,
    ``snakemake --config`` and ``mla ... --set`` all go through it."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), parse_yaml(value, f"override {text!r}")


def override_mapping(cfg: dict, text: str) -> dict:
    """The overlay ``{"a": {"b": 3}}`` of ``"a.b=3"``. Missing sections are created (the schema
    then rejects unknown keys, naming them); descending into a value that is no section is an error."""
    path, value = parse_override(text)
    node: Any = cfg
    for i, part in enumerate(path[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            raise ConfigError(f"config key {'.'.join(path[: i + 1])} is not a section (in override {text!r})")
    overlay: Any = value
    for part in reversed(path):
        overlay = {part: overlay}
    return overlay


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``cfg`` with ``key.path=value`` overrides merged in (:func:`merge`)."""
    out = copy.deepcopy(cfg)
    for text in overrides:
        out = merge(out, override_mapping(out, text))
    return out


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, bounded (:func:`parse_yaml`); a missing, unreadable, oversized or
    malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config file {path}: larger than {MAX_BYTES} bytes; a config is a few kilobytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_yaml(text, f"config file {path}")


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing aliases whose expansion exceeds :data:`MAX_NODES` values or
    that contain themselves: PyYAML builds an alias as one shared object, cheaply, but everything
    after it (copying, validating, dumping) walks the expanded tree, 10^9 values for a 9-level
    "billion laughs". ``source`` names the text in errors."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply for a config") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the values of the composed YAML with every alias expanded (each distinct node once,
    without recursion), and refuse the text beyond :data:`MAX_NODES` or on an alias cycle."""
    def children(node: yaml.Node) -> list:
        if isinstance(node, yaml.SequenceNode):
            return node.value
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children(node))
            if sizes[key] > MAX_NODES:
                raise ConfigError(f"{source}: more than {MAX_NODES} values once its YAML aliases (*name) are "
                                  f"expanded (line {node.start_mark.line + 1}); a config needs a few hundred: "
                                  "remove the nested aliases")
        elif key not in sizes:
            if key in open_:
                raise ConfigError(f"{source}: a YAML alias contains itself (line {node.start_mark.line + 1}); "
                                  "remove the recursive alias")
            open_.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children(node) if id(c) not in sizes)


def retype(value: Any) -> Any:
    """A value from ``snakemake --config`` with its YAML types: Snakemake parses nested values
    with YAML's BaseLoader, which keeps every scalar a string (``seeds=[0]`` gives ``['0']``)."""
    if isinstance(value, dict):
        return {k: retype(v) for k, v in value.items()}
    if isinstance(value, list):
        return [retype(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:  # not a YAML scalar: keep the text (the schema judges it)
            return value
        return parsed if isinstance(parsed, (bool, int, float, type(None))) else value
    return value


def is_complete(cfg: dict) -> bool:
    """Whether ``cfg`` sets every required top-level key: a complete config stands alone, any
    other mapping is an overlay merged over the default config (or the files before it)."""
    return set(schema()["required"]) <= set(cfg)


def read_file(path: str | Path) -> dict:
    """A config file's mapping (aliases unshared); the error names the file."""
    path = Path(path)
    cfg = read_yaml(path)
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return _unshare(cfg)


BASE_KEY = "base"  # an overlay may name the config it overlays (default: config/config.yaml)


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict | None, list[tuple[str, dict]]]:
    """``path`` as (a complete config it starts from or None, the overlays to merge over it, in order).
    An overlay's ``base: <file>`` (relative to the working directory) is composed first."""
    layer = read_file(path)
    if is_complete(layer):
        return layer, []
    base = layer.pop(BASE_KEY, None)
    if base is None:
        return None, [(str(path), layer)]
    base = Path(base)
    if base.resolve() in seen:
        raise ConfigError(f"config file {path}: base {base} includes itself")
    start, overlays = _layers(base, seen + (Path(path).resolve(),))
    if start is None:  # the base is itself an overlay of the default config
        start = read_file(DEFAULT_CONFIG)
    return start, overlays + [(str(path), layer)]


def compose(files: Iterable[str | Path], settings: dict | None = None, overrides: Iterable[str] = ()) -> dict:
    """The config of a run: the default config, then each file in order (a complete config
    replaces what precedes it, an overlay is merged over it, over its ``base`` if it names one),
    then ``settings`` (``snakemake --config``, merged) and ``overrides`` (``key.path=value``);
    validated once at the end. Errors name the offending key and the sources."""
    cfg = read_file(DEFAULT_CONFIG)
    sources = [str(DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1]))]
    for f in files:
        start, overlays = _layers(Path(f))
        if start is not None:
            cfg, sources = start, [str(f) if not overlays else f"{f} (base)"]
        for name, layer in overlays:
            cfg = merge(cfg, layer)
            sources.append(name)
    if settings:
        cfg = merge(cfg, retype(settings))
        sources.append("--config " + " ".join(sorted(settings)))
    overrides = list(overrides)
    sources += [f"--set {o}" for o in overrides]
    try:
        return validate(apply_overrides(cfg, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (config from {' + '.join(sources)})") from None


def load(path: str | Path, overrides: Iterable[str] = ()) -> dict:
    """Load a YAML config (an overlay is merged over the default config), apply overrides and validate it."""
    return compose([path], None, overrides)


def digest(cfg: dict) -> str:
    """sha256 of the config's canonical YAML (:func:`dump`)."""
    return hashlib.sha256(dump(cfg).encode()).hexdigest()


def write_resolved(cfg: dict, directory: str | Path) -> Path:
    """Write ``cfg`` once to ``<directory>/<sha256>.yaml`` (content-addressed: the same settings
    give the same file, whatever file names they came from) and return its path. Written to a
    temporary file and renamed, so concurrent writers never leave a partial file."""
    directory = Path(directory)
    path = directory / f"{digest(cfg)}.yaml"
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(dump(cfg))
        os.replace(tmp, path)
    return path


def _unshare(node: Any) -> Any:
    """A copy in which no two places share an object: YAML aliases (``*m3ae``) load as ONE
    object, so an override of one place would change every place that names it."""
    if isinstance(node, dict):
        return {k: _unshare(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshare(v) for v in node]
    return node


def dump(cfg: dict) -> str:
    """The config as YAML with sorted keys, for ``config.resolved.yaml`` files."""
    return yaml.safe_dump(cfg, sort_keys=True, default_flow_style=False)
