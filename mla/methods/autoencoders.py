"""Shared pieces of the autoencoder baselines of Table 2 (``ae``, ``cra``, ``mmin``, ``if_mmin``).

Networks, as GCNet's port of MMIN builds them (github.com/zeroQiaoba/GCNet, commit 8cce4a0,
``baseline-mmin/models/networks/``):

- :func:`fc_net`: ``FcClassifier`` (``classifier.py`` L77-109): ``[Linear, ReLU, Dropout]`` per
  hidden layer, then a linear output; used as utterance-level encoder, decoder and classifier.
- :class:`SimpleAE`: ``SimpleFcAE`` (``autoencoder.py`` L268-320) with dropout 0 and no batch
  norm, as the AE baseline builds it: LeakyReLU encoder layers, LeakyReLU decoder layers and a
  final ReLU.
- :class:`ResidualAE`: ``ResidualAE`` (``autoencoder.py`` L82-148), the cascade of residual
  autoencoders of CRA (Tran et al., CVPR 2017, §3) and MMIN: block k maps ``z_{k-1}`` to a
  residual ``r_k = D_k(E_k(z_{k-1}))``, ``z_k = z_{k-1} + r_k`` (``z_0`` = the input), the output
  is ``T(z_K)`` with ``T = Linear-ReLU-Linear`` (``transition``), and the latents ``E_k(z_{k-1})``
  are concatenated. :meth:`ResidualAE.conditioned` is IF-MMIN's variant (IF-MMIN
  ``models/networks/autoencoder_2.py`` L133-145): every block reads the previous block's output
  plus the invariant feature ``h``, and the output is ``T`` of the last block's output.

Losses: :func:`hidden_reconstruction_loss` (GCNet's AE/CRA term), :func:`masked_mse` (MMIN's
MSE restricted to entries whose target is known) and :func:`cmd` (central moment discrepancy,
Zellinger et al., ICLR 2017, as IF-MMIN computes it).

Missing modalities. A batch's absent modality has no feature: its row may hold anything (zeros
from the loader, NaN in the tests) and is never read. :class:`ImputationMethod` replaces it by
zeros with ``torch.where`` (a product with the mask would let NaN through) *before* any network
sees it, which is the input GCNet and MMIN feed for a missing modality (``A_miss = A * mask``).
Reconstruction and imagination targets exist only for modalities the sample has; to get such
targets the methods hide some present modalities during training (:func:`simulated_keep`), as
MMIN trains every sample under a random missing condition.
"""
from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from mla.methods.base import Method
from mla.methods.option_checks import (check_choice, check_count, check_fraction, check_layers,
                                      check_positive)

KEEP_RULES = ("proper", "any")


# --- networks -------------------------------------------------------------------------------
def fc_net(in_dim: int, layers: tuple[int, ...], out_dim: int, dropout: float) -> nn.Sequential:
    """GCNet's ``FcClassifier``: ``[Linear, ReLU, Dropout] * len(layers)`` then ``Linear(layers[-1], out_dim)``."""
    mods: list[nn.Module] = []
    for width in layers:
        # Dropout(0) is the identity; kept so that state dicts do not depend on the rate
        mods += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    mods.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*mods)


class SimpleAE(nn.Module):
    """``SimpleFcAE(layers, in_dim, dropout=0, use_bn=False)``: x (B, d) -> (reconstruction (B, d), latent)."""

    def __init__(self, in_dim: int, layers: tuple[int, ...]) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        d = in_dim
        for width in layers:
            enc += [nn.Linear(d, width), nn.LeakyReLU()]
            d = width
        dec: list[nn.Module] = []
        widths = list(reversed(layers)) + [in_dim]
        for i in range(len(widths) - 1):  # the last decoder layer ends in ReLU, the others in LeakyReLU
            dec += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU() if i == len(widths) - 2 else nn.LeakyReLU()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(x)
        return self.decoder(latent), latent


