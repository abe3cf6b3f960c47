"""Encoders per modality, built by name from the ``ENCODERS`` registry.

Every encoder maps its modality's batch to features of size ``out_dim`` (the paper's s),
so that one linear head can be shared by all modalities.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.registry import Registry

ENCODERS = Registry("encoder")


def create_encoder(modality: str, out_dim: int, spec: dict) -> nn.Module:
    """Build the encoder ``spec["name"]`` for ``modality`` with output size ``out_dim``.

    ``spec["weights"]``: a state dict written by ``python -m mla convert-weights``, loaded with
    ``torch.load(weights_only=True)``; every parameter must be there with its shape (errors name
    the file and the parameter). ``spec["weights_prefix"]`` selects one encoder of a method's
    state dict (e.g. ``encoders.image.``). Without ``weights`` the encoder starts from scratch.
    """
    spec = dict(spec)
    weights, prefix = spec.pop("weights", None), spec.pop("weights_prefix", "")
    encoder = ENCODERS.create(spec.pop("name"), modality=modality, out_dim=out_dim, **spec)
    if weights is not None:
        from mla.weights.load import load_encoder_weights

        load_encoder_weights(encoder, weights, prefix)
    return encoder


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@ENCODERS.register("resnet18")
class ResNet18(nn.Module):
    """ResNet-18 topology (BasicBlock x [2, 2, 2, 2]), scaled by ``width``.

    As in the released code's backbone (OGM-GE's ResNet-18), spectrograms enter as one
    channel and video as frames: (B, T, 3, H, W) runs as B*T images whose maps are averaged
    over time and space. The last stage has ``out_dim`` channels (512 in the paper, width 64).
    ``stem="imagenet"`` is ResNet-18's own stem (7x7/2 convolution + 3x3/2 max-pooling, as in
    [C]); ``stem="small"`` is a 3x3/1 convolution for tiny inputs.
    """

    def __init__(self, modality: str, out_dim: int, width: int = 64, stem: str = "imagenet",
                 layers: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if out_dim != 8 * width:
            raise ValueError(f"resnet18 for {modality}: out_dim {out_dim} must be 8 x width ({8 * width})")
        self.in_channels = 1 if modality == "audio" else 3
        if stem not in ("imagenet", "small"):
            raise ValueError(f"resnet18 for {modality}: stem {stem!r}; valid: imagenet, small")
        big = stem == "imagenet"
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, width, 7 if big else 3, 2 if big else 1, 3 if big else 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            *([nn.MaxPool2d(3, 2, 1)] if big else []),
        )
        blocks, c_in = [], width
        for i, n in enumerate(layers):
            c_out = width * 2**i
            for j in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, T, C, H, W) -> (B, out_dim)."""
        frames = x.dim() == 5
        if frames:
            b, t = x.shape[:2]
            x = x.flatten(0, 1)
        maps = self.blocks(self.stem(x))
        if frames:
            maps = maps.view(b, t, *maps.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
        return maps.flatten(2).mean(-1)


@ENCODERS.register("text_transformer")
class TextTransformer(nn.Module):
    """A small transformer encoder over token ids; features are the mean over real tokens.

    Token id 0 is padding. A row that is all padding (a missing text, zeroed as the released
    code does) attends to every position instead of producing NaNs.
    """

    def __init__(self, modality: str, out_dim: int, vocab_size: int = 1000, max_len: int = 64,
                 layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, out_dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, out_dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(out_dim, heads, 2 * out_dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 -> (B, out_dim)."""
        pad = ids == 0
        pad = pad & ~pad.all(dim=1, keepdim=True)
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1)


# The paper's pre-trained transformer encoders register themselves on import.
from mla.models import cavmae, m3ae  # noqa: E402,F401
