"""Text features: a word-level tokenizer built from the training split only."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from mla.features import MediaError

PAD, UNK = "[PAD]", "[UNK]"
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-case and split on whitespace and punctuation (runs of word characters are tokens)."""
    return _WORD.findall(text.lower())


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file; missing or undecodable files raise :class:`MediaError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"missing text file {path}")
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot read text file {path}: {exc}") from exc


@dataclass
class Tokenizer:
    """Word vocabulary: id 0 is [PAD], id 1 is [UNK], then words by descending count, ties alphabetical."""

    vocab: list[str]

    def __post_init__(self) -> None:
        if self.vocab[:2] != [PAD, UNK]:
            raise ValueError("vocabulary must start with [PAD], [UNK]")
        self._index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int) -> "Tokenizer":
        """Build from (training) texts, keeping words seen at least ``min_freq`` times."""
        counts = Counter(w for t in texts for w in tokenize(t))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *words])

    def encode(self, text: str, max_len: int) -> np.ndarray:
        """Token ids, truncated or padded with 0 to ``max_len``; int64."""
        ids = [self._index.get(w, 1) for w in tokenize(text)][:max_len]
        out = np.zeros(max_len, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {"vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["vocab"]))
