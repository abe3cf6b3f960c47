"""``mla_released``: MLA as the authors' released code trains and evaluates it.

Source, called [C]: github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation
at commit ab6c184579f9ff390e9c9b8216c9900c2a43545b. The paper form (Zhang, Yoon, Bansal, Yao,
CVPR 2024, §3, Eqs. 1-8) is the ``mla`` method (``mla/methods/mla.py``). docs/methods/mla_released.md
lists every difference between the two with file and line numbers.

Training ([C] ``main.py`` L419-476, the ``gs_flag`` branch of ``train_epoch``), per paired
shuffled batch (the default ``epoch_batches``; the paper instead gives each step its own
mini-batch of one modality, Eqs. 1-2):

1. ONE forward pass through every encoder (L420-431): features h_m (with their graphs).
2. For each modality m in the fixed order ``self.modalities`` (L432-466):
   logits = head(h_m), computed now, i.e. through the head as updated by the previous
   modality's step; loss_m = CE; backward; ``optimizer.step()``; ``optimizer.zero_grad()``.
   No head-gradient projection: [C]'s ``GSPlugin.before_update`` (``utils/utils.py`` L24-41)
   only acts on a parameter named ``"module.weight"`` (L32), a name the bare head
   ``fusion_module.fc_out`` it is given never has, so it changes nothing. The run therefore
   corresponds to the paper's Table 3 columns without HGM.
3. Every parameter's ``.grad`` is set to None ([C] L468-470: ``del p.grad``).

Per batch the head gets M optimiser steps and each encoder one gradient step; SGD state
(momentum buffers) is the loop's single optimizer ([C] L749), shared across the M steps.

Modality order: the dataset's modality order (the catalog's; the order of ``encoders``).
[C] steps a -> v (-> t) with "a" = audio (A-V, IEMOCAP) but "a" = TEXT and "v" = image
for image-text datasets (the ``m3ae`` model returns text features first). Our A-V (audio,
video) and A-I-T (audio, image, text) orders match [C]; an I-T dataset listed as (image, text)
is stepped image -> text, the reverse of [C], and its fixed fusion weights are 0.55 image /
0.45 text (in [C]: 0.55 text / 0.45 image).

``torch18_zero_grad``: [C] pins torch 1.8.1 (``requirements.txt``), whose ``zero_grad()`` leaves
zero tensors, and SGD applies momentum and weight decay to every parameter whose grad is not
None, so an encoder stepped earlier in the batch keeps moving during the later modalities'
steps (2 modalities: 2 updates of the first encoder per batch, 1 of the second; 3 modalities:
3/2/1). Off (the default) = ``set_to_none=True``, torch >= 2.0 behaviour: each encoder moves
once per batch.

Why the single forward + in-place updates do not trip autograd's version check: the
optimiser modifies parameters in place, and a later backward fails if it needs a tensor
that was modified after being saved. Here (a) each step builds head(h_m) afresh AFTER the
previous step, so the head weights saved for that backward are current; (b) h_m's graph only
saves encoder m's parameters (the encoders share none), and encoder m is never modified
before its own backward: before it, its grad is None (nothing has backpropagated into it,
and the batch starts with every grad None), so SGD skips it in both zero_grad modes;
(c) after its backward, h_m's graph is freed and never used again, so the later leak updates
of encoder m (torch18 mode) touch nothing a backward still needs. An order that computed
every head(h_m) up front, or encoders sharing parameters, would raise instead.

Returned (logged) loss: 0.55·loss_1 + 0.45·loss_2 for two modalities, which is what [C]
logs (L472: ``loss_a * av_alpha + loss_v * (1 - av_alpha)``, with av_alpha = 0.55 from
``main(av_alpha = 0.55)``, L968). For three modalities we return 0.35·loss_1 + 0.25·loss_2 +
0.40·loss_3 (the three-modality fixed fusion weights); [C] itself logs 0.55·loss_a + 0.45·loss_v
there too and leaves the text loss out of its total. Each loss_m is the loss at its own step
(before its update). The returned value is logging only; it is never backpropagated.

Evaluation ([C] ``valid``, L622-651): per-modality logits head(h_m); fused ``multi`` by option
``fusion``:
- ``fixed``: 0.55/0.45 (two modalities, L651 with av_alpha = 0.55), 0.35/0.25/0.40 (three, L649,
  the ``--a_alpha/--v_alpha/--t_alpha`` defaults, L56-58), in modality order; the released
  ``--gs_flag`` run without ``--dynamic`` (Table 3 without HGM and DF).
- ``dynamic`` (default; README ``--gs_flag --dynamic``, Table 3 without HGM, with DF, the column
  the README MLA recipe targets): the released BATCH-LEVEL entropy gate (L640-646 with
  ``calculate_entropy``/``calculate_gating_weights(3)``, L65-106), one scalar weight per
  modality per block of ``eval_block`` consecutive examples (default 64 = [C]'s test batch
  size, ``--batch_size``, L28 and L816); see :func:`batch_entropy_weights`. The paper's Eqs. 7-8
  weight each test example separately. The evaluated batch is split into blocks here, so the
  result only reproduces [C]'s test batches when the evaluator's batches start at multiples of
  ``eval_block`` (``training.eval_batch_size`` a multiple of it, list order, no shuffling). The
  last block of a split is smaller and gets different weights (a block of one example has
  entropy 0 for every modality, so uniform weights 1/M).
Both ``multi:fixed`` and ``multi:dynamic`` are always returned, plus one key per modality.

Missing modalities: [C] multiplies absent inputs by 0 (``dataset/dataset.py`` L118-119,
L156-157) and trains on them; so do we (the batches already carry zeroed inputs) -- no
per-modality filtering in training, and both fusions ignore ``present`` (a zeroed modality's
logits take part in the gate).
"""
from __future__ import annotations

