"""How much of the head gradient MLA's HGM keeps, per ``hbar`` option, on fixed features.

The head-weight gradient at a step is G = Eᵀ H / B (E: B x C standard normal errors, H: the
B x s features of the step's mini-batch), the shape of a cross-entropy gradient of a linear
head. Each modality m's features are drawn from a fixed distribution, h = μ_m + z with
μ_m = |N(0, I_s)| (non-negative, like pooled ReLU features) and z ~ N(0, I_s): the encoder is
frozen, so Eq. (4)'s h̄_m is exactly μ_m, and any collapse of P comes from the h̄ estimate
alone. The steps run through ``mla.methods.mla.MLA`` itself (``start_epoch``, ``observe``,
``modify_head_gradient``, [C]'s α schedule). Retention = ||G·P||_F / ||G||_F.

    uv run --locked --extra dev python bench/hgm_retention.py            # CREMA-D scale, ~minutes
    uv run --locked --extra dev python bench/hgm_retention.py --epochs 3 --dim 64 --rounds 100

Defaults: CREMA-D's step count at batch 16 (6,698 training clips -> 419 rounds of 2 modality
steps per epoch), feature size 512, 30 epochs. Prints, per option and epoch, the mean
retention over the epoch, the last step's, and P's smallest eigenvalue and trace / s.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from mla.methods import create_method
from mla.methods.mla import MLA

HBARS = ("batch", "epoch", "running")


def simulate(hbar: str, dim: int = 512, modalities: int = 2, batch: int = 16, rounds: int = 419,
             epochs: int = 30, classes: int = 6, seed: int = 0) -> list[dict]:
    """Per-epoch diagnostics (``MLA.epoch_diagnostics``) of a fixed-feature HGM run."""
    g = torch.Generator().manual_seed(seed)
    mods = ("audio", "video", "text")[:modalities]
    encoders = nn.ModuleDict({m: nn.Identity() for m in mods})
    method: MLA = create_method("mla", encoders, n_classes=classes, feature_dim=dim, hbar=hbar)
    mu = torch.randn(modalities, dim, generator=g, dtype=torch.float64).abs()
    out = []
    for epoch in range(1, epochs + 1):
        method.start_epoch(rounds)
        for _ in range(rounds * modalities):
            mi = int(method.step) % modalities
            feats = mu[mi] + torch.randn(batch, dim, generator=g, dtype=torch.float64)
            if hbar != "batch":
                method.observe(mi, feats)
            if int(method.step) > 0:
                errors = torch.randn(batch, classes, generator=g, dtype=torch.float64)
                method.head.weight.grad = (errors.T @ feats / batch).float()
                method.modify_head_gradient(mi, feats)
            method.step += 1
        out.append({"epoch": epoch, **method.epoch_diagnostics()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--modalities", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=419, help="rounds (batches per modality) per epoch")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hbar", nargs="+", default=list(HBARS), choices=HBARS)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"dim {a.dim}, {a.modalities} modalities, batch {a.batch}, {a.rounds} rounds/epoch, seed {a.seed}")
    print("hbar     epoch  retention_mean  retention_last  P_eig_min  P_trace/s")
    for hbar in a.hbar:
        start = time.perf_counter()
        for r in simulate(hbar, a.dim, a.modalities, a.batch, a.rounds, a.epochs, seed=a.seed):
            print(f"{hbar:8s} {r['epoch']:5d}  {r['hgm_retention_mean']:14.4g}  {r['hgm_retention_last']:14.4g}"
                  f"  {r['hgm_P_eig_min']:9.3g}  {r['hgm_P_trace'] / a.dim:9.4g}")
        print(f"# {hbar}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
