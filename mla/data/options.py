"""Preprocessing options of the real datasets: defaults that follow the released code, and their check.

Config: ``prepare.<dataset>`` in the experiment config (every key optional), e.g.::

    prepare:
      food101: {text: {vocab: data/bert-base-uncased/vocab.txt}, workers: 4}
      ks: {allow_missing: data/raw/ks_unavailable.txt}

| key | default | provenance ([C]: the released MLA code at commit ab6c184, lines below the table) |
| --- | --- | --- |
| audio.sample_rate | 16000 | CREMA-D/IEMOCAP WAVs are 16 kHz; ``mp4_to_wav.py`` converts to 16 kHz (a) |
| audio.n_mels, n_frames | 128, 1024 | ``extract_fbank.py``: 128 bins, zero-padded or cut to 1024 frames (b) |
| audio.frame_length_ms, frame_shift_ms | 25, 10 | Kaldi's default window; 10 ms shift (b) |
| video.fps, n_frames | 1, 3 | first frame of every second (c); frames 0, n//3, 2(n//3) (d) |
| video.size | 224 | test transform ``Resize((224, 224))`` (d) |
| image.size | 256 | ``Resize(256) + CenterCrop(256)`` (e); IEMOCAP faces 256 x 256 (f) |
| face.crop, face.region | haar, speaker | [C]'s cropper is not released: OpenCV's Haar cascade, centre square where no face is found (listed), or ``center`` for the centre square always (mla/features/face.py); the speaker's half of the frame (mla/data/iemocap.py) |
| text.vocab | none: required | bert-base-uncased ``vocab.txt`` (g); ``build``: a stand-in from the training split |
| text.vocab_sha256 | none | optional: the vocabulary file's sha256; another file is an error (bert-base-uncased publishes none) |
| text.max_len | 256 | padded or truncated to 256 (g) |
| text.build_size, min_freq | 30522, 1 | only for ``vocab: build``; 30,522 = M3AE's text vocabulary (h) |
| allow_missing (ks) | none | a file of clip ids excluded as unavailable (no other dataset may miss files) |
| shard_size | 256 | samples per shard file |
| workers | 1 | decoding processes; the output does not depend on it |
| verify_lists | true | split lists must match sources.yaml (sha256, records) and the class count the catalog |

Lines in [C]: (a) ``data/mp4_to_wav.py`` L17; (b) ``data/extract_fbank.py`` L35-52; (c)
``data/video_preprocessing.py`` L30-46; (d) ``dataset/dataset.py`` L136-147; (e) ``dataset/dataset.py``
L413-420, L709-716; (f) ``data/preprocess_iemo.py`` L152; (g) ``data/extract_token.py`` L15, L38-45;
(h) ``models/basic_model.py`` L164-165, L232-233.
"""
from __future__ import annotations

import copy
from typing import Any

from mla.features.face import CROPS, REGIONS

COMMON: dict[str, Any] = {"shard_size": 256, "workers": 1, "verify_lists": True}
SECTIONS: dict[str, dict[str, Any]] = {
    "audio": {"sample_rate": 16000, "n_mels": 128, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "n_frames": 1024},
    "video": {"fps": 1, "n_frames": 3, "size": 224},
    "image": {"size": 256},
    "face": {"crop": "haar", "region": "speaker"},
    "text": {"vocab": None, "vocab_sha256": None, "max_len": 256, "build_size": 30522, "min_freq": 1},
}
_FLOATS = {"frame_length_ms", "frame_shift_ms"}
_CHOICES = {"crop": CROPS, "region": (*REGIONS, "speaker")}
_PATHS = {"vocab", "allow_missing"}  # a path (or, for vocab, "build") or null
_BOOLS = {"verify_lists"}
_SHA256 = {"vocab_sha256"}  # 64 lowercase hex digits or null
# keys that change what is checked or how fast, never the output bytes: kept out of the manifest
NOT_RECORDED = ("workers", "verify_lists")


def _check_value(name: str, key: str, value: Any) -> Any:
    if key in _PATHS:
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"config key {name}: expected a path or null, got {value!r}")
        return value
    if key in _SHA256:
        if value is not None and not (isinstance(value, str) and len(value) == 64
                                      and all(c in "0123456789abcdef" for c in value)):
            raise ValueError(f"config key {name}: expected 64 lowercase hex digits or null, got {value!r}")
        return value
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise ValueError(f"config key {name}: expected true or false, got {value!r}")
        return value
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ValueError(f"config key {name}: expected one of {', '.join(_CHOICES[key])}, got {value!r}")
        return value
    floating = key in _FLOATS
    ok = isinstance(value, (int, float)) if floating else isinstance(value, int)
    if isinstance(value, bool) or not ok or value <= 0:
        raise ValueError(f"config key {name}: expected a positive {'number' if floating else 'integer'}, got {value!r}")
    return float(value) if floating else int(value)


def resolve_options(dataset: str, user: dict | None, sections: tuple[str, ...], extra: dict[str, Any]) -> dict:
    """Defaults for ``sections`` (plus ``extra`` top-level keys) overridden by ``user``; unknown keys,
    wrong types and sections the dataset does not use raise ``ValueError`` naming ``prepare.<dataset>.<key>``."""
    user = {} if user is None else user
    prefix = f"prepare.{dataset}"
    if not isinstance(user, dict):
        raise ValueError(f"config key {prefix}: expected a mapping, got {type(user).__name__}")
    out: dict[str, Any] = {**copy.deepcopy(COMMON), **copy.deepcopy(extra)}
    out.update({s: copy.deepcopy(SECTIONS[s]) for s in sections})
    for key in sorted(user, key=str):
        name = f"{prefix}.{key}"
        if key not in out:
            raise ValueError(f"unknown config key {name} (known: {', '.join(sorted(out))})")
        if key in SECTIONS:
            sub = user[key]
            if not isinstance(sub, dict):
                raise ValueError(f"config key {name}: expected a mapping, got {sub!r}")
            for k in sorted(sub, key=str):
                if k not in out[key]:
                    raise ValueError(f"unknown config key {name}.{k} (known: {', '.join(sorted(out[key]))})")
                out[key][k] = _check_value(f"{name}.{k}", k, sub[k])
        else:
            out[key] = _check_value(name, key, user[key])
    return out
