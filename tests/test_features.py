"""Feature extraction and the feature store, on tiny generated datasets."""
from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mla.data import builtin
from mla.data.splits import read_list, sha256_file
from mla.features import MediaError
from mla.features import extract as extract_mod
from mla.features.extract import build_features
from mla.features.store import FeatureStoreError, load_split, load_vocab, read_manifest
from mla.features.text import Tokenizer
from mla.features.video import frame_positions

CFG = {
    "shard_size": 8,
    "audio": {"sample_rate": 8000, "n_mels": 32, "frame_length_ms": 32, "frame_shift_ms": 20, "n_frames": 32},
    "video": {"n_frames": 3, "size": 32},
    "image": {"size": 32},
    "text": {"max_len": 16, "min_freq": 1},
}


def params_for(dataset: str, n_train: int = 40, n_test: int = 12) -> dict:
    mods = {m: {"reliability": 0.8, "noise": 0.3} for m in builtin.DATASETS[dataset]["modalities"]}
    return {"seed": 0, "n_train": n_train, "n_test": n_test, "modalities": mods}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raw")
    out = {}
    for ds, n_train in (("builtin_ait", 40), ("builtin_av", 24), ("builtin_it", 40)):
        builtin.generate(ds, params_for(ds, n_train=n_train), root / ds)
        out[ds] = root / ds
    return out


