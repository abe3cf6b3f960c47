"""``--kind released``: the authors' MLA checkpoints -> the state dict of our ``mla`` / ``mla_released``.

[C] saves ``{'saved_epoch', 'modulation', 'alpha', 'fusion', 'acc', 'model', 'optimizer',
'scheduler'}`` with ``model`` = the ``nn.DataParallel`` state dict (``main.py``, best-on-test
epoch; the README links checkpoints on Zenodo record 10828670). The architecture is recognised
from the keys (``module.`` stripped) and mapped to our names:

- AVClassifier (CREMA-D): ``audio_net.*`` -> ``encoders.audio.*``, ``visual_net.*`` ->
  ``encoders.video.*`` (``resnet18``, width 64, stem ``imagenet``);
- M3AEClassifier (Food-101, MVSA): ``mae_a.*`` -> ``encoders.text.*`` (``mae_a`` is the TEXT
  encoder: ``models/basic_model.py`` L190), ``mae_v.*`` -> ``encoders.image.*`` (``m3ae``, 768 / 12 / 12);
- Modal3Classifier (IEMOCAP): ``mae_a.*`` -> ``encoders.audio.*`` (``cavmae_audio``),
  ``mae_v.*`` -> ``encoders.image.*``, ``mae_t.*`` -> ``encoders.text.*`` (``m3ae``);
- all: ``fusion_module.fc_out.{weight,bias}`` -> ``head.{weight,bias}`` (the shared head).

ResNet-18 names (OGM-GE ``models/backbone.py`` -> :class:`mla.models.encoders.ResNet18`):
``conv1`` -> ``stem.0``, ``bn1`` -> ``stem.1``, ``layer<s>.<j>.<x>`` -> ``blocks.<2(s-1)+j>.<x>`` with
``downsample.{0,1}`` -> ``shortcut.{0,1}`` (BatchNorm running statistics included). M3AE and CAV-MAE
names are kept (our modules use [C]'s names); the other modality's input layers of each M3AE and
CAV-MAE's visual branch and unused norms are dropped (listed in the report). Only MLA checkpoints
(``--gs_flag``: one shared ``fc_out`` over ONE modality's features) are accepted; a concat head
over all modalities' features is an error. [C]'s ``large`` path (CAV-MAE audio + visual) has no
encoder here (and is broken in [C]: ``CAVDataset`` returns 3 items, ``dataset/dataset.py`` L325,
where the training loop unpacks 4, ``main.py`` L159).

Our method state dict additionally holds ``mla``'s buffers (``P``, ``step``, ...); the output has
the encoders and the head only, so load it with :func:`mla.weights.load.load_method_state`.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from mla.weights.convert import (ConversionError, Plan, as_tensor, build_meta, expected_shapes, gather, identity,
                                 state_dict_of)

HEAD = "fusion_module.fc_out."

# name -> (modality, [C] prefix, encoder name) per architecture, in [C]'s modality order.
ARCHITECTURES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "av_resnet18": (("audio", "audio_net.", "resnet18"), ("video", "visual_net.", "resnet18")),
    "it_m3ae": (("text", "mae_a.", "m3ae"), ("image", "mae_v.", "m3ae")),
    "ait_cavmae_m3ae": (("audio", "mae_a.", "cavmae_audio"), ("image", "mae_v.", "m3ae"), ("text", "mae_t.", "m3ae")),
}
PAPER_SPECS = {"resnet18": {"name": "resnet18", "width": 64, "stem": "imagenet"},
               "m3ae": {"name": "m3ae"}, "cavmae_audio": {"name": "cavmae_audio"}}


def detect(sd: dict[str, Any], source: str) -> str:
    """Which [C] classifier wrote this state dict."""
    if "audio_net.conv1.weight" in sd and "visual_net.conv1.weight" in sd:
        return "av_resnet18"
    if "mae_a.patch_embed_a.proj.weight" in sd and "mae_t.encoder.layer_norm.weight" in sd:
        return "ait_cavmae_m3ae"
    if "mae_a.text_embedding.weight" in sd and "mae_v.image_embedding.weight" in sd:
        return "it_m3ae"
    if "mae_v.patch_embed_v.proj.weight" in sd:
        raise ConversionError(f"{source}: a CAVClassifier ([C] --lorb large) checkpoint; its CAV-MAE visual "
                              f"branch has no encoder here (and [C]'s training loop cannot run that path)")
    raise ConversionError(f"{source}: not an MLA checkpoint of [C] (no audio_net/visual_net or mae_a/mae_v keys)")


def resnet_source_name(ours: str, layers: tuple[int, ...] = (2, 2, 2, 2)) -> str:
    """Our ResNet18 name -> OGM-GE's (``blocks.3.shortcut.0.weight`` -> ``layer2.1.downsample.0.weight``)."""
    if ours.startswith("stem.0."):
        return "conv1." + ours[len("stem.0."):]
    if ours.startswith("stem.1."):
        return "bn1." + ours[len("stem.1."):]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", ours)
    if not m:
        raise ConversionError(f"no [C] ResNet-18 name known for {ours}")
    k, rest = int(m.group(1)), m.group(2).replace("shortcut.", "downsample.")
    for stage, n in enumerate(layers, start=1):
        if k < n:
            return f"layer{stage}.{k}.{rest}"
        k -= n
    raise ConversionError(f"block index out of range in {ours}")