class ResidualBlock(nn.Module):
    """One autoencoder of the cascade: encoder ``d -> layers`` (LeakyReLU between, none after the last),
    decoder ``layers reversed -> d`` (ReLU between, linear output)."""

    def __init__(self, in_dim: int, layers: tuple[int, ...]) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        d = in_dim
        for width in layers:
            enc += [nn.Linear(d, width), nn.LeakyReLU()]
            d = width
        dec: list[nn.Module] = []
        widths = list(reversed(layers)) + [in_dim]
        for i in range(len(widths) - 2):
            dec += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
        dec.append(nn.Linear(widths[-2], widths[-1]))
        self.encoder, self.decoder = nn.Sequential(*enc[:-1]), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (decoded (B, d), latent (B, layers[-1]))."""
        latent = self.encoder(x)
        return self.decoder(latent), latent


class ResidualAE(nn.Module):
    """The residual cascade of ``n_blocks`` :class:`ResidualBlock` plus the ``transition`` network."""

    def __init__(self, in_dim: int, layers: tuple[int, ...], n_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResidualBlock(in_dim, layers) for _ in range(n_blocks)])
        self.transition = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, in_dim))

    def cascade(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``z_K = x + sum_k r_k`` with ``r_k = D_k(E_k(z_{k-1}))``; returns (z_K, residuals, latents)."""
        z, residuals, latents = x, [], []
        for block in self.blocks:
            r, latent = block(z)
            z = z + r
            residuals.append(r)
            latents.append(latent)
        return z, residuals, latents

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (output ``T(z_K)`` (B, d), concatenated latents (B, n_blocks * layers[-1]))."""
        z, _, latents = self.cascade(x)
        return self.transition(z), torch.cat(latents, dim=-1)

    def conditioned(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """IF-MMIN's imagination: block 1 reads ``x + h``, block k reads ``y_{k-1} + h`` (``y`` = a block's
        decoded output, no running sum); output ``T(y_K)`` and the concatenated latents."""
        y, latents = x, []
        for block in self.blocks:
            y, latent = block(y + h)
            latents.append(latent)
        return self.transition(y), torch.cat(latents, dim=-1)


# --- losses ---------------------------------------------------------------------------------
def hidden_reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """GCNet's AE/CRA term for one modality: ``sum_b hidden_b * ||recon_b - target_b||^2 / d``.

    ``recon``, ``target`` (B, d); ``hidden`` (B,) bool: the rows whose input was hidden and whose
    target is known. Summed over the batch, not averaged (GCNet ``mmin_AE_model.py`` L135-140).
    Rows outside ``hidden`` are never read (their target may be NaN).
    """
    sq = torch.where(hidden.unsqueeze(1), recon - target, torch.zeros_like(recon)).pow(2)
    return sq.sum() / recon.shape[1]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``known`` (broadcast to ``pred``) is True.

    With every entry known it equals ``nn.MSELoss()(pred, target)`` (MMIN's imagination loss); 0 when
    nothing is known. Unknown targets are never read.
    """
    known = known.expand_as(pred)
    diff = torch.where(known, pred - target, torch.zeros_like(pred))
    return diff.pow(2).sum() / known.sum().clamp(min=1)


