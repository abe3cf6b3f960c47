"""One split's examples and the mini-batches the training loop consumes, read batch by batch.

A batch is ``dict[modality -> tensor]`` plus ``label`` (B,), ``index`` (B,) and ``present``
(B, M) bool, so one loop serves two or three modalities. Features come from the feature
store; nothing here decodes media.

A split keeps its raw feature rows where they are (the store's shard files, see
``mla/features/store.py``) and only its labels and presence mask in memory. ``batch`` reads the
rows of one batch and converts them into encoder inputs on the run's device, so memory holds a few
batches whatever the dataset's size. A split whose inputs fit in ``RESIDENT_MB`` (every built-in
one) is converted once instead and indexed per batch: converting a batch costs milliseconds, which
a small model's step does not hide. The conversion is elementwise, so both give the same bits.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Iterator

import numpy as np
import torch

from mla.resources import RESIDENT_MB, input_bytes

# uint8 pixels /255 -> encoder inputs, per channel (R, G, B): ``(p / 255 - mean) / std`` (model.inputs.pixels).
PIXEL_NORMS = {
    "centred": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),  # ours: roughly zero-mean, unit-scale
    # [C]'s test transforms (dataset/dataset.py L139, L418, L714)
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# fbank -> encoder input (model.inputs.fbank): ``standardised`` by the training split's scalar mean and
# std (ours), or ``raw``, as stored: [C] feeds the saved fbank without normalising it (dataset/dataset.py
# L117, L789-790), although it defines CAV-MAE's mean and std (L718-719).
FBANK_NORMS = ("standardised", "raw")
# Elements per chunk when reducing a whole split (audio_stats): 16 MB of float32.
STATS_CHUNK = 1 << 22


@lru_cache(maxsize=None)
def pixel_table(device: torch.device, norm: str = "centred") -> torch.Tensor:
    """(3, 256) float32 input value of every uint8 pixel value per channel, on ``device``.

    Computed on the CPU by the elementwise arithmetic (``(p / 255 - mean) / std`` in float32), so a
    pixel converted on any device through this table has the same bits as on the CPU; the rows of a
    batch travel to the device as bytes, a quarter of their float size.
    """
    if norm not in PIXEL_NORMS:
        raise ValueError(f"pixel normalisation {norm!r}: expected one of {', '.join(PIXEL_NORMS)}")
    p = torch.from_numpy(np.arange(256, dtype=np.uint8).astype(np.float32))
    mean, std = PIXEL_NORMS[norm]
    return torch.stack([(p / 255.0 - m) / s for m, s in zip(mean, std)]).to(device)


def pixels_to_inputs(b: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 pixels ``(..., 3, H, W)`` -> float inputs through ``table`` (:func:`pixel_table`)."""
    if b.dim() < 3 or b.shape[-3] != 3:
        raise ValueError(f"expected uint8 pixels of shape (..., 3, H, W), got {tuple(b.shape)}")
    channel = torch.arange(3, device=b.device, dtype=torch.int32).view(3, 1, 1) * 256
    return table.reshape(-1).index_select(0, (b.to(torch.int32) + channel).reshape(-1)).view(b.shape)