def released_plan(arch: str) -> Plan:
    """Our method name (``encoders.<m>.<param>`` / ``head.*``) -> [C]'s name."""
    prefixes = {m: (pre, enc) for m, pre, enc in ARCHITECTURES[arch]}

    def plan(ours: str) -> tuple[str, Any]:
        if ours.startswith("head."):
            return HEAD + ours[len("head."):], identity
        _, m, param = ours.split(".", 2)
        pre, enc = prefixes[m]
        return pre + (resnet_source_name(param) if enc == "resnet18" else param), identity

    return plan


def convert_released(obj: Any, source: str, options: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A [C] MLA checkpoint -> ``encoders.<modality>.*`` + ``head.*``, and a report."""
    sd = state_dict_of(obj, source)
    arch = detect(sd, source)
    expected: dict[str, tuple[int, ...]] = {}
    dims = set()
    for modality, _, enc in ARCHITECTURES[arch]:
        module = build_meta(enc, modality, options)
        dims.add(_feature_dim(module))
        expected.update(expected_shapes(module, f"encoders.{modality}."))
    (dim,) = dims
    if HEAD + "weight" not in sd:
        raise ConversionError(f"{source}: missing parameter {HEAD}weight (the shared head)")
    head = as_tensor(HEAD + "weight", sd[HEAD + "weight"])
    if head.dim() != 2 or head.shape[1] != dim:
        raise ConversionError(f"{source}: {HEAD}weight has shape {tuple(head.shape)}; MLA's shared head takes "
                              f"{dim} features (a concat/Normal checkpoint is not an MLA one)")
    expected.update({"head.weight": (head.shape[0], dim), "head.bias": (head.shape[0],)})
    out, dropped = gather(sd, expected, released_plan(arch), source)
    modalities = [m for m, _, _ in ARCHITECTURES[arch]]
    specs = {m: {**PAPER_SPECS[enc], **options.get(enc, {})} for m, _, enc in ARCHITECTURES[arch]}
    meta = {k: obj[k] for k in ("saved_epoch", "modulation", "alpha", "fusion", "acc")
            if isinstance(obj, dict) and isinstance(obj.get(k), (int, float, str))}
    return out, {"format": "torch", "architecture": arch, "modalities": modalities, "encoders": specs,
                 "n_classes": int(head.shape[0]), "feature_dim": dim, "checkpoint": meta, "dropped": dropped}


def _feature_dim(module: torch.nn.Module) -> int:
    """The encoder's output width (ResNet: channels of its last block; transformers: ``dim``)."""
    if hasattr(module, "dim"):
        return int(module.dim)
    return int(list(module.blocks)[-1].bn2.num_features)
