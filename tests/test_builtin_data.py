"""Built-in benchmark generator and split helpers (no torch needed)."""
from __future__ import annotations

import json
import wave
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mla.data import builtin
from mla.data.splits import carve_validation, read_list, sha256_file


def params_for(dataset: str, reliability: float = 0.8, noise: float = 0.3, n_train: int = 40,
               n_test: int = 12, seed: int = 0) -> dict:
    mods = {m: {"reliability": reliability, "noise": noise} for m in builtin.DATASETS[dataset]["modalities"]}
    return {"seed": seed, "n_train": n_train, "n_test": n_test, "modalities": mods}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Every built-in dataset generated twice with the same params."""
    root = tmp_path_factory.mktemp("gen")
    out = {}
    for ds in builtin.DATASETS:
        a, b = root / "a" / ds, root / "b" / ds
        builtin.generate(ds, params_for(ds), a)
        builtin.generate(ds, params_for(ds), b)
        out[ds] = (a, b)
    return out


def test_layout_determinism_and_balance(twice):
    for ds, (a, b) in twice.items():
        ta, tb = tree(a), tree(b)
        assert ta.keys() == tb.keys()
        differing = [k for k in ta if ta[k] != tb[k]]
        assert not differing, f"{ds}: not byte-identical: {differing[:5]}"

        mods = builtin.DATASETS[ds]["modalities"]
        subdirs = {builtin.MEDIA_LAYOUT[m][0] for m in mods}
        assert {p.name for p in a.iterdir()} == subdirs | {"train.txt", "test.txt", "classes.txt",
                                                          "generator.json"}
        classes = (a / "classes.txt").read_text().split()
        assert classes == builtin.class_names(ds)
        train, test = read_list(a / "train.txt"), read_list(a / "test.txt")
        assert len(train) == 40 and len(test) == 12
        ids = [i for i, _ in train + test]
        assert ids == sorted(ids) and len(set(ids)) == 52
        for lst in (train, test):
            counts = Counter(lbl for _, lbl in lst)
            assert set(counts) <= set(classes) and max(counts.values()) - min(counts.values()) <= 1
        for m in mods:
            sub, ext = builtin.MEDIA_LAYOUT[m]
            assert sorted(p.name for p in (a / sub).iterdir()) == [f"{i}{ext}" for i in ids]

        gen = json.loads((a / "generator.json").read_text())
        assert gen["dataset"] == ds and gen["modalities"] == mods and gen["classes"] == classes
        assert gen["params"] == params_for(ds) and gen["counts"] == {"train": 40, "test": 12}
        assert gen["lists_sha256"]["train.txt"] == sha256_file(a / "train.txt")
        assert (a.stat().st_mode & 0o777) != 0o700  # the temp dir's private mode must not leak

    # the MP4s really are video that PyAV reads back at the documented geometry
    a = twice["builtin_av"][0]
    with av.open(str(a / "VideoMP4" / "s00000.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == builtin.N_FRAMES and frames[0].shape == (32, 32, 3)
    # another seed changes the media
    other = a.parent.parent / "seed1"
    builtin.generate("builtin_it", params_for("builtin_it", seed=1), other)
    assert tree(other)["Images/s00000.png"] != tree(twice["builtin_it"][0])["Images/s00000.png"]


def _nearest(angle: float, n: int, period: float) -> int:
    step = period / n
    return int(np.round((angle % period) / step)) % n


def test_clean_signal_displays_the_label(tmp_path):
    ait, av_dir = tmp_path / "ait", tmp_path / "av"
    builtin.generate("builtin_ait", params_for("builtin_ait", reliability=1.0, noise=0.0), ait)
    builtin.generate("builtin_av", params_for("builtin_av", reliability=1.0, noise=0.0, n_train=24, n_test=6),
                     av_dir)

    c = builtin.DATASETS["builtin_ait"]["n_classes"]
    pairs = builtin.tone_pairs(c)
    for sid, label in read_list(ait / "train.txt") + read_list(ait / "test.txt"):
        k = int(label[1:])
        # audio: the two strongest spectral peaks are the class's tone pair
        with wave.open(str(ait / "AudioWAV" / f"{sid}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
        assert len(x) == builtin.N_AUDIO
        spec = np.abs(np.fft.rfft(x))
        freqs = np.fft.rfftfreq(len(x), 1 / 8000)
        p1 = int(spec.argmax())
        spec[max(0, p1 - 20):p1 + 20] = 0
        found = sorted([freqs[p1], freqs[int(spec.argmax())]])
        assert np.allclose(found, pairs[k], atol=5.0), (sid, found, pairs[k])
        # text: exactly three keywords, all from the label's list
        words = (ait / "Texts" / f"{sid}.txt").read_text().lower().replace(".", "").split()
        assert len(words) == 12
        kws = [w for w in words if w not in builtin.FILLER]
        assert len(kws) == 3 and set(kws) <= set(builtin.KEYWORDS[k]), (sid, kws)
        # image: the structure tensor's dominant orientation is perpendicular to the class bar
        img = np.asarray(Image.open(ait / "Images" / f"{sid}.png").convert("RGB"), dtype=float).mean(-1)
        gy, gx = np.gradient(img)
        phi = 0.5 * np.degrees(np.arctan2(2 * (gx * gy).sum(), (gx**2).sum() - (gy**2).sum()))
        assert _nearest(-(phi + 90.0), c, 180.0) == k, (sid, phi)

    c = builtin.DATASETS["builtin_av"]["n_classes"]
    for sid, label in read_list(av_dir / "train.txt"):
        # video: the last-minus-first frame difference moves along the class direction
        with av.open(str(av_dir / "VideoMP4" / f"{sid}.mp4")) as cont:
            frames = [f.to_ndarray(format="rgb24").mean(-1) for f in cont.decode(video=0)]
        diff = frames[-1] - frames[0]
        yy, xx = np.mgrid[0:32, 0:32]
        pos, neg = np.clip(diff, 0, None), np.clip(-diff, 0, None)
        dy = (yy * pos).sum() / pos.sum() - (yy * neg).sum() / neg.sum()
        dx = (xx * pos).sum() / pos.sum() - (xx * neg).sum() / neg.sum()
        assert _nearest(np.degrees(np.arctan2(-dy, dx)), c, 360.0) == int(label[1:]), sid


def test_reliability_zero_never_shows_the_label(tmp_path):
    p = params_for("builtin_it", reliability=1.0, noise=0.0)
    p["modalities"]["text"]["reliability"] = 0.0
    gen = builtin.generate("builtin_it", p, tmp_path / "it")
    assert gen["realised_reliability"] == {"image": 1.0, "text": 0.0}
    for sid, label in read_list(tmp_path / "it" / "train.txt"):
        words = set((tmp_path / "it" / "Texts" / f"{sid}.txt").read_text().lower().replace(".", "").split())
        shown = [k for k, kws in enumerate(builtin.KEYWORDS) if words & set(kws)]
        assert len(shown) == 1 and shown[0] != int(label[1:])


def test_bad_params_and_atomicity(tmp_path, monkeypatch):
    good = params_for("builtin_av")
    cases = {
        "colour": {**good, "colour": 1},
        "n_test": {k: v for k, v in good.items() if k != "n_test"},
        "image": {**good, "modalities": {**good["modalities"], "image": {"reliability": 1, "noise": 0}}},
        "noise": {**good, "modalities": {**good["modalities"], "video": {"reliability": 1.0}}},
        "reliability": {**good, "modalities": {**good["modalities"],
                                               "audio": {"reliability": 1.5, "noise": 0.1}}},
        "seed": {**good, "seed": "zero"},
    }
    for key, bad in cases.items():
        with pytest.raises(ValueError, match=key):
            builtin.generate("builtin_av", bad, tmp_path / "x")
    with pytest.raises(ValueError, match="nope"):
        builtin.generate("nope", good, tmp_path / "x")
    assert not list(tmp_path.iterdir())

    # a failure half-way leaves a previous output untouched and no temp dir behind
    out = tmp_path / "it"
    builtin.generate("builtin_it", params_for("builtin_it"), out)
    before = tree(out)
    render, encode = builtin._RENDER["text"]
    calls = []

    def failing_encode(text):
        calls.append(text)
        if len(calls) == 30:
            raise OSError("disk full (simulated)")
        return encode(text)

    monkeypatch.setitem(builtin._RENDER, "text", (render, failing_encode))
    with pytest.raises(OSError, match="simulated"):
        builtin.generate("builtin_it", params_for("builtin_it", seed=3), out)
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["it"]


def test_read_list_and_carve_validation(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a c0\nb c1\n\n")
    assert read_list(good) == [("a", "c0"), ("b", "c1")]
    bad = tmp_path / "bad.txt"
    bad.write_text("a c0\nb c1 extra\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        read_list(bad)
    bad.write_text("a c0\na c1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2.*duplicate"):
        read_list(bad)

    labels = np.repeat(np.arange(4), [10, 20, 2, 1])
    tr, va = carve_validation(labels, 0.2, seed=5)
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(labels)))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert np.bincount(labels[va], minlength=4).tolist() == [2, 4, 0, 0]
    assert set(labels[tr]) == {0, 1, 2, 3}
    tr2, va2 = carve_validation(labels, 0.2, seed=5)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, carve_validation(labels, 0.2, seed=6)[1])
    tr0, va0 = carve_validation(labels, 0.0, seed=5)
    assert len(va0) == 0 and np.array_equal(tr0, np.arange(len(labels)))
    # a class of 2 keeps one in train even at a large fraction
    assert np.bincount(labels[carve_validation(labels, 0.9, 0)[0]], minlength=4)[2] == 1
    with pytest.raises(ValueError):
        carve_validation(labels, 1.0, 0)
