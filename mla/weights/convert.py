"""``python -m mla convert-weights``: third-party checkpoints -> plain PyTorch state dicts of our encoders.

Every kind works the same way: build our target module(s) on the ``meta`` device to learn the
EXPECTED parameter names and shapes, look each one up in the source under its source name
(a :data:`Plan` maps ours -> (source name, transform)), check presence and shape (an error names
the parameter, ours and the source's), and write ``torch.save({name: tensor})`` plus a JSON
sidecar (``<out>.json``: source sha256, kind, sizes, the dropped source entries). The pipeline
then loads only that file, with ``torch.load(weights_only=True)`` (``create_encoder``'s
``weights`` option). Sources are read by :func:`mla.weights.safe_load.read_checkpoint`.

Kinds:

``m3ae``  M3AE (young-geng/m3ae_public) -> one state dict holding both the image and the text
    encoder's names (``encoder.*`` and ``cls_token`` are shared); ``create_encoder`` takes the
    keys its modality needs. Two source forms:

    * a Flax parameter tree (nested dicts of numpy arrays, e.g. ``state.params`` extracted from the
      official ``.pkl``, see :data:`mla.weights.safe_load.M3AE_HINT`). Names (``m3ae/model.py``,
      ``nn.compact`` auto-naming): ``cls_token``, ``encoder_{image,text}_type_embedding``,
      ``image_embedding/{kernel,bias}``, ``text_embedding/embedding``,
      ``encoder/Block_<i>/{LayerNorm_0, Attention_0/Dense_0 (qkv), Attention_0/Dense_1 (proj),
      LayerNorm_1, TransformerMLP_0/fc1, TransformerMLP_0/fc2}``, ``encoder/LayerNorm_0``;
      LayerNorm ``scale`` -> ``weight``. Dense kernels are (in, out) and are transposed. The
      ``image_embedding`` kernel's rows are M3AE's (p1, p2, c) patch order (``extract_patches`` on
      NHWC images); they are permuted to our (c, p1, p2) order, so the converted layer computes
      what M3AE learnt on our patch vectors (``released_patch_order=True`` keeps the rows as they
      are, which is what [C]'s commented conversion (``.t()`` only) produces). The decoder,
      mask tokens and decoder type embeddings are dropped.
    * a PyTorch state dict with [C]'s port names (``m3ae_base.pth``): copied one to one.

``cavmae``  a CAV-MAE ``.pth`` (YuanGongND/cav-mae; saved from ``nn.DataParallel``: ``module.``
    prefixes, stripped) -> the audio branch of :class:`mla.models.cavmae.CAVMAEAudio` (same names).

``released``  an MLA checkpoint of [C] (``main.py``: ``{'model': DataParallel state_dict, ...}``),
    see :mod:`mla.weights.released`.

Sizes: the paper's (``m3ae`` 768/12/12, vocab 30522, patch 16; ``cavmae_audio`` 768, 11 + 1
blocks, 1024 × 128 fbank); ``options`` (``--options`` JSON, keyed by encoder name) override them,
e.g. ``{"m3ae": {"out_dim": 16, "depth": 2, "heads": 2}}``.
"""
from __future__ import annotations

import contextlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from mla.data.splits import sha256_file
from mla.io import atomic_file
from mla.models.encoders import ENCODERS
from mla.weights.declared import declared_state
from mla.weights.safe_load import read_checkpoint

KINDS = ("m3ae", "cavmae", "released")
DEFAULT_DIM = {"m3ae": 768, "cavmae_audio": 768}
Transform = Callable[[torch.Tensor], torch.Tensor]
Plan = Callable[[str], tuple[str, Transform]]


class ConversionError(ValueError):
    """A source that does not fit the target: the message names the parameter."""


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


def transpose(t: torch.Tensor) -> torch.Tensor:
    return t.T


# --- sources ----------------------------------------------------------------------------------
def flatten(tree: Any, sep: str, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {joined key: leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, sep, f"{prefix}{sep}{k}" if prefix else str(k)))
    return out


def as_tensor(name: str, value: Any) -> torch.Tensor:
    """A numeric array or tensor as a tensor (floats as float32); anything else is an error naming it."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ConversionError(f"source entry {name!r} has non-numeric dtype {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ConversionError(f"source entry {name!r} is a {type(value).__name__}, not an array")
    return value.float() if value.is_floating_point() else value


def state_dict_of(obj: Any, source: str) -> dict[str, Any]:
    """The flat state dict inside a torch checkpoint ({'model': ...} / {'state_dict': ...} or bare),
    ``module.`` (DataParallel) prefixes stripped."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{source}: no state dict found")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


