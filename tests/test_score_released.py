"""Scoring the authors' released MLA checkpoints (mla/score_released.py, workflow/rules/released.smk).

Synthetic checkpoints in [C]'s format (test_weights: real parameter names, scaled-down shapes) are
converted by the safe path and scored on tiny feature stores made by ``mla prepare`` from fixtures
in the datasets' layouts (test_real_datasets). The expected accuracies are computed here from the
SOURCE parameters by functional forward passes (test_weights), on inputs normalised as [C]'s test
loaders do (written out below, not taken from the module under test), with [C]'s fixed weights in
[C]'s modality order and its batch-level entropy gate. Each fixture is checked to tell the right
computation from the plausible wrong ones (no class permutation, catalog modality order, our
training's pixel normalisation), so these tests fail when the scoring makes one of those mistakes.
"""
from __future__ import annotations

import re

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mla import config
from mla.cli import main as cli_main
from mla.data.prepare import prepare
from mla.score_released import class_mapping
from test_paper_config import _job_counts, _snakemake, raw_yaml
from test_real_datasets import VOCAB as WORDS, write_jsonl, write_lines, write_video, write_wav
from test_weights import (D, M3AE_OPTS, VOCAB, c_port_m3ae, ogm_resnet18, ref_port_m3ae, ref_resnet18,
                          released_checkpoint)

# [C]'s test transforms: ImageNet mean/std per channel after /255 (dataset/dataset.py L139, L418, L714).
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
BLOCK, EVAL_BS = 8, 16  # mla_released eval_block and eval_batch_size (a multiple of it)
WIDTH = 4               # tiny OGM-GE ResNet-18


