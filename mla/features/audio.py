"""Audio features: Kaldi-compatible log-mel filterbank, as in the released MLA ``data/extract_fbank.py``."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from mla.features import MediaError


def read_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file with soundfile as float32 in [-1, 1]; first channel if several.

    Raises :class:`MediaError` naming the file if it is missing, unreadable, empty or not at ``sample_rate``.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"missing audio file {path}")
    _check_riff_complete(path)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types; report them with the path
        raise MediaError(f"cannot read audio file {path}: {exc}") from exc
    if sr != sample_rate:
        raise MediaError(f"audio file {path} has sample rate {sr} Hz, configured {sample_rate} Hz")
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} has no samples")
    return np.ascontiguousarray(data[:, 0])  # kaldi.fbank also uses channel 0


def _check_riff_complete(path: Path) -> None:
    """Reject WAV files whose data chunk is shorter than its header says.

    libsndfile silently reads a truncated WAV as a shorter clip (it only notes "should be" in its log), which
    would turn a damaged file into plausible-looking features; nothing may be skipped or patched silently.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not RIFF/WAVE: leave it to libsndfile
        size = path.stat().st_size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            n = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                if n not in (0, 0xFFFFFFFF) and pos + 8 + n > size:  # 0 / -1: streaming placeholder
                    raise MediaError(f"truncated audio file {path}: data chunk declares {n} bytes, "
                                     f"file holds {size - pos - 8}")
                return
            pos += 8 + n + (n & 1)  # chunks are word-aligned
        raise MediaError(f"audio file {path} has no complete data chunk")


def fbank(waveform: np.ndarray, sample_rate: int, n_mels: int, frame_length_ms: float, frame_shift_ms: float,
          n_frames: int, subtract_mean: bool = True) -> np.ndarray:
    """Log-mel fbank ``(1, n_frames, n_mels)`` float32, zero-padded or cut to ``n_frames``.

    Mirrors the released extractor: waveform mean removed, ``torchaudio.compliance.kaldi.fbank`` with
    htk_compat, Hanning window, dither 0 and no energy term. ``subtract_mean=False`` when the caller
    already removed the mean (of all channels, as [C] does before Kaldi keeps channel 0).
    """
    import torch  # deferred: importing torch costs seconds and image/text-only datasets never need it
    from torchaudio.compliance import kaldi

    wav = torch.from_numpy(np.asarray(waveform, dtype=np.float32)).reshape(1, -1)
    if subtract_mean:
        wav = wav - wav.mean()
    feats = kaldi.fbank(wav, htk_compat=True, sample_frequency=float(sample_rate), use_energy=False,
                        window_type="hanning", num_mel_bins=n_mels, dither=0.0,
                        frame_length=float(frame_length_ms), frame_shift=float(frame_shift_ms))
    out = np.zeros((n_frames, n_mels), dtype=np.float32)
    n = min(n_frames, feats.shape[0])
    out[:n] = feats[:n].numpy()
    return out[None]


def audio_features(path: str | Path, cfg: dict) -> np.ndarray:
    """Fbank of one audio file under an ``audio`` feature config section; errors name the file."""
    wav = read_wav(path, cfg["sample_rate"])
    try:
        return fbank(wav, cfg["sample_rate"], cfg["n_mels"], cfg["frame_length_ms"], cfg["frame_shift_ms"],
                     cfg["n_frames"])
    except Exception as exc:  # e.g. a clip shorter than one analysis window
        raise MediaError(f"fbank failed for audio file {path}: {exc}") from exc
