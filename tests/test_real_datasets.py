"""Preparation of the five real datasets (mla/data/prepare.py) on tiny fixtures written in each
dataset's real layout and naming, with split lists in the official formats (never the real files)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mla import catalog, cli, grid
from mla.acquire.errors import SplitFormatError
from mla.data.prepare import prepare
from mla.data.samples import MissingFilesError
from mla.data.splits import sha256_file
from mla.features import MediaError
from mla.features import face as face_mod
from mla.features.face import face_crop
from mla.features.media import frame_at
from mla.features.store import load_split, load_vocab, read_manifest
from mla.features.wordpiece import SPECIAL, VocabError, WordPiece, basic_tokenize, build_vocab
# the fixture copies (one way to build them: `mla fixture` writes the same); other test modules import
# the writers from here too
from mla.fixtures.datasets import (CRE_CLIPS, CRE_TEST, FOOD, IEMO, IEMO_TEST, KS_GONE, KS_TEST, KS_TRAIN,  # noqa: F401
                                   MAKERS, MVSA, MVSA_TEST, VOCAB, make_cremad, make_food101, make_iemocap, make_ks,
                                   make_mvsa)
from mla.fixtures.media import (draw_face, write_face_video, write_jpeg, write_jsonl, write_lines,  # noqa: F401
                                write_video, write_wav)

ROOT = Path(__file__).resolve().parents[1]
SEED, VAL = 0, 0.34
UNVERIFIED = {"verify_lists": False}  # fixture lists are not the official ones (sha256, record counts)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bert") / "vocab.txt"
    write_lines(path, VOCAB)
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("real")
    return {ds: make(root / ds) for ds, make in MAKERS.items()}


def opts_for(ds: str, vocab: Path) -> dict:
    opts = dict(UNVERIFIED)
    if "text" in catalog.dataset_info(ds).modalities:
        opts["text"] = {"vocab": str(vocab)}
    if ds == "ks":
        opts["allow_missing"] = None
    return opts


@pytest.fixture(scope="module")
def stores(fixtures, vocab_file, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("features")
    out = {}
    for ds, (raw, splits) in fixtures.items():
        opts = opts_for(ds, vocab_file)
        if ds == "ks":
            listing = root / "ks_unavailable.txt"
            write_lines(listing, ["# clips missing from our Kinetics copy", KS_GONE])
            opts["allow_missing"] = str(listing)
        man = prepare(ds, raw, splits, root / ds, opts, split_seed=SEED, val_fraction=VAL)
        out[ds] = (root / ds, man)
    return out


# ---------------------------------------------------------------- tests

def test_catalog_entries():
    expected = {"cremad": (("audio", "video"), 6), "ks": (("audio", "video"), 31),
                "food101": (("image", "text"), 101), "mvsa": (("image", "text"), 3),
                "iemocap": (("audio", "image", "text"), 4)}
    paper = yaml.safe_load((ROOT / "mla" / "paper_tables.yaml").read_text())["table1"]
    for ds, (mods, n) in expected.items():
        info = catalog.dataset_info(ds)
        assert (info.modalities, info.n_classes, info.family, info.paper_key) == (mods, n, "real", ds)
        assert set(paper[ds]) == {*mods, "multi"}
        # a real dataset's paths depend on no setting (the built-in ones are keyed by theirs)
        assert (grid.raw_dir({}, ds), grid.feature_dir({}, ds)) == (f"data/raw/{ds}", f"data/features/{ds}")


def test_counts_labels_shapes_and_manifest(fixtures, stores):
    lists_len = {"cremad": (9, 3), "ks": (7, 3), "food101": (9, 3), "mvsa": (9, 3), "iemocap": (7, 2)}
    for ds, (fdir, man) in stores.items():
        info = catalog.dataset_info(ds)
        n_train, n_test = lists_len[ds]
        excluded = 1 if ds == "ks" else 0
        c = man["counts"]
        assert c["official"] == {"train": n_train, "test": n_test} and c["excluded"]["train"] == excluded
        assert c["train"] + c["val"] == n_train - excluded and c["test"] == n_test
        assert man["modalities"] == list(info.modalities) and man["lists_verified"] is False
        assert man == read_manifest(fdir)
        for split in ("train", "val", "test"):
            data = load_split(fdir, split)
            assert len(data) == c[split] and man["splits"][split]["count"] == c[split]
            for m in info.modalities:
                assert list(data.arrays[m].shape[1:]) == man["arrays"][m]["shape"]
            # the carved lists are written with their sha256; every id keeps its list label
            listed = dict(line.split() for line in (fdir / "splits" / f"{split}.txt").read_text().splitlines())
            assert sha256_file(fdir / "splits" / f"{split}.txt") == man["lists_sha256"][f"splits/{split}.txt"]
            assert [data.classes[y] for y in data.labels] == [listed[i] for i in data.ids]
        assert set(man["source_sha256"]) == {p.name for p in fixtures[ds][1].iterdir()}

    # MLA's class index: position in the sorted class file (released dataset/dataset.py L91); KS: the OGM-GE index
    assert stores["cremad"][1]["classes"] == ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"]
    assert stores["mvsa"][1]["classes"] == ["negative", "neutral", "positive"]
    assert stores["iemocap"][1]["classes"] == ["Angry", "Happy", "Neutral", "Sad"]
    assert stores["food101"][1]["classes"] == ["apple_pie", "hot_dog", "miso_soup"]
    assert stores["ks"][1]["classes"] == [str(i) for i in range(31)]
    ks_test = load_split(stores["ks"][0], "test")
    assert [int(y) for y in ks_test.labels] == [KS_TEST[i] for i in ks_test.ids]


def test_recorded_parameters(stores):
    man = stores["cremad"][1]
    assert man["features"]["audio"] == {"sample_rate": 16000, "n_mels": 128, "frame_length_ms": 25.0,
                                        "frame_shift_ms": 10.0, "n_frames": 1024}
    assert man["features"]["video"] == {"fps": 1, "n_frames": 3, "size": 224}
    assert "workers" not in man["features"] and "verify_lists" not in man["features"]
    assert man["inputs"]["audio"]["kind"] == "wav" and man["inputs"]["video"]["layout"] == "VideoFlash/<id>.flv"
    assert man["arrays"]["video"] == {"dtype": "uint8", "shape": [3, 3, 224, 224]}
    assert stores["ks"][1]["inputs"]["audio"]["kind"] == "track"
    for ds in ("food101", "mvsa", "iemocap"):
        m = stores[ds][1]
        assert m["features"]["image"] == {"size": 256} and m["features"]["text"]["max_len"] == 256
        assert m["features"]["text"]["vocab"] == "file" and m["text"]["vocab_size"] == len(VOCAB)
        assert m["text"]["pad_id"] == 0 and m["arrays"]["text"] == {"dtype": "int64", "shape": [256]}
        assert load_vocab(stores[ds][0]) == VOCAB
    man = stores["iemocap"][1]
    assert man["features"]["face"] == {"crop": "haar", "region": "speaker"}
    det = man["face_detector"]
    assert (det["cascade"], det["scale_factor"], det["min_neighbors"], det["min_size"], det["margin"]) == \
        ("haarcascade_frontalface_default.xml", face_mod.SCALE_FACTOR, face_mod.MIN_NEIGHBORS, list(face_mod.MIN_SIZE),
         face_mod.MARGIN)
    assert det["opencv_version"] == __import__("cv2").__version__ and len(det["cascade_sha256"]) == 64
    # the fixture's frames are flat grey: no face anywhere, so every sample is listed as a fallback
    assert man["face_fallback"] == {s: load_split(stores["iemocap"][0], s).ids for s in ("train", "val", "test")}
    assert man["counts"]["face_fallback"] == {s: man["counts"][s] for s in ("train", "val", "test")}
    assert "face_detector" not in stores["food101"][1] and "face_fallback" not in stores["food101"][1]["counts"]


def test_audio_and_video_content(stores):
    data = {s: load_split(stores["cremad"][0], s) for s in ("train", "val", "test")}
    x = np.concatenate([d.arrays["audio"] for d in data.values()])
    # 1.5 s at 16 kHz, 25 ms windows every 10 ms: 148 frames, zero-padded to 1024
    assert np.isfinite(x).all() and (np.abs(x[:, 0, :148]).sum(axis=2) > 0).all() and not x[:, 0, 148:].any()
    video = {i: v for d in data.values() for i, v in zip(d.ids, d.arrays["video"])}
    for sid, (_label, seconds) in CRE_CLIPS.items():
        frames = video[sid]
        n_kept = (int(seconds * 30) - 1) // 30 + 1  # frames 0, 30, 60, ... of the clip's int(seconds * 30)
        picked = [0, n_kept // 3, 2 * (n_kept // 3)] if n_kept >= 3 else [0, 0, 0]
        left = frames[:, 0, 20:200, 10:100].mean(axis=(1, 2))
        right = frames[:, 0, 20:200, 130:210].mean(axis=(1, 2))
        assert np.allclose(left, [20 + 10 * p for p in picked], atol=4), (sid, left)
        assert (right > 200).all()  # each kept frame is the first of its second
    ks = load_split(stores["ks"][0], "train")
    assert np.isfinite(ks.arrays["audio"]).all()
    assert (np.abs(ks.arrays["audio"][:, 0, :240]).sum(axis=2) > 0).all() and not ks.arrays["audio"][:, 0, 260:].any()


def test_image_text_and_faces(stores):
    food = {s: load_split(stores["food101"][0], s) for s in ("train", "val", "test")}
    images = {i: x for d in food.values() for i, x in zip(d.ids, d.arrays["image"])}
    text = {i: t for d in food.values() for i, t in zip(d.ids, d.arrays["text"])}
    assert (images["apple_pie_2"][:, :4] < 250).all()  # 60x90: the centre crop cuts the bright top band
    assert (images["apple_pie_1"][:, :20] > 240).all()  # 80x60: full height kept, band on top
    ids = VOCAB.index
    assert text["apple_pie_1"][:9].tolist() == [ids("apple"), ids("pie"), ids("##s"), ids(","), ids("a"),
                                               ids("good"), ids("day"), ids("!"), 0]
    assert text["apple_pie_3"][:3].tolist() == [ids("cafe"), ids("apple"), ids("pie")]
    assert stores["food101"][1]["notes"]["records_from"]["train"] == {"train.jsonl": 8, "dev.jsonl": 1}
    assert stores["mvsa"][1]["notes"]["records_from"]["test"] == {"test.jsonl": 2, "dev.jsonl": 1}
    assert "(12 checked)" in stores["mvsa"][1]["notes"]["annotations"]

    iemo = {s: load_split(stores["iemocap"][0], s) for s in ("train", "val", "test")}
    faces = {i: x for d in iemo.values() for i, x in zip(d.ids, d.arrays["image"])}
    for sid, (_l, _c, (start, end), _t) in IEMO.items():
        second = int(np.ceil((start + end) / 2 * 25)) // 25  # first frame at or after the midpoint
        # the speaker's half: left for the session's motion-capture actor (Ses01F: F), right otherwise
        level = 20 + 10 * second if sid[5] == sid.rsplit("_", 1)[1][0] else 200 - 10 * second
        assert abs(faces[sid][0].mean() - level) < 4, (sid, faces[sid][0].mean(), level)
    assert stores["iemocap"][1]["notes"]["face_regions"] == {"left": 4, "right": 5}
    assert stores["iemocap"][1]["notes"]["label_vs_emo_evaluation"]["Happy"] == {"exc": 1, "hap": 1}
    texts = {i: t for d in iemo.values() for i, t in zip(d.ids, d.arrays["text"])}
    assert texts["Ses02M_script01_1_M000"][:4].tolist() == [ids("un"), ids("##hap"), ids("##py"), ids("!")]
    assert texts["Ses01F_impro01_F000"][:3].tolist() == [1, 1, ids(".")]  # "excuse", "me": not in the vocabulary


def test_rerun_and_workers_are_byte_identical(fixtures, stores, vocab_file, tmp_path):
    raw, splits = fixtures["mvsa"]
    prepare("mvsa", raw, splits, tmp_path / "a", {**opts_for("mvsa", vocab_file), "workers": 2},
            split_seed=SEED, val_fraction=VAL)
    assert tree(tmp_path / "a") == tree(stores["mvsa"][0])
    src = tmp_path / "mvsa_raw"  # an error inside a worker process still names the file
    shutil.copytree(raw, src)
    (src / "data" / "4198.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MediaError, match=re.escape(str(src / "data" / "4198.jpg"))):
        prepare("mvsa", src, splits, tmp_path / "a", {**opts_for("mvsa", vocab_file), "workers": 2},
                split_seed=SEED, val_fraction=VAL)
    assert tree(tmp_path / "a") == tree(stores["mvsa"][0])
    raw, splits = fixtures["cremad"]
    prepare("cremad", raw, splits, tmp_path / "b", opts_for("cremad", vocab_file), split_seed=SEED, val_fraction=VAL)
    assert tree(tmp_path / "b") == tree(stores["cremad"][0])
    # another split seed changes the carve, not the test split
    man = prepare("cremad", raw, splits, tmp_path / "c", opts_for("cremad", vocab_file), split_seed=5, val_fraction=VAL)
    assert man["splits"]["test"] == stores["cremad"][1]["splits"]["test"]


def test_kinetics_unavailable_clips_are_listed_never_dropped(fixtures, stores, vocab_file, tmp_path):
    man = stores["ks"][1]
    assert man["excluded"] == {"train": [KS_GONE], "test": []}
    assert man["notes"]["allow_missing"]["listed"] == 1 and man["notes"]["allow_missing"]["present_but_listed"] == 0
    raw, splits = fixtures["ks"]
    with pytest.raises(MissingFilesError, match=rf"(?s)1 of 10 input files.*\*\*/{KS_GONE}\.mp4.*allow-missing"):
        prepare("ks", raw, splits, tmp_path / "x", opts_for("ks", vocab_file), split_seed=SEED, val_fraction=VAL)
    bad = tmp_path / "listing.txt"
    write_lines(bad, [KS_GONE, "not_a_clip_000000_000010"])
    with pytest.raises(SplitFormatError, match=rf"{bad}:2: clip 'not_a_clip_000000_000010'"):
        prepare("ks", raw, splits, tmp_path / "x", {**opts_for("ks", vocab_file), "allow_missing": str(bad)},
                split_seed=SEED, val_fraction=VAL)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("ds,victim,damage", [
    ("cremad", "VideoFlash/1002_IWL_SAD_XX.flv", "delete"),
    ("cremad", "VideoFlash/1002_IWL_SAD_XX.flv", "garbage"),
    ("iemocap", "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_M001.wav", "truncate"),
    ("food101", "images/test/hot_dog/hot_dog_9.jpg", "truncate"),
])
def test_bad_file_is_named_and_nothing_is_written(fixtures, stores, vocab_file, tmp_path, ds, victim, damage):
    src = tmp_path / "raw"
    shutil.copytree(fixtures[ds][0], src)
    path = src / victim
    if damage == "delete":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00not a video" * 50)
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    out = tmp_path / "features" / "store"
    shutil.copytree(stores[ds][0], out)
    before = tree(out)
    with pytest.raises(MediaError, match=re.escape(str(path))):
        prepare(ds, src, fixtures[ds][1], out, opts_for(ds, vocab_file), split_seed=SEED, val_fraction=VAL)
    assert tree(out) == before and [p.name for p in out.parent.iterdir()] == ["store"]


def test_list_and_source_errors_name_the_culprit(fixtures, vocab_file, tmp_path):
    raw, splits = fixtures["cremad"]
    bad = tmp_path / "cre"
    shutil.copytree(splits, bad)
    lines = (bad / "my_train_cre.txt").read_text().splitlines()
    lines[1] = lines[1].replace(" Anger", " Sad")
    write_lines(bad / "my_train_cre.txt", lines)
    with pytest.raises(SplitFormatError, match=rf"my_train_cre.txt:2: clip '1002_IEO_ANG_HI' is labelled 'Sad'"):
        prepare("cremad", raw, bad, tmp_path / "x", UNVERIFIED, split_seed=SEED, val_fraction=VAL)
    # the default checks the lists against the official ones (sha256 and record counts pinned in sources.yaml)
    with pytest.raises(SplitFormatError, match=r"my_train_cre.txt: 9 records, expected 6698; these are not the "
                                               r"official lists.*set config key prepare.cremad.verify_lists: false "
                                               r"\(command line: --set prepare.cremad.verify_lists=false\)"):
        prepare("cremad", raw, splits, tmp_path / "x", {}, split_seed=SEED, val_fraction=VAL)

    raw, splits = fixtures["food101"]
    src = tmp_path / "food"
    shutil.copytree(raw, src)
    text = (src / "train.jsonl").read_text().replace('"label": "hot_dog"', '"label": "miso_soup"', 1)
    (src / "train.jsonl").write_text(text)
    with pytest.raises(SplitFormatError, match=r"label 'hot_dog' of 'hot_dog_1' differs from 'miso_soup' at .*train.jsonl:3"):
        prepare("food101", src, splits, tmp_path / "x", opts_for("food101", vocab_file), split_seed=SEED, val_fraction=VAL)
    (src / "dev.jsonl").write_bytes(b'{"img": "images/train/x.jpg", "text": "caf\xe9", "label": "hot_dog"}\n')
    with pytest.raises(SplitFormatError, match=r"dev.jsonl:1: not valid UTF-8"):
        prepare("food101", src, splits, tmp_path / "x", opts_for("food101", vocab_file), split_seed=SEED, val_fraction=VAL)
    (src / "dev.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"dev.jsonl"):
        prepare("food101", src, splits, tmp_path / "x", opts_for("food101", vocab_file), split_seed=SEED, val_fraction=VAL)

    raw, splits = fixtures["mvsa"]
    src = tmp_path / "mvsa"
    shutil.copytree(raw, src)
    ann = (src / "labelResultAll.txt").read_text().replace("4445\tneutral,neutral", "4445\tneutral,positive")
    (src / "labelResultAll.txt").write_text(ann)
    with pytest.raises(SplitFormatError, match=r"labelResultAll.txt:4: annotations text=neutral, image=positive"):
        prepare("mvsa", src, splits, tmp_path / "x", opts_for("mvsa", vocab_file), split_seed=SEED, val_fraction=VAL)

    raw, splits = fixtures["iemocap"]
    with pytest.raises(VocabError, match="bert-base-uncased vocab.txt.*--vocab"):
        prepare("iemocap", raw, splits, tmp_path / "x", UNVERIFIED, split_seed=SEED, val_fraction=VAL)
    with pytest.raises(VocabError, match="missing WordPiece vocabulary .*nowhere.txt"):
        prepare("iemocap", raw, splits, tmp_path / "x", {**UNVERIFIED, "text": {"vocab": str(tmp_path / "nowhere.txt")}},
                split_seed=SEED, val_fraction=VAL)
    with pytest.raises(VocabError, match=rf"{re.escape(str(vocab_file))}: sha256 [0-9a-f]{{64}}, but .*vocab_sha256 expects "
                                         f"{'0' * 64}"):
        prepare("iemocap", raw, splits, tmp_path / "x",
                {**UNVERIFIED, "text": {"vocab": str(vocab_file), "vocab_sha256": "0" * 64}}, split_seed=SEED, val_fraction=VAL)
    assert not (tmp_path / "x").exists()
    src = tmp_path / "iemo"
    shutil.copytree(raw, src)
    (src / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").unlink()
    with pytest.raises(MissingFilesError, match="Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"):
        prepare("iemocap", src, splits, tmp_path / "x", opts_for("iemocap", vocab_file), split_seed=SEED, val_fraction=VAL)
    for bad_opts, key in [({"bogus": 1}, "prepare.iemocap.bogus"), ({"video": {}}, "prepare.iemocap.video"),
                          ({"audio": {"n_mels": 0}}, "prepare.iemocap.audio.n_mels"),
                          ({"face": {"crop": "dlib"}}, "prepare.iemocap.face.crop")]:
        with pytest.raises(ValueError, match=key):
            prepare("iemocap", raw, splits, tmp_path / "x", bad_opts, split_seed=SEED, val_fraction=VAL)
    assert not (tmp_path / "x").exists()


def test_built_vocabulary_uses_the_training_split_only(fixtures, tmp_path):
    raw, splits = fixtures["iemocap"]
    man = prepare("iemocap", raw, splits, tmp_path / "f", {**UNVERIFIED, "text": {"vocab": "build"}},
                  split_seed=SEED, val_fraction=VAL)
    vocab = load_vocab(tmp_path / "f")
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and man["features"]["text"]["vocab"] == "build"
    train_ids = load_split(tmp_path / "f", "train").ids
    train_words = {w for s in train_ids for w in basic_tokenize(IEMO[s][3])}
    other_words = {w for s in IEMO if s not in train_ids for w in basic_tokenize(IEMO[s][3])} - train_words
    assert train_words <= set(vocab) and other_words and not other_words & set(vocab)
    assert man["text"]["built_from"] == "train"


def test_cli_prepare(fixtures, stores, vocab_file, tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(split_seed=SEED, val_fraction=VAL, prepare={"food101": UNVERIFIED})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    raw, splits = fixtures["food101"]
    args = ["prepare", "--config", str(tmp_path / "c.yaml"), "--dataset", "food101", "--raw", str(raw),
            "--splits", str(splits), "--out", str(tmp_path / "out")]
    assert cli.main([*args, "--vocab", str(vocab_file)]) == 0
    assert tree(tmp_path / "out") == tree(stores["food101"][0])
    assert cli.main(args) == 1 and "vocab.txt" in capsys.readouterr().err
    assert cli.main([*args[:-1], str(tmp_path / "o2"), "--dataset", "builtin_av"]) == 1
    assert "no preparation for dataset 'builtin_av'" in capsys.readouterr().err


def test_wordpiece_and_face_crop(tmp_path):
    assert basic_tokenize("Héllo,\tWORLD!\x00 naïve 中文 e\u0301") == ["hello", ",", "world", "!", "naive", "中", "文", "e"]
    tok = WordPiece(VOCAB)
    assert tok.tokenize("Apple pies") == ["apple", "pie", "##s"] and tok.tokenize("unhappy") == ["un", "##hap", "##py"]
    assert tok.tokenize("xyz " + "a" * 101) == ["[UNK]", "[UNK]"]
    assert tok.encode("apple pie pie", 2).tolist() == [9, 10] and tok.encode("", 3).tolist() == [0, 0, 0]
    built = build_vocab(["b a b", "c b"], size=20, min_freq=2)
    assert built == [*SPECIAL, "a", "b", "c", "##a", "##b", "##c"]
    dup = tmp_path / "v.txt"
    write_lines(dup, ["[PAD]", "[UNK]", "x", "x"])
    with pytest.raises(VocabError, match=rf"{dup}:4: duplicate token 'x'"):
        WordPiece.from_file(dup)
    frame = np.zeros((40, 100, 3), np.uint8)
    frame[:, :50] = 60
    frame[:, 50:] = 180
    for crop in ("center", "haar"):  # no face in a flat frame: haar falls back to the centre square, and says so
        left, right = face_crop(frame, 20, "left", crop), face_crop(frame, 20, "right", crop)
        full = face_crop(frame, 40, crop=crop)
        assert left.array.mean() == 60 and right.array.mean() == 180
        assert (left.box, right.box) == ((5, 0, 40), (5, 0, 40))
        assert full.array.shape == (3, 40, 40) and full.array[:, :, :20].mean() == 60 and full.box == (30, 0, 40)
        assert left.fallback is right.fallback is full.fallback is (crop == "haar")


def test_missing_cascade_is_named(monkeypatch, tmp_path):
    import cv2

    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / face_mod.CASCADE))):
        face_mod.detector_info()


def test_haar_face_crop_centres_on_the_face_and_falls_back_visibly():
    img = Image.new("RGB", (240, 120), (60, 60, 60))
    draw_face(img, 170, 55, 22)  # in the right half, off its centre
    frame = np.asarray(img).copy()
    box = face_mod.detect_face(frame[:, 120:])
    assert box is not None
    x, y, w, h = box
    assert abs(x + w / 2 - 50) <= 2 and abs(y + h / 2 - 55) <= 2  # the drawn face's centre in the right half
    got = face_crop(frame, 32, "right")
    left, top, side = got.box
    assert not got.fallback and side == round(w * (1 + 2 * face_mod.MARGIN))
    assert abs(left + side / 2 - 50) <= 2 and abs(top + side / 2 - 55) <= 2  # centred on the face
    square = Image.fromarray(frame[:, 120:][top:top + side, left:left + side]).resize((32, 32), Image.BILINEAR)
    assert np.array_equal(got.array, np.asarray(square).transpose(2, 0, 1))
    centre = face_crop(frame, 32, "right", "center")
    assert centre.box == (0, 0, 120) and not centre.fallback and not np.array_equal(centre.array, got.array)
    # the full frame finds the same face; the crop is shifted inside the frame where it would cross an edge
    assert face_crop(frame, 32).box == (left + 120, top, side)
    assert face_mod.face_square((200, 2, 40, 40), 240, 120) == (184, 0, 56)
    assert face_mod.face_square((10, 10, 200, 200), 240, 120) == (50, 0, 120)  # cut to the shorter side
    # the same input twice: the same bytes
    assert face_crop(frame.copy(), 32, "right").array.tobytes() == got.array.tobytes()
    # a blank frame: the centre square, flagged as a fallback
    blank = face_crop(np.full((120, 240, 3), 90, np.uint8), 32, "right")
    assert blank.fallback and blank.box == (0, 0, 120) and (blank.array == 90).all()
    assert face_mod.pick_box([]) is None
    boxes = np.array([[5, 9, 30, 30], [40, 3, 30, 30], [0, 3, 30, 30], [1, 1, 20, 20]])
    assert face_mod.pick_box(boxes) == (0, 3, 30, 30)  # the largest; ties: topmost, then leftmost
    with pytest.raises(ValueError, match="uint8"):
        face_crop(frame.astype(np.float32), 32)
    with pytest.raises(ValueError, match="left region of a 1 x 120 frame is empty"):
        face_crop(frame[:, :1], 32, "left")
    with pytest.raises(ValueError, match="face crop 'dlib'"):
        face_crop(frame, 32, crop="dlib")


def test_iemocap_detected_faces_and_listed_fallbacks(fixtures, stores, vocab_file, tmp_path, capsys):
    raw, splits = fixtures["iemocap"]
    src = tmp_path / "raw"
    shutil.copytree(raw, src)
    video = src / "Session1" / "dialog" / "avi" / "DivX" / "Ses01F_impro01.avi"
    write_face_video(video, 8, 5)  # a face on the left: Ses01F's F utterances (the left half)
    capsys.readouterr()
    man = prepare("iemocap", src, splits, tmp_path / "a", opts_for("iemocap", vocab_file), split_seed=SEED,
                  val_fraction=VAL)
    assert "prepare iemocap: no face found in 7 of 9 frames" in capsys.readouterr().err
    found = {"Ses01F_impro01_F000", "Ses01F_impro01_F001"}
    data = {s: load_split(tmp_path / "a", s) for s in ("train", "val", "test")}
    assert man["face_fallback"] == {s: [i for i in d.ids if i not in found] for s, d in data.items()}
    assert sum(man["counts"]["face_fallback"].values()) == 7
    faces = {i: x for d in data.values() for i, x in zip(d.ids, d.arrays["image"])}
    for sid in found:
        start, end = IEMO[sid][2]
        crop = face_crop(frame_at(video, (start + end) / 2), 256, "left")
        assert not crop.fallback and np.array_equal(faces[sid], crop.array)
        assert 40 <= crop.box[0] + crop.box[2] / 2 <= 90 and abs(crop.box[1] + crop.box[2] / 2 - 80) <= 4
    # the same inputs again (in two worker processes): the same bytes, the same listing
    prepare("iemocap", src, splits, tmp_path / "b", {**opts_for("iemocap", vocab_file), "workers": 2},
            split_seed=SEED, val_fraction=VAL)
    assert tree(tmp_path / "b") == tree(tmp_path / "a")
    # crop: center never detects, so nothing falls back and no detector is recorded
    man = prepare("iemocap", src, splits, tmp_path / "c", {**opts_for("iemocap", vocab_file), "face": {"crop": "center"}},
                  split_seed=SEED, val_fraction=VAL)
    assert "face_detector" not in man and "face_fallback" not in man and "face_fallback" not in man["counts"]
