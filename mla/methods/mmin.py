"""``mmin``: Missing Modality Imagination Network (Zhao, Li, Jin, ACL 2021, §3).

Sources: github.com/AIM3-RUC/MMIN, branch master (commit 69a45fe): ``models/mmin_model.py``
L59-69 (networks), L147-177 (forward, losses, clipping at 1.0); ``models/utt_fusion_model.py``
L46, L67, L107, L117 (the pretrained fusion model, clipping at 0.5);
``models/networks/autoencoder.py`` L61-73 (``ResidualAE``); ``data/multimodal_miss_dataset.py``
L71-110 (training conditions); ``scripts/CAP_mmin.sh`` L13-19 and ``scripts/CAP_utt_fusion.sh``
L16-18 (sizes, weights, pretraining schedule). GCNet's port (github.com/zeroQiaoba/GCNet, commit
8cce4a0, ``baseline-mmin/models/mmin_model.py`` L54-75, L156-199; ``run.sh`` L122) uses the same
loss weights and fully connected utterance-level encoders, as we do (our inputs are utterance-level
features of the frozen encoders; MMIN's own encoders are an LSTM and a TextCNN over frames/words).

Two stages, both inside the same job:

1. Pretraining (first call of :meth:`MMIN.epoch_batches`): the fusion model ``teacher`` --
   per-modality encoders ``fc_net(s, cls_layers, embed_dim)`` and a classifier on their
   concatenation -- is trained with cross-entropy on the training samples that have every
   modality (``pretrain_on: complete``; MMIN pretrains on complete data) or on every training
   sample with absent modalities zeroed (``pretrain_on: all``), with its own Adam (lr
   ``pretrain_lr``, betas (0.9, 0.999)), ``pretrain_epochs = [constant, decay]`` epochs (constant
   lr, then linear decay as MMIN's ``linear`` policy), batch ``pretrain_batch_size``, per-network
   gradient clipping ``pretrain_clip_norm``. The last epoch's teacher is kept (MMIN selects it on
   validation; the method API gives no validation data here). The student's encoders start from
   the teacher's (MMIN ``post_process``). A training split with no complete sample (released
   masking at eta >= 1 - 1/M) is an error under ``complete``.
2. Imagination (every ``train_step``): student encoders give ``h = concat_m enc_m(x_m)`` (zeros
   in for absent or hidden modalities); the cascade ``ResidualAE`` gives ``h'`` and latents ``c``;
   a backward cascade gives ``h'' = AE_cycle(h')``; the classifier reads ``c``. Loss::

       ce_weight * CE(cls(c), y) + mse_weight * MSE_known(h', t) + cycle_weight * MSE(h'', h.detach())

   with ``t_m = teacher_m(x_m)`` for a hidden modality and ``teacher_m(0)`` for a shown one
   (MMIN's target ``T(A_reverse)`` zeroes the shown inputs), both in eval mode without gradient.

Deviations (the protocol's): MMIN trains every complete sample under a random missing condition
(one of the non-empty proper subsets, ``multimodal_miss_dataset.py`` L81-110) and imagines the
dropped modalities from features it still has. Here each step draws that condition among the
sample's *present* modalities (``train_keep: proper``); a modality the sample lacks has no target
and its block of ``t`` is left out of the mean (``MSE_known``). A sample with one modality is fed
as it is and only its shown block has a target. With no two-modality sample (eta >= 1 - 1/M under
released masking) the imagination has nothing to learn from.

The grid owns the optimiser and schedule of stage 2 (MMIN: Adam lr 2e-4, beta1 0.5, weight decay
1e-5, batch 128, 30 + 30 epochs). Predictions: ``multi`` with every present modality, modality m
with m alone (MMIN's test conditions).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mla.batches import SplitTensors, shuffled_batches
from mla.methods.autoencoders import (KEEP_RULES, ImputationMethod, ResidualAE, clip_and_step, fc_net, masked_mse,
                                      simulated_keep)
from mla.methods.option_checks import check_choice, check_count, check_fraction, check_layers, check_positive
from mla.catalog import option_defaults
from mla.methods.base import METHODS

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "embed_dim": {"default": 128},               # MMIN CAP_mmin.sh L11-13 --embd_size_{a,v,l}=128
        "cls_layers": {"default": [128, 128]},       # CAP_mmin.sh L17
        "ae_layers": {"default": [256, 128, 64]},    # CAP_mmin.sh L14
        "n_blocks": {"default": 5},                  # CAP_mmin.sh L14
        "dropout": {"default": 0.5},                 # CAP_mmin.sh L17
        "ce_weight": {"default": 1.0},               # CAP_mmin.sh L16 (GCNet run.sh L122 too)
        "mse_weight": {"default": 4.0},              # CAP_mmin.sh L16
        "cycle_weight": {"default": 2.0},            # CAP_mmin.sh L16
        "clip_norm": {"default": 1.0},               # mmin_model.py L176-177
        "train_keep": {"default": "proper", "choices": ["proper", "any"]},         # multimodal_miss_dataset.py L81-110, over present modalities
        "pretrain_on": {"default": "complete", "choices": ["complete", "all"]},      # ours: MMIN pretrains on complete data
        "pretrain_epochs": {"default": [10, 10]},    # CAP_utt_fusion.sh L17 --niter=10 --niter_decay=10
        "pretrain_lr": {"default": 2.0e-4},          # CAP_utt_fusion.sh L18
        "pretrain_batch_size": {"default": 128},     # CAP_utt_fusion.sh L18
        "pretrain_dropout": {"default": 0.3},        # CAP_utt_fusion.sh L16
        "pretrain_clip_norm": {"default": 0.5},      # utt_fusion_model.py L117
    },
}
PRETRAIN_ON = ("complete", "all")


class FusionTeacher(nn.Module):
    """MMIN's ``UttFusionModel``: per-modality encoders and a classifier on their concatenation
    (with ``shared``, IF-MMIN's ``UttSharedModel``: a shared invariant encoder too, and the
    classifier reads the encodings and their invariant features)."""

    def __init__(self, modalities: tuple[str, ...], feature_dim: int, embed: int, cls: tuple[int, ...],
                 n_classes: int, dropout: float, shared: bool = False) -> None:
        super().__init__()
        self.modalities = modalities
        self.utt = nn.ModuleDict({m: fc_net(feature_dim, cls, embed, dropout) for m in modalities})
        self.shared = invariant_encoder(embed) if shared else None
        width = embed * len(modalities) * (2 if shared else 1)
        self.classifier = fc_net(width, cls, n_classes, dropout)

    def encode(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.utt[m](feats[m]) for m in self.modalities}

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.encode(feats)
        parts = [emb[m] for m in self.modalities]
        if self.shared is not None:
            parts += [self.shared(emb[m]) for m in self.modalities]
        return self.classifier(torch.cat(parts, dim=-1))


def invariant_encoder(embed: int) -> nn.Sequential:
    """IF-MMIN's ``SharedEncoder`` (default branch, ``models/networks/shared.py`` L50-54)."""
    return nn.Sequential(nn.Linear(embed, embed), nn.LeakyReLU(), nn.Linear(embed, embed), nn.LeakyReLU())


