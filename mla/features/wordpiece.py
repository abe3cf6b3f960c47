"""BERT WordPiece tokenisation in pure Python, as the released code's ``data/extract_token.py`` uses it.

[C] calls ``bert-base-uncased`` with ``add_special_tokens=False`` and pads or truncates to 256 ids
(``data/extract_token.py`` L15, L38-45): no [CLS]/[SEP], padding id 0 ([PAD]), so the padding mask is ``ids == 0``.
This module reimplements the two stages of BERT's (uncased) tokenizer:

1. basic tokenisation: drop NUL, U+FFFD and control characters, map whitespace to spaces, put spaces
   around CJK ideographs, NFC-normalise, split on whitespace, lower-case, strip accents (NFD, drop
   combining marks), split every punctuation character off as its own token;
2. WordPiece: per token, greedy longest-match-first over the vocabulary, continuation pieces prefixed
   with ``##``; a token with no segmentation (or longer than 100 characters) becomes [UNK].

Not reproduced: special-token strings typed inside the text (``"[SEP]"`` in a transcript) are
tokenised as ordinary text rather than mapped to their special ids.

The vocabulary is BERT's ``vocab.txt`` (one token per line, id = line index; 30,522 lines for
bert-base-uncased). Without it, :func:`build_vocab` builds a documented stand-in from training texts.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word


class VocabError(ValueError):
    """The vocabulary file is missing or malformed; the message names it."""


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # all non-alphanumeric ASCII, e.g. "$" and "^", which Unicode files under symbols
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text: str) -> list[str]:
    """BERT's uncased basic tokenisation (stage 1 above)."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            chars.append(" ")
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    out: list[str] = []
    for token in unicodedata.normalize("NFC", "".join(chars)).split():
        token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        piece = ""
        for ch in token:
            if _is_punctuation(ch):
                if piece:
                    out.append(piece)
                    piece = ""
                out.append(ch)
            else:
                piece += ch
        if piece:
            out.append(piece)
    return out


class WordPiece:
    """A WordPiece vocabulary with BERT's encoding; ``encode`` gives padded int64 ids."""

    def __init__(self, vocab: list[str]) -> None:
        missing = [t for t in ("[PAD]", "[UNK]") if t not in vocab]
        if missing:
            raise VocabError(f"vocabulary lacks {', '.join(missing)}")
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id = self.index["[PAD]"]
        self.unk_id = self.index["[UNK]"]

    @classmethod
    def from_file(cls, path: str | Path) -> "WordPiece":
        """Read a BERT ``vocab.txt``; a missing, non-UTF-8 or duplicate-holding file names itself."""
        path = Path(path)
        if not path.is_file():
            raise VocabError(
                f"missing WordPiece vocabulary {path}: the released MLA code tokenises text with "
                "bert-base-uncased (its data/extract_token.py); give its vocab.txt (30,522 lines), or 'build' "
                "to build a stand-in vocabulary from the training split")
        try:
            lines = path.read_bytes().decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise VocabError(f"vocabulary {path} is not UTF-8: {exc}") from None
        if lines and lines[-1] == "":
            lines.pop()
        seen: dict[str, int] = {}
        for i, token in enumerate(lines):
            token = token.rstrip("\r")
            if token in seen:
                raise VocabError(f"{path}:{i + 1}: duplicate token {token!r} (first on line {seen[token] + 1})")
            seen[token] = i
        try:
            return cls([t.rstrip("\r") for t in lines])
        except VocabError as exc:
            raise VocabError(f"{path}: {exc}") from None

    def wordpieces(self, token: str) -> list[str]:
        """Greedy longest-match-first segmentation of one basic token."""
        if len(token) > MAX_WORD_CHARS:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(token):
            end = len(token)
            while end > start:
                piece = token[start:end] if start == 0 else "##" + token[start:end]
                if piece in self.index:
                    break
                end -= 1
            else:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Basic tokenisation then WordPiece, no special tokens added."""
        return [p for token in basic_tokenize(text) for p in self.wordpieces(token)]

    def encode(self, text: str, max_len: int) -> np.ndarray:
        """Ids truncated to ``max_len`` and right-padded with [PAD]; int64 ``(max_len,)``."""
        ids = [self.index.get(p, self.unk_id) for p in self.tokenize(text)][:max_len]
        out = np.full(max_len, self.pad_id, dtype=np.int64)
        out[: len(ids)] = ids
        return out


def build_vocab(texts: Iterable[str], size: int, min_freq: int) -> list[str]:
    """A stand-in WordPiece vocabulary built from ``texts`` (the training split), deterministic.

    Order: the five BERT special tokens (so [PAD] is id 0), then every character seen and its ``##``
    continuation (so any word segments without [UNK]), then whole words seen at least ``min_freq``
    times by descending count (ties alphabetical) until ``size`` tokens. Not BERT's vocabulary: ids do
    not match a pretrained text encoder's embeddings.
    """
    counts = Counter(t for text in texts for t in basic_tokenize(text))
    chars = sorted({c for word in counts for c in word})
    vocab = list(SPECIAL) + chars + [f"##{c}" for c in chars]
    if len(vocab) > size:
        raise VocabError(f"the training texts hold {len(chars)} distinct characters; a vocabulary of {size} "
                         "tokens cannot cover them (raise text.build_size)")
    have = set(vocab)
    words = sorted((w for w, n in counts.items() if n >= min_freq and w not in have), key=lambda w: (-counts[w], w))
    return vocab + words[: size - len(vocab)]