@dataclass
class SplitTensors:
    """One split: its raw feature rows, labels and presence mask; inputs converted batch by batch,
    or once for a split small enough to keep (``resident``)."""

    modalities: tuple[str, ...]
    arrays: dict[str, Any]  # modality -> (N, ...) rows: np.ndarray or store.ShardedArray (on disk)
    labels: torch.Tensor  # (N,) int64, on the run's device
    present: torch.Tensor  # (N, M) bool, on the run's device
    audio_norm: tuple[float, float] = (0.0, 1.0)  # fbank (mean, std)
    pixels: str = "centred"  # PIXEL_NORMS key
    channels_last: bool = False
    resident: dict[str, torch.Tensor] | None = None  # modality -> every row's input, on the device

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def input_bytes(self) -> int:
        """Size of every row's encoder input (float32 pixels and fbanks, int64 tokens)."""
        return sum(int(np.prod(self.arrays[m].shape, dtype=np.int64)) * input_bytes(np.dtype(self.arrays[m].dtype).name)
                   for m in self.modalities)

    def keep_resident(self) -> "SplitTensors":
        """The split with every row's input converted now, if they fit in ``RESIDENT_MB``.

        A small split (every built-in one) then costs one conversion per run and an index per
        batch, as before batches were streamed; the inputs are the same either way.
        """
        if self.resident is not None or self.input_bytes() > RESIDENT_MB * 2**20:
            return self
        every = np.arange(len(self))
        return replace(self, resident={m: self.inputs(m, every) for m in self.modalities})

    def to(self, device: torch.device, channels_last: bool = False) -> "SplitTensors":
        """The same split on ``device``: labels, mask and resident inputs moved once, streamed inputs
        put there batch by batch; with ``channels_last``, 4-D inputs (images, spectrograms) in
        channels-last memory format."""
        def move(x: torch.Tensor) -> torch.Tensor:
            if channels_last and x.dim() == 4:
                return x.to(device, memory_format=torch.channels_last)
            return x.to(device)

        resident = None if self.resident is None else {m: move(x) for m, x in self.resident.items()}
        return replace(self, labels=self.labels.to(device), present=self.present.to(device),
                       channels_last=channels_last, resident=resident)

    def inputs(self, modality: str, rows: np.ndarray) -> torch.Tensor:
        """Encoder input of ``modality`` for ``rows`` (in that order), read from the arrays and put on
        the split's device.

        uint8 frames and images -> float through :func:`pixel_table` (``pixels``); integer token ids
        -> int64; fbanks -> ``(x - mean) / std`` in float32 on the CPU. Elementwise: any rows, any
        batching, give the same values.
        """
        device = self.labels.device
        a = np.asarray(self.arrays[modality][rows])
        if a.dtype == np.uint8:  # frames, images
            x = pixels_to_inputs(torch.from_numpy(a).to(device), pixel_table(device, self.pixels))
        elif np.issubdtype(a.dtype, np.integer):  # token ids
            x = torch.from_numpy(a.astype(np.int64)).to(device)
        else:  # fbank
            mean, std = self.audio_norm
            x = ((torch.from_numpy(a.astype(np.float32)) - mean) / std).to(device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def batch(self, index: torch.Tensor, modalities: tuple[str, ...] | None = None) -> dict:
        """The examples at ``index`` (only ``modalities`` if given); absent inputs are zero."""
        rows = index.cpu().numpy() if self.resident is None else None
        index = index.to(self.labels.device)
        out: dict = {"label": self.labels[index], "index": index, "present": self.present[index]}
        for m in modalities or self.modalities:
            x = self.inputs(m, rows) if self.resident is None else self.resident[m][index]
            keep = out["present"][:, self.modalities.index(m)].view(-1, *([1] * (x.dim() - 1)))
            # where, not a product: an absent row's stored values (even NaN or inf) never reach the model
            out[m] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return out


def _pairwise_sum(read, start: int, n: int) -> np.float32:
    """float32 sum of the flat elements ``start:start + n`` that ``read(a, b)`` returns, in chunks.

    Splits the range as NumPy's pairwise summation does (halves, the first a multiple of 8) down
    to chunks NumPy sums itself, so the result has the same bits as ``np.sum`` of the whole
    array, with one chunk in memory at a time.
    """
    if n <= STATS_CHUNK:
        return np.add.reduce(read(start, start + n), dtype=np.float32)
    half = n // 2
    half -= half % 8
    return np.float32(_pairwise_sum(read, start, half) + _pairwise_sum(read, start + half, n - half))


def audio_stats(train_audio) -> tuple[float, float]:
    """Scalar mean and std of the training fbanks, used to normalise every split.

    Equal, bit for bit, to ``float(x.mean()), float(x.std() + 1e-6)`` on the whole float32
    array, computed in chunks of :data:`STATS_CHUNK` elements (``train_audio``: an array or
    store.ShardedArray of float32 rows).
    """
    row = int(np.prod(train_audio.shape[1:]))
    n = len(train_audio) * row

    def flat(a: int, b: int) -> np.ndarray:  # flat elements a:b, reading only the rows that hold them
        first = a // row
        rows = np.asarray(train_audio[first:-(-b // row)], dtype=np.float32).reshape(-1)
        return rows[a - first * row:b - first * row]

    mean = np.float32(np.float64(_pairwise_sum(flat, 0, n)) / n)
    var = np.float32(np.float64(_pairwise_sum(lambda a, b: np.square(flat(a, b) - mean), 0, n)) / n)
    return float(mean), float(np.sqrt(var) + np.float32(1e-6))


def to_tensors(arrays: dict[str, Any], labels: np.ndarray, modalities: tuple[str, ...],
               present: np.ndarray | None = None, audio_norm: tuple[float, float] | None = None,
               pixels: str = "centred") -> SplitTensors:
    """A split over its feature rows (arrays or the store's shards): converted here if it is small
    (:meth:`SplitTensors.keep_resident`), else batch by batch in :meth:`SplitTensors.batch`."""
    n = len(labels)
    if present is None:
        present = np.ones((n, len(modalities)), dtype=bool)
    if np.shape(present) != (n, len(modalities)):
        raise ValueError(f"presence mask of shape {np.shape(present)}: expected (examples, modalities) = "
                         f"{(n, len(modalities))}, one column per modality of {tuple(modalities)}")
    if pixels not in PIXEL_NORMS:
        raise ValueError(f"pixel normalisation {pixels!r}: expected one of {', '.join(PIXEL_NORMS)}")
    split = SplitTensors(tuple(modalities), {m: arrays[m] for m in modalities},
                         torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                         torch.from_numpy(np.asarray(present, dtype=bool)), audio_norm or (0.0, 1.0), pixels)
    return split.keep_resident()


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


def eval_batches(data: SplitTensors, batch_size: int, rows: torch.Tensor | None = None) -> Iterator[dict]:
    """Every example of ``rows`` (default: the whole split) once, in order; no batch is dropped."""
    rows = torch.arange(len(data)) if rows is None else rows.cpu()
    for i in range(0, len(rows), batch_size):
        yield data.batch(rows[i:i + batch_size])
