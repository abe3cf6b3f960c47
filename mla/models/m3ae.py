"""M3AE encoders for images and text (Geng et al. 2022), as the released MLA code uses them.

What [C] takes from M3AE ([C] ``models/m3ae.py`` and ``models/basic_model.py`` L164-194, L232-267):
one whole M3AE-**base** *encoder* per modality (width 768, 12 pre-LN blocks, 12 heads, MLP ratio 4;
the decoder is never built), run on ONE modality:

- image: [CLS] + 256 patches of 16×16×3 (a 256×256 image), each patch vector flattened in
  (channel, row, column) order (``einops 'b c (h p1) (w p2) -> b (h w) (c p1 p2)'``), through
  ``image_embedding`` Linear(768 → 768), plus the 2-D sin-cos position and the image type embedding;
- text: [CLS] + token embeddings (BERT vocabulary, 30522) plus the 1-D sin-cos position and the text
  type embedding; [PAD] keys (id 0) are masked in attention. A text that is all [PAD] (a missing
  text, zeroed as [C] zeroes it together with its padding mask) attends to every position, as in [C];
- features: the mean over ALL output tokens, CLS and [PAD] positions included (``pool: all``;
  [C] ``models/basic_model.py`` L193-194, L265-267);
  ``pool: valid`` averages CLS and real tokens only;
- fine-tuned end to end: [C]'s SGD optimiser takes every parameter (``main.py`` L749).

Parameter names are those of [C]'s PyTorch port (so its converted ``m3ae_base.pth`` and the
released MLA checkpoints map one to one): ``cls_token``, ``image_embedding``, ``text_embedding``,
``encoder_{image,text}_type_embedding``, ``encoder.blocks.<i>.{layer_norm1, attention.qkv_linear,
attention.fc, layer_norm2, transformer_mlp.fc1, transformer_mlp.fc2}``, ``encoder.layer_norm``.
The Flax names of the public M3AE (young-geng/m3ae_public ``m3ae/model.py``) and their mapping are
in ``mla.weights.convert``.

Two numerical details differ between the JAX model M3AE was pre-trained with and [C]'s port; both
are options, defaulting to [C]: ``gelu`` (Flax ``nn.gelu`` is the tanh approximation; [C] uses the
exact ``F.gelu``) and ``ln_eps`` (Flax LayerNorm 1e-6; [C]'s ``nn.LayerNorm`` 1e-5).
From scratch (no ``weights``), parameters follow M3AE's Flax initialisation.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.models.encoders import ENCODERS
from mla.models.vit import Attention, Mlp, init_vit_, pool_tokens, sincos_2d, sincos_seq

POOLS = ("all", "valid")


class M3AEBlock(nn.Module):
    """Pre-LN block: x + attn(LN1(x)); x + mlp(LN2(x)) ([C] ``Block``; Flax ``Block_<i>``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, gelu: str, ln_eps: float) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attention = Attention(dim, heads, qkv="qkv_linear", proj="fc")
        self.layer_norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.transformer_mlp = Mlp(dim, mlp_ratio * dim, gelu)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.layer_norm1(x), keep)
        return x + self.transformer_mlp(self.layer_norm2(x))


class M3AETransformer(nn.Module):
    """``depth`` blocks and a final LayerNorm ([C] ``Transformer``)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: int, gelu: str, ln_eps: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(M3AEBlock(dim, heads, mlp_ratio, gelu, ln_eps) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(dim, eps=ln_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, keep)
        return self.layer_norm(x)


@ENCODERS.register("m3ae")
class M3AEEncoder(nn.Module):
    """M3AE encoder for ``image`` ((B, 3, H, W) floats) or ``text`` ((B, L) int64 ids, 0 = [PAD]).

    Full size (paper): ``out_dim`` 768, ``depth`` 12, ``heads`` 12, ``patch_size`` 16,
    ``vocab_size`` 30522. ``max_len`` is accepted for the text pipeline and unused (positions are
    sin-cos, so any length works).
    """

    def __init__(self, modality: str, out_dim: int, depth: int = 12, heads: int = 12, mlp_ratio: int = 4,
                 patch_size: int = 16, vocab_size: int = 30522, max_len: int | None = None, pool: str = "all",
                 gelu: str = "exact", ln_eps: float = 1e-5) -> None:
        super().__init__()
        if modality not in ("image", "text"):
            raise ValueError(f"m3ae encodes image or text, not {modality}")
        if pool not in POOLS:
            raise ValueError(f"m3ae for {modality}: pool {pool!r}; valid: {', '.join(POOLS)}")
        self.modality, self.dim, self.patch_size, self.pool = modality, out_dim, patch_size, pool
        self.cls_token = nn.Parameter(torch.empty(1, 1, out_dim))
        if modality == "image":
            self.image_embedding = nn.Linear(3 * patch_size * patch_size, out_dim)
            self.encoder_image_type_embedding = nn.Parameter(torch.empty(1, 1, out_dim))
            # An M3AE checkpoint holds both modalities' input layers; these belong to the other one.
            self.foreign_weights = ("text_embedding.weight", "encoder_text_type_embedding")
        else:
            self.text_embedding = nn.Embedding(vocab_size, out_dim)
            self.encoder_text_type_embedding = nn.Parameter(torch.empty(1, 1, out_dim))
            self.foreign_weights = ("image_embedding.weight", "image_embedding.bias", "encoder_image_type_embedding")
        self.encoder = M3AETransformer(out_dim, depth, heads, mlp_ratio, gelu, ln_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """M3AE's Flax init: Xavier-uniform dense kernels, N(0, 1) text embedding, N(0, 0.02) tokens."""
        init_vit_(self)
        for p in self.parameters(recurse=False):
            nn.init.normal_(p, std=0.02)  # cls_token, type embedding
        if self.modality == "text":
            nn.init.normal_(self.text_embedding.weight, std=1.0)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, (H/p)(W/p), C·p·p), patch vectors in (c, p1, p2) order as in [C]."""
        b, c, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"m3ae image: size {h}x{w} is not a multiple of the patch size {p}")
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input -> (B, 1 + N, D) embedded sequence with [CLS] first, and the key mask (or None)."""
        if self.modality == "image":
            h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
            seq = self.image_embedding(self.patchify(x))
            seq = seq + sincos_2d(self.dim, h, w).to(seq) + self.encoder_image_type_embedding
            keep = None
        else:
            seq = self.text_embedding(x)
            seq = seq + sincos_seq(self.dim, x.shape[1]).to(seq) + self.encoder_text_type_embedding
            real = x != 0
            real = real | ~real.any(dim=1, keepdim=True)  # an all-[PAD] text attends to everything ([C])
            keep = torch.cat([torch.ones_like(real[:, :1]), real], dim=1)
        cls = self.cls_token.expand(seq.shape[0], -1, -1).to(seq.dtype)
        return torch.cat([cls, seq], dim=1), keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) or ids (B, L) -> (B, out_dim)."""
        seq, keep = self.tokens(x)
        return pool_tokens(self.encoder(seq, keep), self.pool, keep)
