"""CAV-MAE's audio branch (Gong et al., ICLR 2023), as the released MLA code uses it for IEMOCAP.

What [C] takes from CAV-MAE ([C] ``models/cav_mae.py`` ``CAVMAEFT``, used by ``models/basic_model.py``
``Modal3Classifier`` L231, L261, L265): ``forward_feat(audio, None, "a")`` of the fine-tuning model, i.e.

    fbank (B, 1024 frames, 128 mel) -> (B, 1, 128, 1024) -> Conv2d(1, 768, 16, stride 16)
    -> 8 × 64 = 512 patch tokens (row-major: mel band, then time) + pos_embed_a + modality_a
    -> 11 modality-specific blocks (``blocks_a``, their ``norm1``/``norm2``)
    -> 1 shared block (``blocks_u``, run with the audio norms ``norm1_a``/``norm2_a``)
    -> ``norm_a`` -> mean over the 512 tokens -> 768.

Blocks are timm 0.4.5 ViT blocks (``attn.qkv`` with bias, ``attn.proj``, ``mlp.fc1``/``fc2``,
exact GELU, ``nn.LayerNorm`` eps 1e-5). No [CLS] token. ``pos_embed_a`` is a trainable parameter
(``CAVMAEFT``'s ``tr_pos=True``), initialised to the 2-D sin-cos table; the encoder is fine-tuned
end to end ([C] ``main.py`` L749: SGD over ``model.parameters()``). Parameter names are CAV-MAE's
(YuanGongND/cav-mae ``src/models/cav_mae.py``), restricted to the audio path: the visual branch, the
unused norms of each block (``norm1_a``/``norm1_v`` of ``blocks_a``, ``norm1``/``norm1_v`` of
``blocks_u``, ...), ``norm``, ``norm_v``, the decoder and ``mlp_head`` are not built (``mla.weights``
drops them on conversion).

Input here: our audio features (B, 1, frames, mel) or (B, frames, mel); their frame count and
mel count must be the configured ``n_frames`` / ``n_mels`` (1024 / 128 in the paper), because
``pos_embed_a`` has one row per patch.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.models.encoders import ENCODERS
from mla.models.vit import Attention, Mlp, init_vit_, sincos_2d

POOLS = ("all",)


class CAVBlock(nn.Module):
    """timm ViT block whose two LayerNorms are named ``norm1<suffix>`` / ``norm2<suffix>``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, suffix: str, ln_eps: float) -> None:
        super().__init__()
        self._norms = ("norm1" + suffix, "norm2" + suffix)
        setattr(self, self._norms[0], nn.LayerNorm(dim, eps=ln_eps))
        self.attn = Attention(dim, heads, qkv="qkv", proj="proj")
        setattr(self, self._norms[1], nn.LayerNorm(dim, eps=ln_eps))
        self.mlp = Mlp(dim, mlp_ratio * dim, "exact")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(getattr(self, self._norms[0])(x))
        return x + self.mlp(getattr(self, self._norms[1])(x))


class PatchEmbed(nn.Module):
    """``patch_embed_a.proj``: non-overlapping p × p patches of the (mel × time) image."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


@ENCODERS.register("cavmae_audio")
class CAVMAEAudio(nn.Module):
    """CAV-MAE audio encoder: fbank -> (B, out_dim). Paper size: ``out_dim`` 768, ``depth`` 11,
    ``shared_depth`` 1, ``heads`` 12, ``patch_size`` 16, ``n_frames`` 1024, ``n_mels`` 128."""

    def __init__(self, modality: str, out_dim: int, depth: int = 11, shared_depth: int = 1, heads: int = 12,
                 mlp_ratio: int = 4, patch_size: int = 16, n_frames: int = 1024, n_mels: int = 128,
                 pool: str = "all", ln_eps: float = 1e-5) -> None:
        super().__init__()
        if modality != "audio":
            raise ValueError(f"cavmae_audio encodes audio, not {modality}")
        if n_frames % patch_size or n_mels % patch_size:
            raise ValueError(f"cavmae_audio: n_frames {n_frames} and n_mels {n_mels} must be multiples of "
                             f"the patch size {patch_size}")
        if pool not in POOLS:
            raise ValueError(f"cavmae_audio: pool {pool!r}; valid: {', '.join(POOLS)}")
        self.n_frames, self.n_mels, self.dim = n_frames, n_mels, out_dim
        self.grid = (n_mels // patch_size, n_frames // patch_size)
        self.patch_embed_a = PatchEmbed(out_dim, patch_size)
        self.pos_embed_a = nn.Parameter(torch.empty(1, self.grid[0] * self.grid[1], out_dim))
        self.modality_a = nn.Parameter(torch.empty(1, 1, out_dim))
        self.blocks_a = nn.ModuleList(CAVBlock(out_dim, heads, mlp_ratio, "", ln_eps) for _ in range(depth))
        self.blocks_u = nn.ModuleList(CAVBlock(out_dim, heads, mlp_ratio, "_a", ln_eps) for _ in range(shared_depth))
        self.norm_a = nn.LayerNorm(out_dim, eps=ln_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """CAV-MAE's ``initialize_weights``: sin-cos positions, Xavier on the flattened patch kernel,
        N(0, 0.02) modality token, Xavier-uniform linears with zero bias, LayerNorm 1 / 0."""
        init_vit_(self)
        if not self.pos_embed_a.is_meta:  # shape-only modules (mla.weights) have no values to set
            with torch.no_grad():
                self.pos_embed_a.copy_(sincos_2d(self.dim, *self.grid).unsqueeze(0))
        w = self.patch_embed_a.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.modality_a, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, mel) or (B, frames, mel) -> (B, out_dim)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1:] != (1, self.n_frames, self.n_mels):
            raise ValueError(f"cavmae_audio: input {tuple(x.shape)}; expected (B, 1, {self.n_frames}, {self.n_mels})")
        tok = self.patch_embed_a(x.transpose(2, 3)) + self.pos_embed_a + self.modality_a
        for block in (*self.blocks_a, *self.blocks_u):
            tok = block(tok)
        return self.norm_a(tok).mean(1)
