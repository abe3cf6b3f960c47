"""Deterministic generator of the built-in multimodal benchmark, written as real media files.

Three datasets mirror the modality structure of the paper's benchmarks:

* ``builtin_av``  -- audio + video, 6 classes (stands beside CREMA-D);
* ``builtin_it``  -- image + text, 8 classes (stands beside Food-101 / MVSA);
* ``builtin_ait`` -- audio + image + text, 4 classes (stands beside IEMOCAP).

Class names are ``c0`` .. ``c{C-1}``; index order equals sorted order (as in the released loaders).

Generative process
------------------
Labels are balanced per split: ``n_train`` (resp. ``n_test``) labels are assigned round-robin over the C classes
and then shuffled. Sample ids are ``s00000``, ``s00001``, ... (train first, then test).

For every sample and every modality m *independently*, the modality displays a class: with probability
``reliability_m`` the true class, otherwise a class drawn uniformly from the C-1 other classes. So
``reliability_m`` is the configurable share of label information that modality m carries (chance is 1/C).
``noise_m`` scales additive nuisance noise on top of the displayed content:

* **audio** (``AudioWAV/<id>.wav``, 16-bit PCM mono, 8000 Hz, 0.64 s = 5120 samples): class k owns a pair of
  tones ``(f[k], f[k+C])`` from 2C frequencies equally spaced on the mel scale between 200 and 3500 Hz. The
  pair (each tone amplitude 1/2, random phases) is played as one burst with a random duration of 40-90 % of
  the clip, a random onset that keeps it inside the clip, 10 ms raised-cosine ramps and a random gain in
  [0.5, 1] (so the signal peak is about 1). White Gaussian noise of std ``noise`` is added over the whole clip
  and the sum is scaled by 0.25 (headroom) before 16-bit quantisation.
* **video** (``VideoMP4/<id>.mp4``, MPEG-4 Part 2, quantiser fixed at 1, 32x32 RGB, 8 frames at 8 fps): on a dark
  background (0.1) one bright grey blob (Gaussian, sigma 1.5 px, peak 0.95) moves 2 px per frame in the
  class direction ``360 * k / C`` degrees (counter-clockwise from +x, image y pointing down), its trajectory
  centred on a random point in [12, 20]^2. The blob drags a fading comet trail (blobs of peak 0.7, 0.55,
  0.4, 0.25, 0.1 at 2, 4, 6, 8, 10 px behind the head), so the direction is visible in single frames too. One
  static distractor blob (same size and peak, no trail) sits at a random point in [4, 28]^2. Grey Gaussian
  pixel noise of std ``noise`` (on a 0..1 scale, i.i.d. per pixel and frame, equal in R, G and B) is added,
  then values are clipped to [0, 1] and quantised to uint8. The content is grey on purpose: 4:2:0 chroma
  subsampling then loses nothing and the decoded frames match the rendered ones to within a few grey levels.
* **image** (``Images/<id>.png``, 32x32 RGB): a bright bar (length 16 px, Gaussian cross-profile sigma
  2.4 px) with class orientation ``180 * k / C`` degrees (counter-clockwise from +x), centred on a random
  point in [10, 22]^2, with a random bright colour (each channel in [0.6, 1]); one distractor blob (sigma
  2 px, random bright colour) at a random point in [4, 28]^2; dark background (0.1); Gaussian pixel noise
  of std ``noise`` (i.i.d. per pixel and channel); clip, uint8.
* **text** (``Texts/<id>.txt``, UTF-8, one line): 12 words, 3 of which (at random positions) are 3 distinct
  keywords drawn from the displayed class's list of 5 made-up words; the other 9 are drawn with replacement
  from a shared filler vocabulary of 150 English words. Each keyword is independently replaced by a random
  filler word with probability ``noise`` (so text noise must lie in [0, 1]). The first word is capitalised
  and the line ends with a full stop.

Randomness: the labels use ``numpy.random.default_rng([seed, D, 0])`` and modality m its own stream
``default_rng([seed, D, code_m])`` (``D`` = a fixed hash of the dataset name; code_m: audio 1, video 2,
image 3, text 4). Each stream visits the samples in id order and always makes the same draws per sample
(the "other class" draw and the unit-variance noise are drawn even when unused), so changing one modality's
reliability or noise changes nothing else, samples corrupted at a reliability r are a superset of those at any
r' > r, and the files are byte-identical for equal params (for the same numpy, libavcodec and zlib builds).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import wave
import zlib
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
import PIL
from PIL import Image

from mla import catalog
from mla.data.splits import sha256_file
from mla.features.extract import MEDIA as MEDIA_LAYOUT  # raw sub-directory and extension per modality
from mla.io import atomic_directory, write_json

GENERATOR_VERSION = 3  # 3: image bar cross-profile sigma 2.4 px (was 0.7: the narrow image encoders learnt it late)

# The built-in datasets' modalities and class counts come from the catalog.
DATASETS: dict[str, dict] = {
    name: {"modalities": list(info.modalities), "n_classes": info.n_classes}
    for name, info in catalog.DATASETS.items()
    if info.family == "builtin"
}

_MODALITY_CODE = {"audio": 1, "video": 2, "image": 3, "text": 4}

SAMPLE_RATE = 8000
N_AUDIO = 5120  # 0.64 s at 8 kHz
AUDIO_OUT_GAIN = 0.25
SIZE = 32
N_FRAMES = 8
FPS = 8
TEXT_LEN = 12
N_KEYWORDS = 3
BAR_SIGMA = 2.4  # px, the image bar's Gaussian cross-profile (docs/benchmark.md, Calibration)

# Five made-up keywords per class (class k of every built-in dataset uses row k).
KEYWORDS: list[list[str]] = [
    ["zorvani", "plemuk", "drisato", "quenbor", "valtiko"],
    ["mubrasi", "tekorun", "fliwena", "gorpaxi", "snedulo"],
    ["kravimo", "bostela", "yurinak", "chemdaru", "wispolu"],
    ["lumetra", "dagonix", "prevusa", "tolbimer", "hazunel"],
    ["nirpoda", "vescalu", "grimatu", "obrelix", "fandosi"],
    ["sultraw", "kemipor", "brovala", "tinzequ", "rapodel"],
    ["mozkari", "pelurin", "jastovi", "undakel", "cribemo"],
    ["talvosu", "kirunep", "doflama", "zentiro", "ovarisk"],
]

FILLER: list[str] = """
the a an and or but of in on at to from with without by for about over under after before between through
during into near far here there this that it they them we us our you your one two three four five many few
some all most every each other new old big small long short good bad first last next early late high low open
close make take give get see look find keep turn move run walk come go stay leave read write speak tell ask
call feel think know want need like try use work play start stop wait day night morning week year time place
home city road room table window door water light sound color shape side part group number way thing people
friend child story idea plan question answer reason simple quiet bright dark warm cold soft hard slow quick
clear full
""".split()

assert len(FILLER) == len(set(FILLER)) == 150
assert not set(FILLER) & {w for row in KEYWORDS for w in row}


def class_names(dataset: str) -> list[str]:
    """Class names of a built-in dataset, in index order."""
    return [f"c{k}" for k in range(DATASETS[dataset]["n_classes"])]


def tone_pairs(n_classes: int) -> list[tuple[float, float]]:
    """The (low, high) tone frequencies in Hz of each class: 2C mel-spaced frequencies in [200, 3500]."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    freqs = [inv(m) for m in np.linspace(mel(200.0), mel(3500.0), 2 * n_classes)]
    return [(freqs[k], freqs[k + n_classes]) for k in range(n_classes)]