# --------------------------------------------------------------- fixtures: stores and checkpoints
def make_mvsa(root: Path, n_train: int = 9, test_labels: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """MVSA-Single layout (as test_real_datasets.make_mvsa) with random-noise images and texts."""
    rng = np.random.default_rng(7)
    raw, splits = root / "raw", root / "splits"
    (raw / "data").mkdir(parents=True)
    train_labels = [("negative", "neutral", "positive")[i % 3] for i in range(n_train)]
    rows = {"train": [], "test": []}
    jsonl = {"train.jsonl": [], "dev.jsonl": [], "test.jsonl": []}
    for role, labels in (("train", train_labels), ("test", list(test_labels))):
        for i, label in enumerate(labels):
            sid = str(100 * (role == "test") + 1000 + i)
            Image.fromarray(rng.integers(0, 256, (20 + i % 5, 24, 3), dtype=np.uint8)).save(raw / "data" / f"{sid}.jpg")
            text = " ".join(rng.choice(WORDS[5:], size=int(rng.integers(2, 12))))
            jsonl[f"{role}.jsonl"].append({"id": sid, "label": label, "text": text, "img": f"data/{sid}.jpg"})
            rows[role].append(f"{sid}.jpg {label}")
    for name, recs in jsonl.items():
        write_jsonl(raw / name, recs)
    write_lines(splits / "my_train_mvsa.txt", rows["train"])
    write_lines(splits / "my_test_mvsa.txt", rows["test"])
    write_lines(splits / "stat_mvsa.txt", ["positive", "neutral", "negative"], final=False)
    return raw, splits


EMOTIONS = {"ANG": "Anger", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}


def make_cremad(root: Path, codes: dict[str, list[str]]) -> tuple[Path, Path]:
    """CREMA-D layout (as test_real_datasets.make_cremad): one tone per clip, so the fbanks differ."""
    raw, splits = root / "raw", root / "splits"
    for role, role_codes in codes.items():
        lines = []
        for i, code in enumerate(role_codes):
            sid = f"{1001 + i}_{'DFA' if role == 'train' else 'IEO'}_{code}_XX"
            write_wav(raw / "AudioWAV" / f"{sid}.wav", 0.6 + 0.05 * i, freq=180.0 + 97.0 * i)
            write_video(raw / "VideoFlash" / f"{sid}.flv", "flv", "flv", 2.2 + (i % 3), 10)
            lines.append(f"{sid}.flv {EMOTIONS[code]}")
        write_lines(splits / f"my_{role}_cre.txt", lines)
    write_lines(splits / "stat_cre.txt", list(EMOTIONS.values()), final=False)
    return raw, splits


PREPARE = {
    "mvsa": {"verify_lists": False, "image": {"size": 16}, "text": {"max_len": 8}},
    "cremad": {"verify_lists": False, "audio": {"n_mels": 16, "n_frames": 48}, "video": {"size": 32}},
}
M3AE_SPEC = {"name": "m3ae", **{k: v for k, v in M3AE_OPTS.items() if k != "out_dim"}, "pool": "all", "gelu": "exact",
             "ln_eps": 1e-5}
MODELS = {
    "mvsa": {"feature_dim": D, "encoders": {"image": M3AE_SPEC, "text": M3AE_SPEC}},
    "cremad": {"feature_dim": 8 * WIDTH, "encoders": {m: {"name": "resnet18", "width": WIDTH, "stem": "imagenet"}
                                                      for m in ("audio", "video")}},
}


def project(tmp_path: Path, dataset: str, raw: Path, splits: Path, vocab: Path | None,
            released: dict | None = None) -> tuple[Path, dict]:
    """A project directory with ``dataset``'s store at data/features/<dataset> and a config for it."""
    opts = json.loads(json.dumps(PREPARE[dataset]))
    if vocab is not None:
        opts["text"]["vocab"] = str(vocab)
    man = prepare(dataset, raw, splits, tmp_path / "data" / "features" / dataset, opts, split_seed=0, val_fraction=0.2)
    cfg = raw_yaml()
    cfg.update(datasets=[dataset], methods=["mla_released"], weights={}, device="cpu", threads=1,
               missing={**cfg["missing"], "datasets": []}, ablation={**cfg["ablation"], "datasets": []},
               analysis={**cfg["analysis"], "datasets": []}, prepare={dataset: opts},
               raw={dataset: cfg["raw"][dataset] if dataset == "cremad" else {"path": str(raw)}})
    cfg["model"]["datasets"] = {dataset: MODELS[dataset]}
    cfg["training"]["eval_batch_size"] = EVAL_BS
    cfg["method_options"]["mla_released"]["eval_block"] = BLOCK
    if released is not None:
        cfg["released_checkpoints"] = {dataset: released}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    config.load(tmp_path / "c.yaml")
    return tmp_path / "c.yaml", man


def store_test(feat_dir: Path, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The test split's arrays, read from the shards the manifest lists (not through mla)."""
    man = json.loads((feat_dir / "manifest.json").read_text())
    shards = man["splits"]["test"]["shards"]
    return {k: np.concatenate([np.load(feat_dir / s["files"][k]["file"]) for s in shards]) for k in ("labels", *kinds)}


def convert_and_score(tmp_path: Path, cfg_path: Path, dataset: str, ckpt: dict, options: dict,
                      *extra: str) -> dict:
    torch.save(ckpt, tmp_path / "authors.pth")
    assert cli_main(["convert-weights", "--kind", "released", "--src", str(tmp_path / "authors.pth"),
                     "--out", str(tmp_path / "conv.pt"), "--options", json.dumps(options)]) == 0
    out = tmp_path / "scores"
    assert cli_main(["score-released", "--config", str(cfg_path), "--dataset", dataset,
                     "--checkpoint", str(tmp_path / "conv.pt"), "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


# --------------------------------------------------------------- the expected numbers, by hand
def pixels(x: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    return (torch.from_numpy(x).double() / 255 - torch.as_tensor(mean).double()) / torch.as_tensor(std).double()


def gate(logits: list[torch.Tensor]) -> torch.Tensor:
    """[C] calculate_entropy + gating on ONE test batch: softmax over the batch axis, entropy over B x C."""
    h = torch.stack([-(l.softmax(0) * l.log_softmax(0)).sum() for l in logits])
    w = torch.exp(h.max() - h) / torch.exp(h.max() - h).sum()
    return sum(wi * li for wi, li in zip(w, logits))


def expected(per: dict[str, torch.Tensor], order: tuple[str, ...], weights: tuple[float, ...],
             labels: np.ndarray, ckpt_classes: list[str], store_classes: list[str]) -> dict[str, float]:
    """Accuracies (%) from per-modality logits whose columns are the checkpoint's classes."""
    truth = [store_classes[k] for k in labels]

    def acc(logits: torch.Tensor) -> float:
        names = [ckpt_classes[j] for j in logits.argmax(1).tolist()]
        return round(100.0 * sum(a == b for a, b in zip(names, truth)) / len(truth), 4)

    blocks = range(0, len(labels), BLOCK)
    dynamic = torch.cat([gate([per[m][s:s + BLOCK] for m in order]) for s in blocks])
    return {**{m: acc(per[m]) for m in order}, "fixed": acc(sum(w * per[m] for w, m in zip(weights, order))),
            "dynamic": acc(dynamic)}


def observed(m: dict) -> dict[str, float]:
    return {**{k: m["test"][k] for k in m["modalities"]}, **m["fusion"]}


# --------------------------------------------------------------- tests
def test_class_mapping_follows_the_sorted_rule_or_the_given_order():
    store = ["positive", "negative", "neutral"]
    ckpt, rows, rule = class_mapping("mvsa", store)
    assert ckpt == ["negative", "neutral", "positive"] and rows == [2, 0, 1] and "sorted" in rule
    assert class_mapping("mvsa", sorted(store))[1] == [0, 1, 2]
    assert class_mapping("mvsa", store, ["neutral", "positive", "negative"])[1] == [1, 2, 0]
    with pytest.raises(ValueError, match="not the feature store's"):
        class_mapping("mvsa", store, ["neutral", "positive", "angry"])
    with pytest.raises(ValueError, match=r"released_checkpoints\.ks\.classes"):
        class_mapping("ks", [str(i) for i in range(31)])  # OGM-GE's KS lists name no classes


def test_released_checkpoints_config_key():
    assert config.load(Path(__file__).parents[1] / "config" / "paper.yaml")["released_checkpoints"] == {}
    with pytest.raises(config.ConfigError, match=r"released_checkpoints\.mvsa: mvsa is not in datasets"):
        config.load(Path(__file__).parents[1] / "config" / "paper.yaml",
                    ["datasets=[cremad]", "released_checkpoints={mvsa: {path: a.pth}}"])
    with pytest.raises(config.ConfigError, match=r"released_checkpoints\.cremad\.sha256"):
        config.load(Path(__file__).parents[1] / "config" / "paper.yaml",
                    ["released_checkpoints={cremad: {path: a.pth, sha256: abc}}"])


def test_image_text_checkpoint_scores_as_computed_by_hand(tmp_path, monkeypatch):
    """MVSA: [C]'s text encoder is mae_a, stepped and fused first; images with ImageNet mean/std;
    the head's rows follow the sorted names, mapped onto a store whose class order differs."""
    test_labels = ("negative",) * 13 + ("positive",) * 8 + ("neutral",) * 5
    raw, splits = make_mvsa(tmp_path / "fixture", test_labels=test_labels)
    vocab = tmp_path / "vocab.txt"
    write_lines(vocab, WORDS)
    assert len(WORDS) <= VOCAB
    cfg_path, man = project(tmp_path, "mvsa", raw, splits, vocab)
    monkeypatch.chdir(tmp_path)
    feat = tmp_path / "data" / "features" / "mvsa"
    rng = np.random.default_rng(11)
    ckpt = released_checkpoint({**c_port_m3ae(rng, "mae_a."), **c_port_m3ae(rng, "mae_v.")}, 3, D, rng)
    sd = {k[len("module."):]: v.double() for k, v in ckpt["model"].items()}
    arrays = store_test(feat, ("image", "text"))
    with torch.no_grad():
        feats = {"text": ref_port_m3ae(sd, torch.from_numpy(arrays["text"]), "text", "mae_a."),
                 "image": ref_port_m3ae(sd, pixels(arrays["image"]), "image", "mae_v.")}
        ours_px = ref_port_m3ae(sd, pixels(arrays["image"], 0.5, 0.25), "image", "mae_v.")  # mla/batches.py's
    head = lambda f: f @ sd["fusion_module.fc_out.weight"].T + sd["fusion_module.fc_out.bias"]  # noqa: E731
    per = {m: head(f) for m, f in feats.items()}
    ckpt_classes = sorted(man["classes"])

    m = convert_and_score(tmp_path, cfg_path, "mvsa", ckpt, {"m3ae": M3AE_OPTS})
    assert man["classes"] == ckpt_classes  # our store sorts the names as [C] does: identity
    assert m["classes"]["head_rows"] == [0, 1, 2] and not m["classes"]["permuted"]
    assert m["modalities"] == ["text", "image"] and m["fusion_rules"]["fixed"] == {"text": 0.55, "image": 0.45}
    assert m["test_count"] == len(test_labels) == m["official_test_count"]
    assert m["checkpoint"]["source_sha256"] and m["checkpoint"]["saved"]["saved_epoch"] == 7
    assert "ImageNet" in m["inputs"]["image"] and m["inputs"]["pixels"] == "imagenet"  # config/paper.yaml: [C]'s
    want = expected(per, ("text", "image"), (0.55, 0.45), arrays["labels"], ckpt_classes, man["classes"])
    assert observed(m) == want
    # The fixture tells right from wrong: catalog order for the fixed weights, our pixel normalisation.
    assert expected(per, ("image", "text"), (0.55, 0.45), arrays["labels"], ckpt_classes, man["classes"]) != want
    assert expected({**per, "image": head(ours_px)}, ("text", "image"), (0.55, 0.45), arrays["labels"],
                    ckpt_classes, man["classes"]) != want

    # A store whose class order is not [C]'s: the same samples, labels re-indexed to another order.
    order = ["positive", "negative", "neutral"]
    remap = np.array([order.index(c) for c in man["classes"]])
    labels = remap[arrays["labels"]]
    shard_man = json.loads((feat / "manifest.json").read_text())
    for split in ("train", "val", "test"):
        for shard in shard_man["splits"][split]["shards"]:
            path = feat / shard["files"]["labels"]["file"]
            np.save(path, remap[np.load(path)])
            shard["files"]["labels"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    shard_man["classes"] = order
    (feat / "manifest.json").write_text(json.dumps(shard_man))
    assert cli_main(["score-released", "--config", str(cfg_path), "--dataset", "mvsa",
                     "--checkpoint", str(tmp_path / "conv.pt"), "--out", str(tmp_path / "perm")]) == 0
    m2 = json.loads((tmp_path / "perm" / "metrics.json").read_text())
    assert m2["classes"]["store"] == order and m2["classes"]["checkpoint"] == ckpt_classes
    assert m2["classes"]["head_rows"] == [2, 0, 1] and m2["classes"]["permuted"]
    assert observed(m2) == want == expected(per, ("text", "image"), (0.55, 0.45), labels, ckpt_classes, order)
    assert expected(per, ("text", "image"), (0.55, 0.45), labels, order, order) != want  # rows left unpermuted


def test_audio_video_checkpoint_scores_as_computed_by_hand(tmp_path, monkeypatch):
    """CREMA-D: fbanks as stored (no normalisation), frames with ImageNet mean/std, (B, T, C, H, W)."""
    codes = {"train": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"] * 2,
             "test": ["ANG"] * 5 + ["SAD"] * 3 + ["HAP", "NEU", "FEA", "DIS"]}
    raw, splits = make_cremad(tmp_path / "fixture", codes)
    cfg_path, man = project(tmp_path, "cremad", raw, splits, None)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    model = {**ogm_resnet18(rng, "audio_net.", 1, WIDTH), **ogm_resnet18(rng, "visual_net.", 3, WIDTH)}
    ckpt = released_checkpoint(model, 6, 8 * WIDTH, rng)
    sd = {k[len("module."):]: v.double() for k, v in ckpt["model"].items() if v.is_floating_point()}
    arrays = store_test(tmp_path / "data" / "features" / "cremad", ("audio", "video"))
    n = len(arrays["labels"])
    with torch.no_grad():
        a = ref_resnet18(sd, "audio_net.", torch.from_numpy(arrays["audio"]).double()).mean((2, 3))
        v = ref_resnet18(sd, "visual_net.", pixels(arrays["video"]).flatten(0, 1))
        v = v.view(n, 3, *v.shape[1:]).mean((1, 3, 4))
    # Random ResNet features share one large positive direction, which alone would decide every
    # prediction: the head's bias cancels the mean audio feature, so the audio predictions vary.
    bias = -(sd["fusion_module.fc_out.weight"] @ a.mean(0))
    ckpt["model"]["module.fusion_module.fc_out.bias"] = bias.float()
    sd["fusion_module.fc_out.bias"] = bias.float().double()
    head = lambda f: f @ sd["fusion_module.fc_out.weight"].T + sd["fusion_module.fc_out.bias"]  # noqa: E731
    per = {"audio": head(a), "video": head(v)}
    assert len(set(per["audio"].argmax(1).tolist())) > 1
    m = convert_and_score(tmp_path, cfg_path, "cremad", ckpt, {"resnet18": {"width": WIDTH}})
    assert m["modalities"] == ["audio", "video"] and m["test_count"] == n == 12
    assert "not normalised" in m["inputs"]["audio"] and m["classes"]["head_rows"] == list(range(6))
    want = expected(per, ("audio", "video"), (0.55, 0.45), arrays["labels"], sorted(man["classes"]), man["classes"])
    assert observed(m) == want
    with torch.no_grad():  # the fixture tells [C]'s fbank from a standardised one
        z = torch.from_numpy(arrays["audio"]).double()
        a2 = ref_resnet18(sd, "audio_net.", (z - z.mean()) / z.std()).mean((2, 3))
    assert expected({**per, "audio": head(a2)}, ("audio", "video"), (0.55, 0.45), arrays["labels"],
                    man["classes"], man["classes"])["audio"] != want["audio"]
    # Our inputs instead of [C]'s (model.inputs), recorded as such; the standardised fbank changes the audio scores.
    assert cli_main(["score-released", "--config", str(cfg_path), "--dataset", "cremad",
                     "--set", "model.inputs={pixels: centred, fbank: standardised}",
                     "--checkpoint", str(tmp_path / "conv.pt"), "--out", str(tmp_path / "pipe")]) == 0
    p = json.loads((tmp_path / "pipe" / "metrics.json").read_text())
    assert p["inputs"]["fbank"] == "standardised" and p["test_count"] == n and "training split" in p["inputs"]["audio"]
    assert p["test"]["audio"] != m["test"]["audio"]


def test_errors_name_the_culprit(tmp_path, monkeypatch, capsys):
    codes = {"train": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"], "test": ["ANG", "SAD"]}
    raw, splits = make_cremad(tmp_path / "fixture", codes)
    cfg_path, _ = project(tmp_path, "cremad", raw, splits, None, released={"path": "x", "sha256": "0" * 64})
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    model = {**ogm_resnet18(rng, "audio_net.", 1, WIDTH), **ogm_resnet18(rng, "visual_net.", 3, WIDTH)}
    torch.save(released_checkpoint(model, 6, 8 * WIDTH, rng), tmp_path / "authors.pth")
    assert cli_main(["convert-weights", "--kind", "released", "--src", str(tmp_path / "authors.pth"),
                     "--out", str(tmp_path / "conv.pt"), "--options", json.dumps({"resnet18": {"width": WIDTH}})]) == 0
    args = ["score-released", "--config", str(cfg_path), "--dataset", "cremad", "--out", str(tmp_path / "o")]
    capsys.readouterr()
    assert cli_main([*args, "--checkpoint", str(tmp_path / "conv.pt")]) == 1
    assert "authors.pth: sha256" in capsys.readouterr().err  # the listed sha256 is not the file's
    assert cli_main([*args, "--checkpoint", str(tmp_path / "none.pt"), "--set", "released_checkpoints={}"]) == 1
    assert "none.pt" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_released_rules_join_the_dag_only_when_listed(tmp_path):
    cfg = raw_yaml()
    cfg["released_checkpoints"] = {"cremad": {"path": str(tmp_path / "authors_cremad.pth")},
                                   "food101": {"path": str(tmp_path / "authors_food.pth")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = _snakemake("-n", "-p", f"--configfile={tmp_path / 'c.yaml'}", "all")
    assert out.returncode == 0, out.stderr[-3000:]
    counts = _job_counts(out.stdout)
    assert counts["convert_released"] == 2 and counts["score_released"] == 2, counts  # asked for by rule all
    assert (f"python -m mla convert-weights --kind released --src {tmp_path / 'authors_cremad.pth'} --options "
            """'{"resnet18": {"out_dim": 512, "stem": "imagenet", "width": 64}}' """
            "--out data/weights/released/cremad.pt") in out.stdout
    # the composed config is passed by its content-addressed copy (workflow/rules/common.smk)
    assert re.search(r"python -m mla score-released --config \S+/mla-configs/[0-9a-f]{64}\.yaml --dataset food101 "
                     r"--checkpoint data/weights/released/food101\.pt --out results/paper/released_checkpoints/food101",
                     out.stdout), out.stdout[-2000:]
