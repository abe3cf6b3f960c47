"""In-memory tensors of one split and the mini-batches the training loop consumes.

A batch is ``dict[modality -> tensor]`` plus ``label`` (B,), ``index`` (B,) and ``present``
(B, M) bool, so one loop serves two or three modalities. Features come from the feature
store; nothing here decodes media.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

# uint8 pixels -> roughly zero-mean, unit-scale inputs.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


@dataclass
class SplitTensors:
    """One split's inputs, ready for the encoders, and its presence mask."""

    modalities: tuple[str, ...]
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    present: torch.Tensor  # (N, M) bool

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device, channels_last: bool = False) -> "SplitTensors":
        """The same split with every tensor on ``device`` (moved once, not per batch); with
        ``channels_last``, 4-D inputs (images, spectrograms) in channels-last memory format."""
        def move(x: torch.Tensor) -> torch.Tensor:
            if channels_last and x.dim() == 4:
                return x.to(device, memory_format=torch.channels_last)
            return x.to(device)

        return SplitTensors(self.modalities, {m: move(x) for m, x in self.inputs.items()},
                            self.labels.to(device), self.present.to(device))

    def batch(self, index: torch.Tensor, modalities: tuple[str, ...] | None = None) -> dict:
        """The examples at ``index`` (only ``modalities`` if given); absent inputs are zero."""
        index = index.to(self.labels.device)
        out: dict = {"label": self.labels[index], "index": index, "present": self.present[index]}
        for m in modalities or self.modalities:
            x = self.inputs[m][index]
            keep = self.present[index, self.modalities.index(m)]
            out[m] = x * keep.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return out


def audio_stats(train_audio: np.ndarray) -> tuple[float, float]:
    """Scalar mean and std of the training fbanks, used to normalise every split."""
    return float(train_audio.mean()), float(train_audio.std() + 1e-6)


def to_tensors(arrays: dict[str, np.ndarray], labels: np.ndarray, modalities: tuple[str, ...],
               present: np.ndarray | None = None, audio_norm: tuple[float, float] | None = None) -> SplitTensors:
    """Convert a split's feature arrays into encoder inputs (done once per run)."""
    inputs = {}
    for m in modalities:
        a = np.asarray(arrays[m])
        if a.dtype == np.uint8:  # frames, images
            inputs[m] = (torch.from_numpy(a.astype(np.float32)) / 255.0 - PIXEL_MEAN) / PIXEL_STD
        elif np.issubdtype(a.dtype, np.integer):  # token ids
            inputs[m] = torch.from_numpy(a.astype(np.int64))
        else:  # fbank
            mean, std = audio_norm if audio_norm else (0.0, 1.0)
            inputs[m] = (torch.from_numpy(a.astype(np.float32)) - mean) / std
    n = len(labels)
    if present is None:
        present = np.ones((n, len(modalities)), dtype=bool)
    return SplitTensors(tuple(modalities), inputs, torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                        torch.from_numpy(np.asarray(present, dtype=bool)))


def shuffled_batches(data: SplitTensors, batch_size: int, gen: torch.Generator,
                     rows: torch.Tensor | None = None, modalities: tuple[str, ...] | None = None) -> Iterator[dict]:
    """One shuffled pass over ``rows`` (default: all); the last batch may be smaller.

    Every example is used: a trailing single example joins the previous batch instead of
    forming a batch of one, which BatchNorm cannot train on.
    """
    rows = torch.arange(len(data)) if rows is None else rows
    order = rows[torch.randperm(len(rows), generator=gen)]
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(order)
        yield data.batch(order[start:end], modalities)


def eval_batches(data: SplitTensors, batch_size: int) -> Iterator[dict]:
    """Every example once, in order: the whole split is scored, no batch is dropped."""
    for i in range(0, len(data), batch_size):
        yield data.batch(torch.arange(i, min(i + batch_size, len(data))))
