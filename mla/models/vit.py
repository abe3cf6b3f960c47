"""Pieces shared by the paper's transformer encoders (``m3ae``, ``cavmae_audio``).

Both are pre-LN ViT encoders (MAE lineage): fixed sin-cos positions, multi-head self-attention
through one fused qkv projection, a two-layer GELU MLP. Only the attribute names differ between
the two public code bases, so the building blocks take them as arguments: a module's
``state_dict`` then carries exactly the names of the public checkpoints (see ``mla.weights``).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D sin-cos table: (M,) positions -> (M, dim), [sin(p·ω) | cos(p·ω)], ω_i = 10000^(-2i/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2))
    out = positions.to(torch.float64).reshape(-1, 1) * omega
    return torch.cat([out.sin(), out.cos()], dim=1).float()


@lru_cache(maxsize=16)
def sincos_2d(dim: int, rows: int, cols: int) -> torch.Tensor:
    """MAE's 2-D table for a row-major grid (token k = r·cols + c) -> (rows·cols, dim).

    The first half encodes the column, the second the row: MAE's ``get_2d_sincos_pos_embed``
    builds ``np.meshgrid(grid_w, grid_h)`` ("w goes first"), as M3AE and CAV-MAE copy it.
    """
    # Explicit CPU tensors: the cached table must not follow an ambient ``torch.device`` context.
    r, c = torch.meshgrid(torch.arange(rows, device="cpu"), torch.arange(cols, device="cpu"), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, c.flatten()), sincos_1d(dim // 2, r.flatten())], dim=1)


@lru_cache(maxsize=16)
def sincos_seq(dim: int, length: int) -> torch.Tensor:
    """1-D table for positions 0..length-1 -> (length, dim) (M3AE's text positions)."""
    return sincos_1d(dim, torch.arange(length, device="cpu"))


class Attention(nn.Module):
    """Multi-head self-attention: fused qkv projection (q | k | v, each heads × head_dim), softmax
    scaled by head_dim^-1/2, output projection. ``qkv`` / ``proj`` name the two linear layers."""

    def __init__(self, dim: int, heads: int, qkv: str = "qkv", proj: str = "proj") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self._names = heads, (qkv, proj)
        setattr(self, qkv, nn.Linear(dim, 3 * dim))
        setattr(self, proj, nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); ``keep`` (B, N) bool: False keys are masked out."""
        b, n, d = x.shape
        qkv = getattr(self, self._names[0])(x).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return getattr(self, self._names[1])(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> GELU (exact, or the tanh approximation of JAX's default) -> fc2."""

    def __init__(self, dim: int, hidden: int, gelu: str = "exact") -> None:
        super().__init__()
        if gelu not in ("exact", "tanh"):
            raise ValueError(f"gelu {gelu!r}; valid: exact, tanh")
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self._approximate = "none" if gelu == "exact" else "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self._approximate))


def init_vit_(module: nn.Module) -> None:
    """MAE / Flax initialisation: Xavier-uniform linear weights, zero biases, LayerNorm 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def pool_tokens(x: torch.Tensor, pool: str, keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, D) -> (B, D): ``all`` = mean over every token ([C] ``models/basic_model.py`` L193-194);
    ``valid`` = mean over kept tokens."""
    if pool == "all" or keep is None:
        return x.mean(1)
    w = keep.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1)
