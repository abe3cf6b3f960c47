"""``if_mmin``: MMIN with modality-invariant features (Zuo, Liu, Zhao, Gao, Li, ICASSP 2023).

Sources: "Exploiting modality-invariant feature for robust multimodal emotion recognition with
missing modalities" (arXiv 2210.15359): a CMD-based invariant feature learned under full modality,
and an invariant-feature-based imagination module (IF-IM). Code: github.com/ZhuoYulang/IF-MMIN,
commit f4d65fc: ``models/IFMMIN_model.py`` L76-85 (networks), L185-238 (forward, losses, clipping at
1.0); ``models/networks/autoencoder_2.py`` L133-145 (the conditioned cascade);
``models/networks/shared.py`` L50-54 (invariant encoder); ``models/utt_shared_model.py`` L48-49,
L97-155 (pretraining: classifier on encodings and invariant features, CE + CMD of order 5 averaged
over the modality pairs, clipping at 0.5); ``models/utils/functions.py`` L76-105 (CMD);
``scripts/CAP_IFMMIN.sh`` L13-17 and ``scripts/CAP_utt_shared.sh`` L17-19 (sizes, weights,
schedule); ``opts/get_opts.py`` L99 (``use_cmd_sim`` on by default).

As ``mmin`` (``mla/methods/mmin.py``: two stages in one job, zero inputs for absent or hidden
modalities, simulated missing conditions over the present modalities, targets only where the
sample has the modality), with these differences, all from the released code:

- Pretraining (``UttSharedModel``): the teacher also has the invariant encoder ``S`` (shared by
  all modalities); its classifier reads ``concat(e_1..e_M, S(e_1)..S(e_M))``; the loss is
  ``CE + mean over modality pairs (a, b) of CMD_K(S(e_a), S(e_b))`` with K = ``cmd_order`` = 5,
  the CMD taken over the batch rows that have both modalities (all rows under ``pretrain_on:
  complete``; a pair with fewer than two such rows adds nothing).
- Student: ``H = concat_m S(e_m)`` of the shown inputs; the cascade is conditioned on it
  (block 1 reads ``h + H``, block k the previous block's output ``+ H``); no backward cascade.
  The student's encoders and ``S`` start from the teacher's.
- Loss ``ce_weight * CE + mse_weight * MSE_known(h', t) + invariant_weight * MSE_known(H, H*)``
  with ``t`` MMIN's imagination target and ``H*_m = S_teacher(e_teacher,m(x_m))`` the teacher's
  invariant feature of each present modality (IF-MMIN computes it from the full features; an
  absent modality has none here, so its block is left out).
- Weights: ``CAP_IFMMIN.sh`` passes ``--ce_weight=1 --mse_weight=1`` and ``--consistent_weight=100``;
  no parser declares the latter (the final ``parse_args`` would reject it), and the model reads
  ``invariant_weight``, whose declared default is 1.0 (``IFMMIN_model.py`` L49): we use 1.0.

The grid owns the optimiser and schedule of stage 2 (IF-MMIN: Adam lr 2e-4, beta1 0.5, weight
decay 1e-5, batch 128, 20 + 20 epochs).
"""
from __future__ import annotations