@pytest.fixture(scope="module")
def feats(raw, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("feat")
    out = {}
    for ds in ("builtin_ait", "builtin_av"):
        build_features(ds, raw[ds], root / ds, CFG, split_seed=1, val_fraction=0.25)
        out[ds] = root / ds
    return out


def test_shapes_manifest_and_splits(raw, feats):
    expect = {
        "audio": (np.float32, (1, 32, 32)), "video": (np.uint8, (3, 3, 32, 32)),
        "image": (np.uint8, (3, 32, 32)), "text": (np.int64, (16,)),
    }
    for ds, fdir in feats.items():
        man = read_manifest(fdir)
        mods = builtin.DATASETS[ds]["modalities"]
        assert man["modalities"] == mods and man["classes"] == builtin.class_names(ds)
        assert set(man["features"]) == {"shard_size", *mods}  # unused sections are not recorded
        train_list = read_list(raw[ds] / "train.txt")
        assert man["source_sha256"]["train.txt"] == sha256_file(raw[ds] / "train.txt")
        loaded = {s: load_split(fdir, s) for s in ("train", "val", "test")}
        assert len(loaded["train"]) + len(loaded["val"]) == len(train_list)
        assert len(loaded["test"]) == 12
        for split, sa in loaded.items():
            info = man["splits"][split]
            assert info["count"] == len(sa.ids) == len(sa.labels)
            assert sa.labels.dtype == np.int64 and sa.classes == man["classes"]
            assert np.bincount(sa.labels, minlength=len(sa.classes)).tolist() == info["label_counts"]
            assert all(sh["count"] <= CFG["shard_size"] for sh in info["shards"])
            for sh in info["shards"]:
                for entry in sh["files"].values():
                    assert sha256_file(fdir / entry["file"]) == entry["sha256"]
            assert set(sa.arrays) == set(mods)
            for m, arr in sa.arrays.items():
                assert arr.dtype == expect[m][0] and arr.shape == (len(sa), *expect[m][1]), (ds, split, m)
            lst = read_list(raw[ds] / ("test.txt" if split == "test" else "train.txt"))
            labels_of = {i: man["classes"].index(lbl) for i, lbl in lst}
            assert sa.labels.tolist() == [labels_of[i] for i in sa.ids]
        assert not set(loaded["train"].ids) & set(loaded["val"].ids)
        # the written lists match the stored splits and are checksummed
        for split in ("train", "val"):
            p = fdir / "splits" / f"{split}.txt"
            assert [i for i, _ in read_list(p)] == loaded[split].ids
            assert man["lists_sha256"][f"splits/{split}.txt"] == sha256_file(p)
        # stratified: per class round(0.25 * n_c) samples in val
        per_class = Counter(lbl for _, lbl in train_list)
        val_counts = loaded["val"].labels.tolist()
        for k, c in enumerate(man["classes"]):
            assert val_counts.count(k) == int(np.floor(0.25 * per_class[c] + 0.5))

    ait = load_split(feats["builtin_ait"], "train")
    assert np.isfinite(ait.arrays["audio"]).all() and ait.arrays["audio"][:, :, :31].std() > 0
    assert (ait.arrays["audio"][:, :, 31] == 0).all()  # 31 real frames, zero-padded to 32
    assert (ait.arrays["text"][:, :12] > 0).all() and (ait.arrays["text"][:, 12:] == 0).all()
    assert frame_positions(8, 3) == [0, 2, 4] and frame_positions(2, 3) == [0, 0, 0]


def test_tokenizer_uses_train_only(raw, tmp_path):
    src = tmp_path / "it"
    shutil.copytree(raw["builtin_it"], src)
    first = build_features("builtin_it", src, tmp_path / "f0", CFG, split_seed=1, val_fraction=0.25)
    val_id = read_list(tmp_path / "f0" / "splits" / "val.txt")[0][0]
    train_id = read_list(tmp_path / "f0" / "splits" / "train.txt")[0][0]
    test_id = read_list(src / "test.txt")[0][0]
    (src / "Texts" / f"{val_id}.txt").write_text("Valonlyword again.\n")
    (src / "Texts" / f"{test_id}.txt").write_text("Testonlyword again.\n")
    (src / "Texts" / f"{train_id}.txt").write_text("Trainonlyword, again!\n")
    man = build_features("builtin_it", src, tmp_path / "f1", CFG, split_seed=1, val_fraction=0.25)
    vocab = load_vocab(tmp_path / "f1")
    assert "trainonlyword" in vocab and "valonlyword" not in vocab and "testonlyword" not in vocab
    assert vocab[:2] == ["[PAD]", "[UNK]"] and man["text"]["vocab_size"] == len(vocab)
    assert man["splits"]["val"]["count"] == first["splits"]["val"]["count"]
    val = load_split(tmp_path / "f1", "val")
    row = val.arrays["text"][val.ids.index(val_id)]
    assert row[:2].tolist() == [1, vocab.index("again")] and not row[2:].any()
    tok = Tokenizer.build(["b a b", "c b"], min_freq=2)
    assert tok.vocab == ["[PAD]", "[UNK]", "b"] and Tokenizer.from_dict(tok.to_dict()).vocab == tok.vocab
    assert tok.encode("B, a", 3).tolist() == [2, 1, 0]


def test_rerun_is_byte_identical(raw, feats, tmp_path):
    out = tmp_path / "again"
    build_features("builtin_ait", raw["builtin_ait"], out, CFG, split_seed=1, val_fraction=0.25)
    assert tree(out) == tree(feats["builtin_ait"])
    # rebuilding over an existing store replaces it atomically, with the same bytes
    build_features("builtin_ait", raw["builtin_ait"], out, CFG, split_seed=1, val_fraction=0.25)
    assert tree(out) == tree(feats["builtin_ait"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def _second_shard_id(raw_dir: Path) -> str:
    """An id that lands in the second train shard (val_fraction 0 keeps train.txt order)."""
    return read_list(raw_dir / "train.txt")[CFG["shard_size"] + 2][0]


@pytest.mark.parametrize("dataset,sub,ext,damage", [
    ("builtin_ait", "AudioWAV", ".wav", "truncate"),
    ("builtin_av", "VideoMP4", ".mp4", "garbage"),
    ("builtin_ait", "Images", ".png", "delete"),
])
def test_bad_media_aborts_cleanly(raw, tmp_path, monkeypatch, dataset, sub, ext, damage):
    src = tmp_path / "raw"
    shutil.copytree(raw[dataset], src)
    sid = _second_shard_id(src)
    victim = src / sub / f"{sid}{ext}"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:1000])
    elif damage == "garbage":
        victim.write_bytes(b"\x00not a video" * 50)
    else:
        victim.unlink()

    saved = []
    real_save = extract_mod.save_shard
    monkeypatch.setattr(extract_mod, "save_shard", lambda *a: saved.append(a[1:3]) or real_save(*a))
    parent = tmp_path / "features"
    out = parent / "store"
    with pytest.raises(MediaError) as err:
        build_features(dataset, src, out, CFG, split_seed=1, val_fraction=0.0)
    assert str(victim) in str(err.value)
    assert ("labels", 0) in saved and len(saved) >= 3  # a complete first shard had been written
    assert list(parent.iterdir()) == []  # no out_dir, no temp dir

    # a pre-existing store is left exactly as it was
    good = tmp_path / "good_raw"
    shutil.copytree(raw[dataset], good)
    build_features(dataset, good, out, CFG, split_seed=1, val_fraction=0.0)
    before = tree(out)
    with pytest.raises(MediaError, match=sid):
        build_features(dataset, src, out, CFG, split_seed=1, val_fraction=0.0)
    assert tree(out) == before and [p.name for p in parent.iterdir()] == ["store"]


def test_load_split_detects_tampering(feats, tmp_path):
    fdir = tmp_path / "store"
    shutil.copytree(feats["builtin_av"], fdir)
    man = read_manifest(fdir)
    entry = man["splits"]["train"]["shards"][1]["files"]["video"]
    shard = fdir / entry["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(FeatureStoreError, match=entry["file"]):
        load_split(fdir, "train")
    assert len(load_split(fdir, "train", verify=False)) == man["splits"]["train"]["count"]
    load_split(fdir, "test")  # other splits are unaffected
    # a count that disagrees with the manifest is caught even without checksums
    bad = copy.deepcopy(man)
    bad["splits"]["test"]["shards"][0]["count"] += 1
    (fdir / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(FeatureStoreError, match="test/labels-000.npy"):
        load_split(fdir, "test", verify=False)
    shard.unlink()
    with pytest.raises(FeatureStoreError, match=entry["file"]):
        load_split(fdir, "train", verify=False)


def _concatenated(fdir: Path, split: str) -> dict[str, np.ndarray]:
    """A split read the plain way: every shard file loaded whole, then concatenated."""
    man = read_manifest(fdir)
    kinds = ["labels", *man["modalities"]]
    return {k: np.concatenate([np.load(fdir / sh["files"][k]["file"]) for sh in man["splits"][split]["shards"]])
            for k in kinds}


def test_sharded_rows_equal_concatenation(feats, monkeypatch):
    """Memory-mapped shards read row by row, by slices and by gathers (across shard boundaries,
    unsorted, repeated) give the concatenated arrays' values; batches give the inputs that converting
    the whole split gave; chunked fbank statistics equal NumPy's over the whole array."""
    import torch

    from mla import batches
    from mla.missing import draw_mask
    from mla.train import DatasetArrays, split_tensors

    fdir = feats["builtin_ait"]
    man = read_manifest(fdir)
    sa = load_split(fdir, "train")
    plain = _concatenated(fdir, "train")
    assert len(man["splits"]["train"]["shards"]) >= 3  # shard_size 8: boundaries at rows 8, 16, ...
    np.testing.assert_array_equal(sa.labels, plain["labels"])
    rng = np.random.default_rng(0)
    n = len(sa)
    gathers = [rng.permutation(n), np.array([9, 7, 8, 8, 0, n - 1, 15, 16]), np.array([], dtype=np.int64),
               np.array([-1, 3])]
    for m in man["modalities"]:
        arr, ref = sa.arrays[m], plain[m]
        assert arr.shape == ref.shape and arr.dtype == ref.dtype and len(arr) == n
        np.testing.assert_array_equal(np.asarray(arr), ref)
        for rows in gathers:
            np.testing.assert_array_equal(arr[rows], ref[rows])
        for sl in (slice(5, 19), slice(7, 9), slice(8, 16), slice(3, 3), slice(None, None, 3), slice(-4, None)):
            np.testing.assert_array_equal(arr[sl], ref[sl])
        for i in (0, 7, 8, 15, 16, n - 1, -1):
            np.testing.assert_array_equal(arr[i], ref[i])
        np.testing.assert_array_equal(arr[6:10, 0], ref[6:10, 0])
        assert all(np.array_equal(a, b) for a, b in zip(arr, ref))
        with pytest.raises(IndexError):
            arr[np.array([n])]

    # batches: the rows of each batch converted as the whole split was before streaming
    monkeypatch.setattr(batches, "STATS_CHUNK", 1000)  # chunks much smaller than a shard (8 x 1024 values)
    norm = batches.audio_stats(sa.arrays["audio"])
    assert norm == (float(plain["audio"].mean()), float(plain["audio"].std() + 1e-6))
    splits = {s: load_split(fdir, s) for s in ("train", "val", "test")}
    ds = DatasetArrays(tuple(man["modalities"]), len(man["classes"]), splits, None, 16)
    missing = {"rate": 0.4, "masking": "released"}
    data, masks = split_tensors(ds, ds.modalities, 0, missing)
    present = draw_mask("released", n, 3, 0.4, 0, "train")
    np.testing.assert_array_equal(masks["train"], present)
    assert data["train"].resident is not None  # small: converted once
    monkeypatch.setattr(batches, "RESIDENT_MB", 0)
    streamed, _ = split_tensors(ds, ds.modalities, 0, missing)
    assert streamed["train"].resident is None  # over the threshold: converted batch by batch
    whole = {
        "audio": (torch.from_numpy(plain["audio"]) - norm[0]) / norm[1],
        "image": (torch.from_numpy(plain["image"].astype(np.float32)) / 255.0 - 0.5) / 0.25,
        "text": torch.from_numpy(plain["text"].astype(np.int64)),
    }
    index = torch.from_numpy(rng.permutation(n)[:20])
    for split in (data["train"], streamed["train"]):
        b = split.batch(index)
        assert torch.equal(b["index"], index) and torch.equal(b["label"], torch.from_numpy(plain["labels"])[index])
        for k, m in enumerate(ds.modalities):
            keep = torch.from_numpy(present[index.numpy(), k])
            expect = whole[m][index] * keep.view(-1, *([1] * (whole[m].dim() - 1))).to(whole[m].dtype)
            assert b[m].dtype == expect.dtype and torch.equal(b[m], expect), m
        assert set(split.batch(index, ("text",))) == {"label", "index", "present", "text"}

    # model.inputs as the released code feeds them: ImageNet's per-channel mean/std, fbanks as stored
    c_data, _ = split_tensors(ds, ds.modalities, 0, None, {"pixels": "imagenet", "fbank": "raw"})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for split in (c_data["train"], batches.to_tensors(sa.arrays, sa.labels, ds.modalities, pixels="imagenet")):
        b = split.batch(index)
        image = torch.from_numpy(plain["image"][index.numpy()].astype(np.float32)) / 255.0
        torch.testing.assert_close(b["image"], (image - mean) / std, rtol=0, atol=1e-6)
    assert torch.equal(c_data["train"].batch(index)["audio"], torch.from_numpy(plain["audio"])[index])
    with pytest.raises(ValueError, match="pixel normalisation 'imagenett'"):
        split_tensors(ds, ds.modalities, 0, None, {"pixels": "imagenett"})


def test_corrupt_shard_names_file(feats, tmp_path):
    """A truncated shard fails with its name whether or not checksums are verified."""
    fdir = tmp_path / "store"
    shutil.copytree(feats["builtin_ait"], fdir)
    entry = read_manifest(fdir)["splits"]["train"]["shards"][2]["files"]["image"]
    shard = fdir / entry["file"]
    shard.write_bytes(shard.read_bytes()[:-100])
    for verify in (True, False):
        with pytest.raises(FeatureStoreError, match=entry["file"]):
            load_split(fdir, "train", verify=verify)
    shard.write_bytes(b"not an npy file")
    with pytest.raises(FeatureStoreError, match=entry["file"]):
        load_split(fdir, "train", verify=False)


def test_config_errors(raw, tmp_path):
    for cfg, key in [
        ({**CFG, "bogus": 1}, "bogus"),
        ({**CFG, "audio": {**CFG["audio"], "hop": 3}}, "audio.hop"),
        ({k: v for k, v in CFG.items() if k != "image"}, "image"),
        ({**CFG, "text": {"max_len": 16}}, "text.min_freq"),
        ({**CFG, "shard_size": 0}, "shard_size"),
    ]:
        with pytest.raises(ValueError, match=key):
            build_features("builtin_it", raw["builtin_it"], tmp_path / "x", cfg, 0, 0.1)
    # sections of absent modalities are allowed; a wrong sample rate names the file
    bad_sr = {**CFG, "audio": {**CFG["audio"], "sample_rate": 16000}}
    with pytest.raises(MediaError, match=r"AudioWAV/s\d+\.wav.*8000"):
        build_features("builtin_ait", raw["builtin_ait"], tmp_path / "x", bad_sr, 0, 0.1)
    with pytest.raises(ValueError, match="builtin_av"):
        build_features("builtin_av", raw["builtin_it"], tmp_path / "x", CFG, 0, 0.1)
    assert list(tmp_path.iterdir()) == []