def cmd(x1: torch.Tensor, x2: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Central moment discrepancy of two samples (rows), orders 1..k (Zellinger et al., ICLR 2017).

    ``||E x1 - E x2||_2 + sum_{j=2..k} ||c_j(x1) - c_j(x2)||_2`` with ``c_j`` the per-dimension j-th
    central moment; without Zellinger's 1/|b-a|^j interval factors, as IF-MMIN's ``CMD``
    (``models/utils/functions.py`` L76-105) and MISA compute it. The norm's gradient at 0 is taken
    as 0 (``vector_norm``), so identical samples give a zero loss and zero gradient.
    """
    m1, m2 = x1.mean(0), x2.mean(0)
    out = torch.linalg.vector_norm(m1 - m2)
    c1, c2 = x1 - m1, x2 - m2
    for j in range(2, k + 1):
        out = out + torch.linalg.vector_norm(c1.pow(j).mean(0) - c2.pow(j).mean(0))
    return out


# --- missing modalities ---------------------------------------------------------------------
def simulated_keep(present: torch.Tensor, rule: str) -> torch.Tensor:
    """Which present modalities a training step shows, (B, M) bool, drawn from torch's RNG.

    Per sample, a uniformly drawn non-empty subset of its present modalities: ``proper`` excludes
    the whole present set (MMIN's training conditions, every non-empty proper subset of the
    modalities, restricted to the ones the sample has); ``any`` includes it. A sample with no such
    subset (one present modality under ``proper``, or none) keeps what it has.
    """
    if rule not in KEEP_RULES:
        raise ValueError(f"simulated missingness {rule!r}: expected one of {', '.join(KEEP_RULES)} (option train_keep)")
    b, m = present.shape
    subsets = torch.tensor([[i in c for i in range(m)] for r in range(1, m + 1) for c in combinations(range(m), r)],
                           device=present.device)  # (S, M), every non-empty subset
    inside = ~(subsets.unsqueeze(0) & ~present.unsqueeze(1)).any(-1)  # (B, S): subset within present
    if rule == "proper":
        inside &= (subsets.unsqueeze(0) != present.unsqueeze(1)).any(-1)
    score = torch.rand(b, len(subsets), device=present.device).masked_fill(~inside, -1.0)
    keep = subsets[score.argmax(1)]
    return torch.where(inside.any(1, keepdim=True), keep, present)


def clip_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, groups: list[nn.Module],
                  max_norm: float) -> float:
    """Zero gradients, backpropagate, clip each module group's gradient norm to ``max_norm`` separately
    (the sources clip every sub-network on its own), step; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for g in groups:
        params = [p for p in g.parameters() if p.grad is not None]
        if params:  # identity encoders have none
            torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    return float(loss.detach())


class ImputationMethod(Method):
    """Base of the four: zero-filled inputs, per-modality predictions, simulated missingness.

    Subclasses implement :meth:`logits` (features of the shown modalities -> class logits).
    """

    def modality_inputs(self, batch: dict, show: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each modality's encoder output of its input where ``show`` (B, M) is True, of zeros elsewhere.

        Absent rows are replaced before the encoder, so nothing of them reaches any network.
        """
        out = {}
        for i, m in enumerate(self.modalities):
            x = batch[m]
            keep = show[:, i].view(-1, *([1] * (x.dim() - 1)))
            out[m] = self.encoders[m](torch.where(keep, x, torch.zeros_like(x)))
        return out

    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        """Encoder features of the present inputs (absent ones: the encoder's response to zeros)."""
        return self.modality_inputs(batch, batch["present"])

    def logits(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class logits (B, C) from the shown modalities' features."""
        raise NotImplementedError

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """``multi``: every present modality shown; modality m: only m shown (if the sample has it),
        the method's own treatment of missing modalities standing in for deactivation."""
        present = batch["present"]
        out = {"multi": self.logits(self.modality_inputs(batch, present))}
        for i, m in enumerate(self.modalities if self.score_modalities else ()):
            only = torch.zeros_like(present)
            only[:, i] = present[:, i]
            out[m] = self.logits(self.modality_inputs(batch, only))
        return out


class ReconstructionMethod(ImputationMethod):
    """GCNet's AE and CRA baselines (``mmin_AE_model.py``, ``mmin_CRA_model.py``): utterance-level
    encoders, an autoencoder over their concatenation, per-modality decoders back to the input
    features, and a classifier on the autoencoder's output.

    Loss: ``ce_weight * CE + mse_weight * sum_m hidden_reconstruction_loss(decoder_m(AE(h)), x_m, hidden_m)``,
    ``hidden_m`` = the samples whose modality m is present but hidden in this step (GCNet: the
    masked modalities, whose features its loader still has; here the simulated ones, since an absent
    modality has no feature to reconstruct). Subclasses set ``self.autoencoder`` (input and output
    of size ``M * embed_dim``; returns (output, latent)).
    """

    name = "reconstruction"

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        o = self.options
        check_choice(self.name, "train_keep", o["train_keep"], KEEP_RULES)
        for key in ("ce_weight", "mse_weight"):
            check_positive(self.name, key, o[key], zero_ok=True)
        self.clip = check_positive(self.name, "clip_norm", o["clip_norm"])
        drop = check_fraction(self.name, "dropout", o["dropout"])
        embed = check_count(self.name, "embed_dim", o["embed_dim"])
        cls = check_layers(self.name, "cls_layers", o["cls_layers"])
        self.fused_dim = embed * len(self.modalities)
        self.utt = nn.ModuleDict({m: fc_net(feature_dim, cls, embed, drop) for m in self.modalities})
        self.decoders = nn.ModuleDict({m: fc_net(self.fused_dim, cls, feature_dim, drop) for m in self.modalities})
        self.classifier = fc_net(self.fused_dim, cls, n_classes, drop)
        self.autoencoder: nn.Module

    def reconstruct(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder features of the shown modalities -> the autoencoder's output (B, M * embed_dim)."""
        fused = torch.cat([self.utt[m](feats[m]) for m in self.modalities], dim=-1)
        return self.autoencoder(fused)[0]

    def logits(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.reconstruct(feats))

    def losses(self, batch: dict, show: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy, summed reconstruction term) of one batch with ``show`` the modalities fed."""
        present = batch["present"]
        recon = self.reconstruct(self.modality_inputs(batch, show))
        ce = nn.functional.cross_entropy(self.classifier(recon), batch["label"])
        full = self.modality_inputs(batch, present)  # targets: the true features, read only where hidden
        hidden = present & ~show
        rec = sum(hidden_reconstruction_loss(self.decoders[m](recon), full[m].detach(), hidden[:, i])
                  for i, m in enumerate(self.modalities))
        return ce, rec

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        show = simulated_keep(batch["present"], self.options["train_keep"])
        ce, rec = self.losses(batch, show)
        loss = float(self.options["ce_weight"]) * ce + float(self.options["mse_weight"]) * rec
        groups = [self.encoders, *self.utt.values(), *self.decoders.values(), self.autoencoder, self.classifier]
        return clip_and_step(loss, optimizer, groups, self.clip)