def linear_decay(constant: int, decay: int):
    """MMIN's ``linear`` lr policy (``networks/tools.py``): factor ``1 - max(0, e + 1 - constant) / (decay + 1)``."""
    return lambda e: 1.0 - max(0, e + 1 - constant) / float(decay + 1)


@METHODS.register("mmin")
class MMIN(ImputationMethod):
    """Pretrained fusion teacher; cascaded residual imagination with forward and cycle losses."""

    name = "mmin"
    defaults = option_defaults(CATALOG)
    shared_invariant = False  # IF-MMIN's teacher and student add the invariant encoder

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        o, n = self.options, self.name
        check_choice(n, "train_keep", o["train_keep"], KEEP_RULES)
        check_choice(n, "pretrain_on", o["pretrain_on"], PRETRAIN_ON)
        for key in ("ce_weight", "mse_weight", "cycle_weight", "invariant_weight"):
            if key in o:
                check_positive(n, key, o[key], zero_ok=True)
        for key in ("dropout", "pretrain_dropout"):
            check_fraction(n, key, o[key])
        self.clip = check_positive(n, "clip_norm", o["clip_norm"])
        check_positive(n, "pretrain_clip_norm", o["pretrain_clip_norm"])
        check_positive(n, "pretrain_lr", o["pretrain_lr"])
        epochs = o["pretrain_epochs"]
        if not (isinstance(epochs, (list, tuple)) and len(epochs) == 2
                and all(isinstance(e, int) and e >= 0 for e in epochs) and sum(epochs) > 0):
            raise ValueError(f"method {n}: option pretrain_epochs={epochs!r}; expected [constant, decay] epochs, "
                             f"non-negative integers, not both 0 (method_options.{n}.pretrain_epochs)")
        for key in ("embed_dim", "n_blocks", "pretrain_batch_size"):
            check_count(n, key, o[key])
        embed, cls = o["embed_dim"], check_layers(n, "cls_layers", o["cls_layers"])
        layers = check_layers(n, "ae_layers", o["ae_layers"])
        self.embed_dim = embed
        fused = embed * len(self.modalities)
        self.utt = nn.ModuleDict({m: fc_net(feature_dim, cls, embed, float(o["dropout"])) for m in self.modalities})
        self.autoencoder = ResidualAE(fused, layers, o["n_blocks"])
        self.classifier = fc_net(layers[-1] * o["n_blocks"], cls, n_classes, float(o["dropout"]))
        self.teacher = FusionTeacher(self.modalities, feature_dim, embed, cls, n_classes,
                                     float(o["pretrain_dropout"]), shared=self.shared_invariant)
        self.build_student_extras(fused, layers)
        # Checkpointed, so a resumed run does not pretrain again; the count documents the teacher's data.
        self.register_buffer("pretrained", torch.tensor(False))
        self.register_buffer("pretrain_samples", torch.tensor(0, dtype=torch.int64))

    def build_student_extras(self, fused: int, layers: tuple[int, ...]) -> None:
        """MMIN: the backward (cycle) cascade."""
        self.autoencoder_cycle = ResidualAE(fused, layers, self.options["n_blocks"])

    def train(self, mode: bool = True) -> "MMIN":
        """The teacher stays in eval mode outside pretraining (MMIN: ``pretrained_encoder.eval()``)."""
        super().train(mode)
        self.teacher.train(False)
        return self

    # --- stage 1: pretraining -------------------------------------------------------------
    def pretrain_rows(self, data: SplitTensors) -> torch.Tensor:
        """Indices of the training samples the teacher learns from."""
        if self.options["pretrain_on"] == "all":
            return torch.arange(len(data))
        rows = torch.nonzero(data.present.all(1).cpu()).flatten()
        if len(rows) == 0:
            raise ValueError(
                f"method {self.name}: no training sample has every modality ({', '.join(self.modalities)}), so the "
                f"fusion model cannot be pretrained on complete samples (released masking keeps one modality per "
                f"sample when 1 - eta <= 1/M); set method_options.{self.name}.pretrain_on: all to pretrain on every "
                f"training sample with its absent modalities zeroed")
        return rows

    def teacher_loss(self, feats: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
        """MMIN's fusion model: cross-entropy of the teacher's classifier."""
        return F.cross_entropy(self.teacher(feats), batch["label"])

    def pretrain(self, data: SplitTensors, gen: torch.Generator) -> None:
        """Stage 1 (see the module docstring); then the student's encoders copy the teacher's."""
        rows = self.pretrain_rows(data)
        o = self.options
        opt = torch.optim.Adam(self.teacher.parameters(), lr=float(o["pretrain_lr"]), betas=(0.9, 0.999))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(*o["pretrain_epochs"]))
        groups = [*self.teacher.utt.values(), self.teacher.classifier]
        groups += [self.teacher.shared] if self.teacher.shared is not None else []
        self.teacher.train(True)
        for _ in range(sum(o["pretrain_epochs"])):
            for batch in shuffled_batches(data, int(o["pretrain_batch_size"]), gen, rows):
                feats = self.modality_inputs(batch, batch["present"])
                clip_and_step(self.teacher_loss(feats, batch), opt, groups, float(o["pretrain_clip_norm"]))
            sched.step()
        self.teacher.zero_grad(set_to_none=True)  # the run's optimiser never updates the teacher
        self.teacher.train(False)
        self.copy_teacher()
        self.pretrained.fill_(True)
        self.pretrain_samples.fill_(len(rows))

    def copy_teacher(self) -> None:
        """The student's encoders start from the teacher's."""
        for m in self.modalities:
            self.utt[m].load_state_dict(self.teacher.utt[m].state_dict())

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """Pretrains the teacher on the first call, then the default shuffled pass."""
        if not bool(self.pretrained):
            self.pretrain(data, gen)
        return super().epoch_batches(data, batch_size, gen)

    # --- stage 2: imagination -------------------------------------------------------------
    def imagine(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Student pass: ``h`` (fused encodings), ``h'`` (imagined), ``c`` (latents), logits."""
        h = torch.cat([self.utt[m](feats[m]) for m in self.modalities], dim=-1)
        imagined, latents = self.autoencoder(h)
        return {"h": h, "imagined": imagined, "logits": self.classifier(latents)}

    def logits(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.imagine(feats)["logits"]

    def known_blocks(self, present: torch.Tensor) -> torch.Tensor:
        """(B, M * embed_dim) bool: the entries of a fused vector whose modality the sample has."""
        return present.repeat_interleave(self.embed_dim, dim=1)

    @torch.no_grad()
    def imagination_targets(self, batch: dict, show: torch.Tensor) -> torch.Tensor:
        """MMIN's target ``t``: the teacher's encoding of each hidden modality, of zeros for shown (and
        absent) ones; (B, M * embed_dim). Absent blocks are computed from zeros and masked by the caller."""
        hidden = batch["present"] & ~show
        emb = self.teacher.encode(self.modality_inputs(batch, hidden))
        return torch.cat([emb[m] for m in self.modalities], dim=-1)

    def loss_terms(self, batch: dict, show: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted terms of one step (``ce``, ``forward``, ``cycle``), unweighted."""
        out = self.imagine(self.modality_inputs(batch, show))
        target = self.imagination_targets(batch, show)
        return {
            "ce": F.cross_entropy(out["logits"], batch["label"]),
            "forward": masked_mse(out["imagined"], target, self.known_blocks(batch["present"])),
            "cycle": F.mse_loss(self.autoencoder_cycle(out["imagined"])[0], out["h"].detach()),
        }

    def weights(self) -> dict[str, float]:
        o = self.options
        return {"ce": float(o["ce_weight"]), "forward": float(o["mse_weight"]), "cycle": float(o["cycle_weight"])}

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        show = simulated_keep(batch["present"], self.options["train_keep"])
        terms = self.loss_terms(batch, show)
        loss = sum(w * terms[k] for k, w in self.weights().items())
        groups = [self.encoders, *self.utt.values(), self.autoencoder, self.classifier, *self.extra_groups()]
        return clip_and_step(loss, optimizer, groups, self.clip)

    def extra_groups(self) -> list[nn.Module]:
        return [self.autoencoder_cycle]