# --- targets ----------------------------------------------------------------------------------
def build_meta(name: str, modality: str, options: dict) -> torch.nn.Module:
    """Encoder ``name`` for ``modality`` at the paper's size (``options[name]`` overrides), on meta."""
    opts = dict(options.get(name, {}))
    out_dim = opts.pop("out_dim", DEFAULT_DIM.get(name) or 8 * opts.get("width", 64))
    with torch.device("meta"), _no_normal_init():
        return ENCODERS.create(name, modality=modality, out_dim=out_dim, **opts)


@contextlib.contextmanager
def _no_normal_init() -> Iterator[None]:
    """Skip ``nn.init.normal_`` while building shape-only modules: values on ``meta`` do not exist, and
    torch runs ``normal_`` on meta through a decomposition whose first use imports torch._dynamo (~6 s)."""
    original = torch.nn.init.normal_
    torch.nn.init.normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        yield
    finally:
        torch.nn.init.normal_ = original


def expected_shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def gather(source: dict[str, Any], expected: dict[str, tuple[int, ...]], plan: Plan,
           what: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every expected parameter from ``source`` through ``plan``; returns (state dict, unused source keys)."""
    out, used = {}, set()
    for ours, shape in expected.items():
        src, fn = plan(ours)
        if src not in source:
            raise ConversionError(f"{what}: missing parameter {src!r} (for {ours})")
        tensor = fn(as_tensor(src, source[src]))
        if tuple(tensor.shape) != shape:
            raise ConversionError(f"{what}: parameter {src!r} has shape {tuple(source[src].shape)}, "
                                  f"which gives {tuple(tensor.shape)} for {ours}; expected {shape}")
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
            raise ConversionError(f"{what}: parameter {src!r} (for {ours}) holds NaN or infinite values; the "
                                  f"file is damaged or the run it comes from diverged")
        out[ours] = tensor.clone(memory_format=torch.contiguous_format)  # own, compact storage for torch.save
        used.add(src)
    return out, sorted(set(source) - used)


# --- M3AE ---------------------------------------------------------------------------------------
_FLAX_BLOCK = {"layer_norm1": "LayerNorm_0", "layer_norm2": "LayerNorm_1",
               "attention.qkv_linear": "Attention_0/Dense_0", "attention.fc": "Attention_0/Dense_1",
               "transformer_mlp.fc1": "TransformerMLP_0/fc1", "transformer_mlp.fc2": "TransformerMLP_0/fc2"}


def patch_rows_to_cpp(kernel_t: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """(out, p·p·c) weight with inputs in (p1, p2, c) order -> inputs in (c, p1, p2) order."""
    out, n = kernel_t.shape
    p = int(round((n // channels) ** 0.5))
    return kernel_t.reshape(out, p, p, channels).permute(0, 3, 1, 2).reshape(out, n)


def flax_m3ae_plan(root: str, released_patch_order: bool = False) -> Plan:
    """Our [C]-port name -> Flax path under ``root`` (e.g. ``params``) and the layout change."""
    pre = f"{root}/" if root else ""

    def plan(ours: str) -> tuple[str, Transform]:
        if ours in ("cls_token", "encoder_image_type_embedding", "encoder_text_type_embedding"):
            return pre + ours, identity
        if ours == "text_embedding.weight":
            return pre + "text_embedding/embedding", identity
        if ours == "image_embedding.weight":
            return pre + "image_embedding/kernel", (transpose if released_patch_order
                                                    else lambda t: patch_rows_to_cpp(t.T))
        if ours == "image_embedding.bias":
            return pre + "image_embedding/bias", identity
        m = re.fullmatch(r"encoder\.(?:blocks\.(\d+)\.(.+)|layer_norm)\.(weight|bias)", ours)
        if not m:
            raise ConversionError(f"no Flax name known for {ours}")
        layer = f"Block_{m.group(1)}/{_FLAX_BLOCK[m.group(2)]}" if m.group(1) else "LayerNorm_0"
        norm = layer.endswith(("LayerNorm_0", "LayerNorm_1"))
        if m.group(3) == "bias":
            return f"{pre}encoder/{layer}/bias", identity
        return f"{pre}encoder/{layer}/{'scale' if norm else 'kernel'}", identity if norm else transpose

    return plan


def convert_m3ae(obj: Any, source: str, options: dict, released_patch_order: bool = False) -> tuple[dict, dict]:
    """M3AE (Flax tree or [C]-port state dict) -> state dict with the image and the text encoder's names."""
    expected = {**expected_shapes(build_meta("m3ae", "image", options)),
                **expected_shapes(build_meta("m3ae", "text", options))}
    if isinstance(obj, dict) and any(isinstance(v, dict) for v in obj.values()) and "model" not in obj:
        flat = flatten(obj, "/")
        roots = sorted({k[: k.index("encoder/Block_0/")].rstrip("/") for k in flat if "encoder/Block_0/" in k})
        if len(roots) > 1:  # flax.serialization.to_state_dict(TrainState): optimiser moments mirror the params
            roots = [r for r in roots if "opt_state" not in r.split("/")]
        if len(roots) != 1:
            raise ConversionError(f"{source}: expected one M3AE parameter tree (…/encoder/Block_0/…), found "
                                  f"{len(roots)}: {roots}")
        sd, dropped = gather(flat, expected, flax_m3ae_plan(roots[0], released_patch_order), source)
        fmt = "flax"
    else:
        sd, dropped = gather(state_dict_of(obj, source), expected, lambda n: (n, identity), source)
        fmt = "torch"
    return sd, {"format": fmt, "patch_order": "as in source" if fmt == "torch" or released_patch_order
                else "permuted (p1,p2,c) -> (c,p1,p2)", "dropped": dropped}


def convert_cavmae(obj: Any, source: str, options: dict) -> tuple[dict, dict]:
    """CAV-MAE ``.pth`` -> the audio branch (names unchanged, ``module.`` stripped)."""
    expected = expected_shapes(build_meta("cavmae_audio", "audio", options))
    sd, dropped = gather(state_dict_of(obj, source), expected, lambda n: (n, identity), source)
    return sd, {"format": "torch", "dropped": dropped}


# --- files --------------------------------------------------------------------------------------


def convert(kind: str, src: str | Path, options: dict | None = None,
            released_patch_order: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``src`` safely and convert it; returns (state dict, report).

    A torch zip source is converted twice: first its declared tensors (``meta`` tensors, nothing
    allocated), so every name and shape is checked against our modules before a byte is read; then
    the real tensors."""
    options = options or {}
    if kind not in KINDS:
        raise ValueError(f"unknown weights kind {kind!r}; valid: {', '.join(KINDS)}")
    if zipfile.is_zipfile(src):
        _convert_obj(kind, declared_state(src), str(src), options, released_patch_order)
    sd, report = _convert_obj(kind, read_checkpoint(src), str(src), options, released_patch_order)
    return sd, {"kind": kind, "options": options, **report}


def _convert_obj(kind: str, obj: Any, source: str, options: dict, released_patch_order: bool) -> tuple[dict, dict]:
    if kind == "m3ae":
        return convert_m3ae(obj, source, options, released_patch_order)
    if kind == "cavmae":
        return convert_cavmae(obj, source, options)
    from mla.weights.released import convert_released

    return convert_released(obj, source, options)


def convert_file(kind: str, src: str | Path, out: str | Path, options: dict | None = None,
                 released_patch_order: bool = False, expected_sha256: str | None = None) -> dict:
    """Convert ``src`` to ``out`` (torch.save of a dict of tensors) and ``out``.json; returns the report.

    With ``expected_sha256`` (the config's ``sha256`` of the source), a source with another sha256 is an
    error naming both values, before anything is read or written."""
    if expected_sha256 is not None:
        actual = sha256_file(src)
        if actual != expected_sha256.lower():
            raise ConversionError(f"{src}: sha256 {actual}, but the config expects {expected_sha256} "
                                  f"(another file, or another version of it)")
    sd, report = convert(kind, src, options, released_patch_order)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        torch.save(sd, tmp)
    report = {**report, "source": str(src), "source_sha256": sha256_file(src), "output": str(out),
              "output_sha256": sha256_file(out), "parameters": len(sd),
              "values": int(sum(t.numel() for t in sd.values()))}
    with atomic_file(out.with_name(out.name + ".json")) as tmp:
        tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report