# ----------------------------------------------------------------------------------------------- validation
def _check_keys(where: str, got: Any, expected: set[str]) -> None:
    if not isinstance(got, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(got).__name__}")
    for key in sorted(set(got) - expected, key=str):
        raise ValueError(f"{where}: unknown key {key!r}")
    for key in sorted(expected - set(got)):
        raise ValueError(f"{where}: missing key {key!r}")


def _number(where: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{where}: expected a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _int(where: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{where}: expected an integer >= {lo}, got {value!r}")
    return int(value)


def validate_params(dataset: str, params: dict) -> dict:
    """Check a dataset's generator params; raise ValueError naming the offending key. Returns a clean copy."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown built-in dataset {dataset!r} (known: {sorted(DATASETS)})")
    _check_keys(f"{dataset} params", params, {"seed", "n_train", "n_test", "modalities"})
    clean = {
        "seed": _int(f"{dataset}.seed", params["seed"], 0),
        "n_train": _int(f"{dataset}.n_train", params["n_train"], 1),
        "n_test": _int(f"{dataset}.n_test", params["n_test"], 1),
        "modalities": {},
    }
    mods = DATASETS[dataset]["modalities"]
    _check_keys(f"{dataset}.modalities", params["modalities"], set(mods))
    for m in mods:
        where = f"{dataset}.modalities.{m}"
        _check_keys(where, params["modalities"][m], {"reliability", "noise"})
        entry = params["modalities"][m]
        clean["modalities"][m] = {
            "reliability": _number(f"{where}.reliability", entry["reliability"], 0.0, 1.0),
            # text noise is a replacement probability; the others are a std, capped to stay sane
            "noise": _number(f"{where}.noise", entry["noise"], 0.0, 1.0 if m == "text" else 10.0),
        }
    return clean


# ------------------------------------------------------------------------------------------------ rendering
def _displayed_class(rng: np.random.Generator, label: int, reliability: float, n_classes: int) -> int:
    u = rng.random()
    other = int(rng.integers(n_classes - 1))  # always drawn, keeps the stream aligned across reliabilities
    if u < reliability:
        return label
    return other if other < label else other + 1


_AXIS = np.arange(SIZE, dtype=np.float64)
_GRID = np.stack(np.mgrid[0:SIZE, 0:SIZE], axis=-1).astype(np.float64)  # (y, x) of every pixel


def _gauss(cy: np.ndarray | float, cx: np.ndarray | float, sigma: float) -> np.ndarray:
    """Unit-peak isotropic Gaussian blob(s) on the SIZE x SIZE grid; separable, broadcasts over centres."""
    cy, cx = np.asarray(cy, dtype=np.float64), np.asarray(cx, dtype=np.float64)
    gy = np.exp(-((_AXIS - cy[..., None]) ** 2) / (2.0 * sigma**2))
    gx = np.exp(-((_AXIS - cx[..., None]) ** 2) / (2.0 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_audio(rng: np.random.Generator, k: int, noise: float, n_classes: int) -> np.ndarray:
    """int16 waveform (N_AUDIO,) displaying class k."""
    f1, f2 = tone_pairs(n_classes)[k]
    gain, dur_frac, onset_frac = rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9), rng.random()
    phases = rng.uniform(0.0, 2.0 * np.pi, size=2)
    white = rng.standard_normal(N_AUDIO)
    t = np.arange(N_AUDIO) / SAMPLE_RATE
    tone = 0.5 * (np.sin(2 * np.pi * f1 * t + phases[0]) + np.sin(2 * np.pi * f2 * t + phases[1]))
    dur = int(round(dur_frac * N_AUDIO))
    onset = int(round(onset_frac * (N_AUDIO - dur)))
    env = np.zeros(N_AUDIO)
    env[onset:onset + dur] = 1.0
    ramp = int(0.01 * SAMPLE_RATE)  # 10 ms raised-cosine ramps avoid broadband clicks at the burst edges
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[onset:onset + ramp] *= r
    env[onset + dur - ramp:onset + dur] *= r[::-1]
    x = (gain * env * tone + noise * white) * AUDIO_OUT_GAIN
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def render_video(rng: np.random.Generator, k: int, noise: float, n_classes: int) -> np.ndarray:
    """uint8 frames (N_FRAMES, SIZE, SIZE, 3) displaying class k."""
    mid = rng.uniform(12.0, 20.0, size=2)  # (y, x)
    distractor = rng.uniform(4.0, 28.0, size=2)
    pixel_noise = rng.standard_normal((N_FRAMES, SIZE, SIZE, 1))
    theta = 2.0 * np.pi * k / n_classes
    step = 2.0 * np.array([-np.sin(theta), np.cos(theta)])  # image y points down
    still = 0.85 * _gauss(distractor[0], distractor[1], 1.5)
    heads = mid + (np.arange(N_FRAMES) - (N_FRAMES - 1) / 2.0)[:, None] * step  # (F, 2)
    # head plus a fading comet trail of five points behind it, one step (2 px) apart, so that
    # single frames show the direction too: (F, 6, 2) centres
    pts = heads[:, None, :] - np.arange(6)[None, :, None] * step
    amps = np.array([0.85, 0.7, 0.55, 0.4, 0.25, 0.1])[None, :, None, None]
    frames = np.maximum(still, (amps * _gauss(pts[..., 0], pts[..., 1], 1.5)).max(axis=1))
    return np.repeat(_to_uint8(0.1 + frames[..., None] + noise * pixel_noise), 3, axis=-1)


def render_image(rng: np.random.Generator, k: int, noise: float, n_classes: int) -> np.ndarray:
    """uint8 image (SIZE, SIZE, 3) displaying class k."""
    centre = rng.uniform(10.0, 22.0, size=2)
    bar_colour = rng.uniform(0.6, 1.0, size=3)
    blob = rng.uniform(4.0, 28.0, size=2)
    blob_colour = rng.uniform(0.6, 1.0, size=3)
    pixel_noise = rng.standard_normal((SIZE, SIZE, 3))
    theta = np.pi * k / n_classes
    u = np.array([-np.sin(theta), np.cos(theta)])  # (y, x) unit vector along the bar
    rel = _GRID - centre  # (SIZE, SIZE, 2) offsets (y, x) from the bar centre
    along = np.clip(rel @ u, -8.0, 8.0)  # distance to the 16 px segment
    d2 = ((rel - along[..., None] * u) ** 2).sum(-1)
    bar = np.exp(-d2 / (2 * BAR_SIGMA**2))[..., None] * (bar_colour - 0.1)
    spot = _gauss(blob[0], blob[1], 2.0)[..., None] * (blob_colour - 0.1)
    return _to_uint8(0.1 + np.maximum(bar, spot) + noise * pixel_noise)


def render_text(rng: np.random.Generator, k: int, noise: float, n_classes: int) -> str:
    """One-line sentence displaying class k."""
    kw_idx = rng.permutation(len(KEYWORDS[k]))[:N_KEYWORDS]
    positions = rng.permutation(TEXT_LEN)[:N_KEYWORDS]
    words = [FILLER[i] for i in rng.integers(len(FILLER), size=TEXT_LEN)]
    drop = rng.random(N_KEYWORDS) < noise
    replacements = rng.integers(len(FILLER), size=N_KEYWORDS)
    for j in range(N_KEYWORDS):
        words[positions[j]] = FILLER[replacements[j]] if drop[j] else KEYWORDS[k][kw_idx[j]]
    words[0] = words[0].capitalize()
    return " ".join(words) + ".\n"


# Encoders return the file's bytes: the generator writes each file once and hashes it from memory (opening
# files is the dominant cost at this size).
def encode_wav(data: np.ndarray) -> bytes:
    """16-bit PCM mono WAV bytes (stdlib wave: same 44-byte header as libsndfile, much faster)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(data.astype("<i2").tobytes())
    return buf.getvalue()


def encode_mp4(frames: np.ndarray) -> bytes:
    """MP4 (MPEG-4 Part 2) bytes of uint8 RGB frames (F, H, W, 3)."""
    # bitexact drops the libavformat/libavcodec version strings, so bytes only change with the codec itself;
    # qmin = qmax = 1 pins the finest MPEG-4 quantiser (mean decode error < 1 grey level on this content);
    # one thread keeps the encoder deterministic.
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = {"qmin": "1", "qmax": "1", "flags": "+bitexact", "g": str(N_FRAMES)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB image (H, W, 3)."""
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def encode_txt(text: str) -> bytes:
    """UTF-8 bytes of a text."""
    return text.encode("utf-8")


_RENDER: dict[str, tuple[Callable, Callable]] = {
    "audio": (render_audio, encode_wav),
    "video": (render_video, encode_mp4),
    "image": (render_image, encode_png),
    "text": (render_text, encode_txt),
}


# ------------------------------------------------------------------------------------------------ generation
def _dataset_code(dataset: str) -> int:
    return int.from_bytes(hashlib.sha256(dataset.encode()).digest()[:4], "big")


def _balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % n_classes)


def generate(dataset: str, params: dict, out_dir: str | Path) -> dict:
    """Write the dataset's raw media to ``out_dir`` atomically and return the generator manifest.

    The files are first written to a temporary sibling directory that replaces ``out_dir`` by rename at the
    end; on any error it is removed and an existing ``out_dir`` is left as it was. The manifest is also
    written as ``out_dir/generator.json``.
    """
    p = validate_params(dataset, params)
    n_classes = DATASETS[dataset]["n_classes"]
    mods = DATASETS[dataset]["modalities"]
    classes = class_names(dataset)
    code = _dataset_code(dataset)
    n_train, n_test = p["n_train"], p["n_test"]
    width = max(5, len(str(n_train + n_test - 1)))
    ids = [f"s{i:0{width}d}" for i in range(n_train + n_test)]
    label_rng = np.random.default_rng([p["seed"], code, 0])
    labels = np.concatenate([_balanced_labels(label_rng, n_train, n_classes),
                             _balanced_labels(label_rng, n_test, n_classes)])
    split_of = ["train"] * n_train + ["test"] * n_test

    with atomic_directory(out_dir) as tmp:
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
        for split in ("train", "test"):
            lines = [f"{sid} {classes[y]}\n" for sid, y, s in zip(ids, labels, split_of) if s == split]
            (tmp / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
        shown_true = {}
        digest_lines = []
        for m in mods:
            sub, ext = MEDIA_LAYOUT[m]
            (tmp / sub).mkdir()
            rng = np.random.default_rng([p["seed"], code, _MODALITY_CODE[m]])
            render, encode = _RENDER[m]
            rel, noise = p["modalities"][m]["reliability"], p["modalities"][m]["noise"]
            hits = 0
            for sid, y in zip(ids, labels):  # ids are already in sorted order
                k = _displayed_class(rng, int(y), rel, n_classes)
                hits += k == y
                data = encode(render(rng, k, noise, n_classes))
                (tmp / sub / f"{sid}{ext}").write_bytes(data)
                digest_lines.append(f"{sub}/{sid}{ext} {hashlib.sha256(data).hexdigest()}\n")
            shown_true[m] = hits / len(ids)

        manifest = {
            "generator_version": GENERATOR_VERSION,
            "dataset": dataset,
            "params": p,
            "modalities": list(mods),
            "classes": classes,
            "n_classes": n_classes,
            "counts": {"train": n_train, "test": n_test},
            "label_counts": {
                s: np.bincount(labels[np.array(split_of) == s], minlength=n_classes).tolist()
                for s in ("train", "test")
            },
            # realised share of samples whose modality shows the true class (expected: reliability)
            "realised_reliability": {m: round(v, 6) for m, v in shown_true.items()},
            "content": _content_description(mods, n_classes),
            "lists_sha256": {f: sha256_file(tmp / f) for f in ("classes.txt", "test.txt", "train.txt")},
            # one sha256 over sorted "<relpath> <sha256 of file>" lines of every media file
            "media_sha256": hashlib.sha256("".join(sorted(digest_lines)).encode()).hexdigest(),
            "software": {
                "numpy": np.__version__, "av": av.__version__,
                "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
                "pillow": PIL.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION,
            },
        }
        write_json(tmp / "generator.json", manifest)
    return json.loads(json.dumps(manifest))


def _content_description(mods: list[str], n_classes: int) -> dict:
    desc: dict[str, Any] = {}
    if "audio" in mods:
        desc["audio"] = {"sample_rate": SAMPLE_RATE, "n_samples": N_AUDIO,
                         "tone_pairs_hz": [[round(a, 2), round(b, 2)] for a, b in tone_pairs(n_classes)]}
    if "video" in mods:
        desc["video"] = {"size": SIZE, "n_frames": N_FRAMES, "fps": FPS, "codec": "mpeg4",
                         "direction_deg": [round(360.0 * k / n_classes, 4) for k in range(n_classes)]}
    if "image" in mods:
        desc["image"] = {"size": SIZE, "bar_length_px": 16, "bar_sigma_px": BAR_SIGMA,
                         "orientation_deg": [round(180.0 * k / n_classes, 4) for k in range(n_classes)]}
    if "text" in mods:
        desc["text"] = {"n_words": TEXT_LEN, "n_keywords": N_KEYWORDS, "keywords": KEYWORDS[:n_classes],
                        "filler_vocab_size": len(FILLER)}
    return desc