import torch
from torch import nn

from mla.fusion import fuse
from mla.methods.base import METHODS, Method, cross_entropy
from mla.catalog import option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {
        "torch18_zero_grad": {"default": False},
        "fusion": {"default": "dynamic", "choices": ["dynamic", "fixed"]},
        "eval_block": {"default": 64},
    },
}

# [C] main.py: av_alpha = 0.55 from main(av_alpha = 0.55) (L968); a/v/t_alpha = 0.35/0.25/0.40 (L56-58).
FIXED_WEIGHTS = {2: (0.55, 0.45), 3: (0.35, 0.25, 0.40)}


def batch_entropy(logits: torch.Tensor) -> torch.Tensor:
    """[C] ``calculate_entropy``: softmax over the BATCH axis, -p log p summed over B x C.

    (M, B, C) -> (M,). [C] takes ``torch.log(softmax)``, which gives NaN where a probability
    underflows to 0; we use ``log_softmax`` (0·log 0 = 0), identical wherever [C] is finite.
    """
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=(1, 2))


def batch_entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """[C] ``calculate_gating_weights(3)``: w_m = exp(max_j H_j - H_m) / sum_k exp(max_j H_j - H_k).

    ``logits`` (M, B, C) of ONE evaluation batch -> (M,): one weight per modality, shared by
    every example of the batch ([C] ``main.py`` L65-106; the paper's Eq. 8 weights each example).
    The lower the column-softmax entropy, the larger w_m.
    """
    h = batch_entropy(logits)
    z = torch.exp(h.max() - h)
    return z / z.sum()


def blockwise_dynamic_fuse(logits: torch.Tensor, block: int) -> torch.Tensor:
    """Released dynamic fusion over consecutive blocks of ``block`` examples. (M, B, C) -> (B, C)."""
    out = []
    for start in range(0, logits.shape[1], block):
        part = logits[:, start:start + block]
        w = batch_entropy_weights(part)
        out.append(fuse(part, w[:, None].expand(part.shape[:2])))
    return torch.cat(out, dim=0)


def fixed_fuse(logits: torch.Tensor) -> torch.Tensor:
    """Released fixed fusion: 0.55/0.45 or 0.35/0.25/0.40 in modality order. (M, B, C) -> (B, C)."""
    w = torch.tensor(FIXED_WEIGHTS[logits.shape[0]], dtype=logits.dtype, device=logits.device)
    return fuse(logits, w[:, None].expand(logits.shape[:2]))


@METHODS.register("mla_released")
class MLAReleased(Method):
    """Shared forward, M sequential head+encoder steps per paired batch, no HGM, batch-level DF."""

    defaults = option_defaults(CATALOG)
    fusions = ("dynamic", "fixed")

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        if self.options["fusion"] not in self.fusions:
            raise ValueError(f"method mla_released: option fusion={self.options['fusion']!r}; "
                             f"valid: {', '.join(self.fusions)}")
        block = self.options["eval_block"]
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"method mla_released: option eval_block={block!r}; must be a positive integer")
        if not isinstance(self.options["torch18_zero_grad"], bool):
            raise ValueError("method mla_released: option torch18_zero_grad must be true or false")
        self.head = nn.Linear(feature_dim, n_classes)  # [C] fusion_module.fc_out, shared

    def _clear_grads(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """One paired batch: M optimiser steps in modality order ([C] ``main.py`` L419-470)."""
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise ValueError(f"mla_released needs paired batches; this batch has no {', '.join(missing)}")
        self._clear_grads()  # [C]: optimizer.zero_grad() at the top of the batch; grads are None here anyway
        feats = {m: self.encoders[m](batch[m]) for m in self.modalities}  # one shared forward
        losses = []
        for m in self.modalities:
            loss = cross_entropy(self.head(feats[m]), batch["label"])  # through the just-updated head
            loss.backward()
            # ([C]'s GSPlugin.before_update runs here and modifies nothing: utils/utils.py L32.)
            optimizer.step()
            optimizer.zero_grad(set_to_none=not self.options["torch18_zero_grad"])
            losses.append(float(loss.detach()))
        self._clear_grads()  # [C]: del p.grad for every parameter
        return float(sum(w * l for w, l in zip(FIXED_WEIGHTS[len(self.modalities)], losses)))

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-modality head(h_m); fixed and block-wise batch-level dynamic fusion ([C] ``main.py`` L636-651)."""
        per = {m: self.head(self.encoders[m](batch[m])) for m in self.modalities}
        stacked = torch.stack([per[m] for m in self.modalities])
        out = dict(per)
        out["multi:fixed"] = fixed_fuse(stacked)
        out["multi:dynamic"] = blockwise_dynamic_fuse(stacked, self.options["eval_block"])
        out["multi"] = out[f"multi:{self.options['fusion']}"]
        return out
