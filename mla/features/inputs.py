"""One modality of one real-dataset sample: where it comes from (``Input``) and its feature array.

Kinds of input and the array each gives (``cfg`` holds the option sections of mla/data/options.py):

| kind     | read from                                   | array                                   |
| -------- | ------------------------------------------- | --------------------------------------- |
| ``wav``    | a WAV file                                | fbank float32 ``(1, n_frames, n_mels)``   |
| ``track``  | the audio stream of a video container     | fbank float32 ``(1, n_frames, n_mels)``   |
| ``frames`` | a video, frames kept at ``fps`` per second | uint8 ``(n_frames, 3, size, size)``       |
| ``image``  | an image file                             | uint8 ``(3, size, size)``                 |
| ``face``   | the frame of a video at time ``at``, ``region`` | uint8 ``(3, size, size)``            |
| ``text``   | a string carried by a list or jsonl file  | (tokenised by the caller)                 |

:func:`extract` returns the array and whether a recorded fallback stands in for it (``face``: no face
found, the centre square used, mla/features/face.py); the caller must record every such sample.
Module-level functions only, so a process pool can run :func:`extract`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mla.features import MediaError

KINDS = ("wav", "track", "frames", "image", "face", "text")


@dataclass(frozen=True)
class Input:
    """Where one modality of one sample comes from (see the module docstring)."""

    kind: str
    path: Path | None = None
    at: float | None = None
    text: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}; known: {', '.join(KINDS)}")


class Extracted(NamedTuple):
    """The feature array of one input, and whether it is a recorded fallback (see the module docstring)."""

    array: np.ndarray
    fallback: bool = False


def _frames(path: Path, cfg: dict) -> np.ndarray:
    from mla.features.media import kept_per_second
    from mla.features.video import frame_positions, resize_rgb

    v = cfg["video"]
    kept = kept_per_second(path, v["fps"])
    picked = [resize_rgb(kept[i], v["size"]) for i in frame_positions(len(kept), v["n_frames"])]
    return np.stack(picked).transpose(0, 3, 1, 2).copy()


def _track(path: Path, cfg: dict) -> np.ndarray:
    from mla.features.audio import fbank
    from mla.features.media import audio_track

    a = cfg["audio"]
    wav = audio_track(path, a["sample_rate"])
    try:  # [C] removes the mean of the whole (C, N) waveform; Kaldi's fbank then reads channel 0
        return fbank(wav[0] - wav.mean(), a["sample_rate"], a["n_mels"], a["frame_length_ms"],
                     a["frame_shift_ms"], a["n_frames"], subtract_mean=False)
    except Exception as exc:  # e.g. a track shorter than one analysis window
        raise MediaError(f"fbank failed for the audio of {path}: {exc}") from exc


def _extract(inp: Input, cfg: dict) -> np.ndarray:
    if inp.kind == "wav":
        from mla.features.audio import audio_features

        return audio_features(inp.path, cfg["audio"])
    if inp.kind == "track":
        return _track(inp.path, cfg)
    if inp.kind == "frames":
        return _frames(inp.path, cfg)
    if inp.kind == "image":
        from mla.features.image import resize_center_crop

        return resize_center_crop(inp.path, cfg["image"]["size"])
    raise ValueError(f"input kind {inp.kind!r} has no media extractor")


def extract(inp: Input, cfg: dict) -> Extracted:
    """The feature array of one non-text input and its fallback flag; errors name the file read."""
    if inp.kind == "face":
        from mla.features.face import face_crop
        from mla.features.media import frame_at

        frame = frame_at(inp.path, inp.at)
        try:
            crop = face_crop(frame, cfg["image"]["size"], inp.region, cfg["face"]["crop"])
        except ValueError as exc:  # a frame the crop cannot use; a missing cascade is not the video's fault
            raise MediaError(f"face crop of {inp.path} at {inp.at:.3f} s: {exc}") from exc
        return Extracted(crop.array, crop.fallback)
    return Extracted(_extract(inp, cfg))