from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from mla.methods.autoencoders import cmd, masked_mse
from mla.catalog import option_defaults
from mla.methods.base import METHODS
from mla.methods.mmin import MMIN, invariant_encoder
from mla.methods.option_checks import check_count

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "embed_dim": {"default": 128},               # IF-MMIN CAP_IFMMIN.sh L10-12 --embd_size_{a,v,l}=128
        "cls_layers": {"default": [128, 128]},       # CAP_IFMMIN.sh L15
        "ae_layers": {"default": [256, 128, 64]},    # CAP_IFMMIN.sh L13
        "n_blocks": {"default": 5},                  # CAP_IFMMIN.sh L13
        "dropout": {"default": 0.5},                 # CAP_IFMMIN.sh L15
        "ce_weight": {"default": 1.0},               # CAP_IFMMIN.sh L14
        "mse_weight": {"default": 1.0},              # CAP_IFMMIN.sh L14
        "invariant_weight": {"default": 1.0},        # IFMMIN_model.py L49 default (the script's --consistent_weight is undeclared)
        "cmd_order": {"default": 5},                 # utt_shared_model.py L150-152
        "clip_norm": {"default": 1.0},               # IFMMIN_model.py L237-238
        "train_keep": {"default": "proper", "choices": ["proper", "any"]},         # MMIN multimodal_miss_dataset.py L81-110, over present modalities
        "pretrain_on": {"default": "complete", "choices": ["complete", "all"]},      # ours: IF-MMIN pretrains on complete data
        "pretrain_epochs": {"default": [10, 10]},    # CAP_utt_shared.sh L18 --niter=10 --niter_decay=10
        "pretrain_lr": {"default": 2.0e-4},          # CAP_utt_shared.sh L19
        "pretrain_batch_size": {"default": 64},      # CAP_utt_shared.sh L19
        "pretrain_dropout": {"default": 0.3},        # CAP_utt_shared.sh L17
        "pretrain_clip_norm": {"default": 0.5},      # utt_shared_model.py L132-133
    },
}


@METHODS.register("if_mmin")
class IFMMIN(MMIN):
    """MMIN whose imagination is conditioned on CMD-aligned invariant features."""

    name = "if_mmin"
    defaults = option_defaults(CATALOG)
    shared_invariant = True

    def build_student_extras(self, fused: int, layers: tuple[int, ...]) -> None:
        check_count(self.name, "cmd_order", self.options["cmd_order"])
        self.shared = invariant_encoder(self.embed_dim)

    def extra_groups(self) -> list[nn.Module]:
        return [self.shared]

    def copy_teacher(self) -> None:
        super().copy_teacher()
        self.shared.load_state_dict(self.teacher.shared.state_dict())

    def teacher_loss(self, feats: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
        """``UttSharedModel``: CE + the mean CMD between the invariant features of every modality pair."""
        emb = self.teacher.encode(feats)
        inv = {m: self.teacher.shared(emb[m]) for m in self.modalities}
        logits = self.teacher.classifier(torch.cat([emb[m] for m in self.modalities]
                                                   + [inv[m] for m in self.modalities], dim=-1))
        present, k = batch["present"], int(self.options["cmd_order"])
        pairs = list(combinations(range(len(self.modalities)), 2))
        dist = logits.new_zeros(())
        for a, b in pairs:
            rows = present[:, a] & present[:, b]
            if int(rows.sum()) >= 2:  # moments of fewer than two rows say nothing about a distribution
                dist = dist + cmd(inv[self.modalities[a]][rows], inv[self.modalities[b]][rows], k)
        return F.cross_entropy(logits, batch["label"]) + dist / len(pairs)

    def imagine(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Student pass: ``h``, invariant ``H``, ``h'`` from the conditioned cascade, logits."""
        emb = [self.utt[m](feats[m]) for m in self.modalities]
        h = torch.cat(emb, dim=-1)
        inv = torch.cat([self.shared(e) for e in emb], dim=-1)
        imagined, latents = self.autoencoder.conditioned(h, inv)
        return {"h": h, "invariant": inv, "imagined": imagined, "logits": self.classifier(latents)}

    @torch.no_grad()
    def invariant_targets(self, batch: dict) -> torch.Tensor:
        """``H*``: the teacher's invariant feature of every present modality's true features (absent
        blocks computed from zeros and masked by the caller); (B, M * embed_dim)."""
        emb = self.teacher.encode(self.modality_inputs(batch, batch["present"]))
        return torch.cat([self.teacher.shared(emb[m]) for m in self.modalities], dim=-1)

    def loss_terms(self, batch: dict, show: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.imagine(self.modality_inputs(batch, show))
        known = self.known_blocks(batch["present"])
        return {
            "ce": F.cross_entropy(out["logits"], batch["label"]),
            "forward": masked_mse(out["imagined"], self.imagination_targets(batch, show), known),
            "invariant": masked_mse(out["invariant"], self.invariant_targets(batch), known),
        }

    def weights(self) -> dict[str, float]:
        o = self.options
        return {"ce": float(o["ce_weight"]), "forward": float(o["mse_weight"]),
                "invariant": float(o["invariant_weight"])}
