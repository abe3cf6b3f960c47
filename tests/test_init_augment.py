"""model.init (mla/models/init.py) and training.augment (mla/augment.py) against independent values:
the released weight_init's distributions, Pillow's own resampling and ImageEnhance, torch's
interpolate on a hand-chosen box, and the real training loop (evaluation sees the stored view,
resume gives the same bytes)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from torch import nn
from torch.nn import functional as F

from mla import augment, config, grid
from mla import train as train_mod
from mla.augment import (augment_batch, color_jitter, crop_boxes, hflip, jitter_params, resized_crop,
                         step_generator)
from mla.batches import to_tensors
from mla.checkpoint import RunWork
from mla.models.encoders import create_encoder
from mla.models.init import initialise
from mla.train import build_method, seed_everything, train_run
from tiny import one_thread, tiny_config, tiny_dataset, training_jobs  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
DS = tiny_dataset()


def kurtosis(x: torch.Tensor) -> float:
    x = x.detach().double().flatten()
    z = (x - x.mean()) / x.std()
    return float((z ** 4).mean())


def job_of(cfg: dict, method: str = "concat") -> grid.Job:
    return next(j for j in training_jobs(cfg) if j.method == method)


def cfg_with(init: str = "pytorch", augment_image: str = "none", epochs: int = 2, **model) -> dict:
    cfg = tiny_config(ROOT, epochs=epochs)
    cfg["model"].update(init=init, **model)
    cfg["training"]["augment"] = {"video": "none", "image": augment_image}
    return cfg


# --- model.init ------------------------------------------------------------------------------------

def test_released_init_draws_each_layer_type_from_the_released_distribution():
    torch.manual_seed(0)
    conv, lin, bn = nn.Conv2d(64, 512, 3, bias=True), nn.Linear(1000, 800), nn.BatchNorm2d(16)
    emb, ln = nn.Embedding(50, 8), nn.LayerNorm(8)
    with torch.no_grad():
        bn.weight.uniform_(-3, 3), bn.bias.uniform_(-3, 3)  # not the defaults, so 1 / 0 must be written
    model = nn.Sequential(conv, lin, bn, emb, ln)
    conv_bias, emb_w, ln_w = conv.bias.clone(), emb.weight.clone(), ln.weight.clone()
    initialise(model, "released", seed=0)
    # Kaiming-normal, fan_out = 512 * 3 * 3 (fan_in would give sqrt(2 / 576), 2.8x larger)
    std = conv.weight.std().item()
    assert std == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.01)
    assert abs(conv.weight.mean().item()) < 3 * std / np.sqrt(conv.weight.numel())
    assert kurtosis(conv.weight) == pytest.approx(3.0, abs=0.05)  # normal (a uniform has 1.8)
    assert torch.equal(conv.bias, conv_bias)  # weight_init leaves a conv bias alone
    # Xavier-normal: std sqrt(2 / (fan_in + fan_out)), bias 0
    assert lin.weight.std().item() == pytest.approx(np.sqrt(2 / 1800), rel=0.01)
    assert kurtosis(lin.weight) == pytest.approx(3.0, abs=0.05)
    assert torch.equal(lin.bias, torch.zeros(800))
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))
    assert torch.equal(emb.weight, emb_w) and torch.equal(ln.weight, ln_w)  # other types untouched


def test_pytorch_init_keeps_the_defaults_and_released_replaces_them():
    seed_everything(0)
    enc = create_encoder("video", 512, {"name": "resnet18", "width": 64})
    w = enc.blocks[-1].conv2.weight  # 512 x 512 x 3 x 3
    before = copy.deepcopy(enc.state_dict())
    initialise(enc, "pytorch", seed=0)
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # PyTorch's default: kaiming_uniform(a=sqrt(5)) -> U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
    assert w.std().item() == pytest.approx(1 / np.sqrt(3 * 4608), rel=0.01)
    assert kurtosis(w) == pytest.approx(1.8, abs=0.05)
    initialise(enc, "released", seed=0)
    assert w.std().item() == pytest.approx(np.sqrt(2 / 4608), rel=0.01)  # fan_out = fan_in here
    assert kurtosis(w) == pytest.approx(3.0, abs=0.05)
    with pytest.raises(ValueError, match="model.init 'xavier'"):
        initialise(enc, "xavier", seed=0)


def test_build_method_applies_model_init_seeded_by_the_run_seed(monkeypatch):
    ds, cfg = DS, cfg_with("released")
    job = job_of(cfg)

    def build(c, seed):
        seed_everything(0)  # the global RNG the same each time: only the run seed may differ
        m = build_method(c, job, ds, ds.modalities, seed)
        return m, torch.get_rng_state()

    a, rng_a = build(cfg, 0)
    b, _ = build(cfg, 0)
    c, _ = build(cfg, 1)
    plain, rng_plain = build(cfg_with("pytorch"), 0)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.head.weight, c.head.weight)
    assert torch.equal(rng_a, rng_plain)  # the initialisation draws from its own stream
    for m in a.modules():
        if isinstance(m, nn.Linear):
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
    # pytorch: exactly what the modules were built with (initialise is a no-op)
    monkeypatch.setattr(train_mod, "initialise", lambda *a, **k: None)
    untouched, _ = build(cfg_with("pytorch"), 0)
    assert all(torch.equal(v, untouched.state_dict()[k]) for k, v in plain.state_dict().items())


def test_pretrained_encoders_are_not_reinitialised(tmp_path):
    spec = {"name": "resnet18", "width": 2, "stem": "small"}
    torch.manual_seed(5)
    pretrained = create_encoder("image", 16, spec).state_dict()
    torch.save(pretrained, tmp_path / "image.pt")
    cfg = cfg_with("released")
    cfg["model"]["encoders"]["image"] = {**spec, "weights": str(tmp_path / "image.pt")}
    method = build_method(cfg, job_of(cfg), DS, DS.modalities, 0)
    loaded = method.encoders["image"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in pretrained.items())
    text_linears = [m for m in method.encoders["text"].modules() if isinstance(m, nn.Linear)]
    assert text_linears and all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in text_linears)


def test_init_is_a_per_dataset_model_key():
    path = ROOT / "config" / "paper.yaml"
    cfg = config.load(path)
    assert {d: config.model_for(cfg, d)["init"] for d in cfg["datasets"]} == {
        "cremad": "released", "ks": "released", "food101": "pytorch", "mvsa": "pytorch", "iemocap": "pytorch"}
    assert config.model_for(config.load(ROOT / "config" / "config.yaml"), "builtin_av")["init"] == "pytorch"
    with pytest.raises(config.ConfigError, match="model.datasets.cremad.init"):
        config.load(path, ["model.datasets.cremad.init=kaiming"])


# --- augmentation: the operations --------------------------------------------------------------------

def test_flip_is_an_exact_mirror():
    x = torch.randn(4, 3, 5, 7)
    flags = torch.tensor([True, False, True, False])
    y = hflip(x, flags)
    for n in range(4):
        expect = x[n, :, :, torch.arange(6, -1, -1)] if flags[n] else x[n]
        assert torch.equal(y[n], expect)


def test_crop_is_the_resized_window():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 12, 10)
    box = torch.tensor([[2, 3, 7, 5]])  # top 2, left 3, 7 rows, 5 columns
    out = resized_crop(x, box, "bilinear")
    assert out.shape == x.shape
    expect = F.interpolate(x[:, :, 2:9, 3:8], size=(12, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expect, atol=1e-6)
    for kernel, pil in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):  # Pillow itself, in float
        ref = Image.fromarray(x[0, 0].numpy(), mode="F").crop((3, 2, 8, 9)).resize((10, 12), pil)
        assert torch.allclose(resized_crop(x, box, kernel)[0, 0], torch.tensor(np.array(ref)), atol=1e-6), kernel
    whole = resized_crop(x, torch.tensor([[0, 0, 12, 10]]), "bicubic")
    assert torch.allclose(whole, x, atol=1e-6)


def test_crop_boxes_follow_random_resized_crop():
    boxes = crop_boxes(4000, 224, 224, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 224).all() and (left + w <= 224).all()
    frac = (h * w).double() / 224 ** 2
    assert frac.min() >= 0.075 and frac.max() <= 1.0 and frac.min() < 0.09 and frac.max() > 0.95
    aspect = w.double() / h.double()
    assert aspect.min() >= 0.74 and aspect.max() <= 1.35
    # positions uniform: the mean left offset is half the slack
    assert (left.double() / (224 - w + 1).double()).mean().item() == pytest.approx(0.5, abs=0.02)
    # no attempt fits a 100 x 1 image: the fallback is the centre crop of aspect 3/4 -> 1 x round(4/3)
    assert crop_boxes(3, 100, 1, torch.Generator().manual_seed(0)).tolist() == [[49, 0, 1, 1]] * 3


def test_jitter_factors_and_order_are_the_released_ranges():
    factors, order = jitter_params(20000, torch.Generator().manual_seed(0))
    assert factors.min() >= 0.0 and factors.max() <= 2.0  # ColorJitter(1, 1, 1): [max(0, 1 - 1), 1 + 1]
    assert factors.min() < 0.01 and factors.max() > 1.99
    assert torch.allclose(factors.mean(0), torch.ones(3), atol=0.03)
    assert (order.sort(1).values == torch.arange(3)).all()
    assert len({tuple(r) for r in order.tolist()}) == 6


def test_color_jitter_matches_pillow_image_enhance():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    factors = torch.tensor([[1.7, 0.4, 1.9], [0.3, 1.6, 0.2]])
    orders = torch.tensor([[0, 1, 2], [2, 1, 0]])
    enhance = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    p = torch.from_numpy(img).permute(2, 0, 1).float().div(255).expand(2, -1, -1, -1)
    out = color_jitter(p, factors, orders)
    for n in range(2):
        ref = Image.fromarray(img)
        for op in orders[n].tolist():
            ref = enhance[op](ref).enhance(float(factors[n, op]))
        ref = torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255
        assert (out[n] - ref).abs().max() <= 3 / 255  # Pillow rounds to 8 bits after each step


# --- augmentation: batches and the training loop ---------------------------------------------------

def split_of(ds, split="train", present=None):
    arr = ds.splits[split]
    return to_tensors(arr.arrays, arr.labels, ds.modalities, present)


def test_same_seed_same_augmentation_other_step_epoch_or_seed_not():
    split = split_of(DS)
    batch = split.batch(torch.arange(16))
    stored = batch["image"].clone()
    on = {"image": "released"}
    a = augment_batch(batch, split, on, 0, 1, 0)
    assert torch.equal(a["image"], augment_batch(split.batch(torch.arange(16)), split, on, 0, 1, 0)["image"])
    for other in ((0, 1, 1), (0, 2, 0), (1, 1, 0)):
        assert not torch.equal(a["image"], augment_batch(batch, split, on, *other)["image"]), other
    assert not torch.equal(a["image"], stored) and a["image"].shape == stored.shape
    assert torch.equal(a["text"], batch["text"])  # other modalities pass through
    assert torch.equal(batch["image"], stored) and torch.equal(split.resident["image"][:16], stored)  # nothing in place
    assert augment_batch(batch, split, {"image": "none"}, 0, 1, 0) is batch


def test_absent_inputs_stay_zero_and_video_frames_are_augmented_one_by_one():
    present = np.ones((len(DS.splits["train"].labels), 2), dtype=bool)
    present[:4, 0] = False
    split = split_of(DS, present=present)
    out = augment_batch(split.batch(torch.arange(8)), split, {"image": "released"}, 0, 1, 0)
    assert (out["image"][:4] == 0).all() and (out["image"][4:] != 0).any()
    frames = split.batch(torch.arange(8))["image"].unsqueeze(1).expand(-1, 3, -1, -1, -1)  # 3 equal frames
    batch = {"video": frames, "present": torch.ones(8, 1, dtype=torch.bool)}
    video_split = to_tensors({"video": np.zeros((8, 3, 3, 8, 8), np.uint8)}, np.zeros(8), ("video",))
    v = augment_batch(batch, video_split, {"video": "released"}, 0, 1, 0)["video"]
    assert v.shape == frames.shape
    assert not torch.equal(v[:, 0], v[:, 1]) and not torch.equal(v[:, 1], v[:, 2])
    with pytest.raises(ValueError, match="training.augment.video: 'random'"):
        augment_batch(batch, video_split, {"video": "random"}, 0, 1, 0)


def test_augmentation_runs_in_training_only(monkeypatch):
    cfg = cfg_with(augment_image="released", epochs=2)
    calls, changed, scored = [], [], []
    real_augment, real_accuracies = augment_batch, train_mod.accuracies

    def recording_augment(batch, split, settings, seed, epoch, step):
        out = real_augment(batch, split, settings, seed, epoch, step)
        calls.append((epoch, step))
        changed.append(not torch.equal(out["image"], batch["image"]))
        return out

    def checking_accuracies(method, data, batch_size):
        predict = method.predict

        def stored_view_only(batch):
            raw = torch.from_numpy(np.asarray(data.arrays["image"])[batch["index"].numpy()]).float()
            scored.append(torch.allclose(batch["image"], (raw / 255 - 0.5) / 0.25, atol=1e-6))  # centred pixels
            return predict(batch)

        method.predict = stored_view_only
        try:
            return real_accuracies(method, data, batch_size)
        finally:
            del method.predict

    monkeypatch.setattr(train_mod, "augment_batch", recording_augment)
    monkeypatch.setattr(train_mod, "accuracies", checking_accuracies)
    train_run(cfg, job_of(cfg), DS, 0)
    assert calls == [(e, s) for e in (1, 2) for s in range(3)]  # 48 examples, batches of 16
    assert all(changed) and scored and all(scored)


def test_resume_with_augmentation_equals_uninterrupted_run(tmp_path):
    cfg = cfg_with("released", augment_image="released", epochs=3)
    job = job_of(cfg, "mla")
    metrics, log, state, _ = train_run(cfg, job, DS, 0)

    class Killed(BaseException):
        pass

    first = RunWork(tmp_path / "seed0", {"job": job.id}, root=tmp_path)
    save = first.save_state

    def save_then_die(s):
        save(s)
        if s["epoch"] == 1:
            raise Killed

    first.save_state = save_then_die
    with pytest.raises(Killed):
        train_run(cfg, job, DS, 0, first)
    again = RunWork(tmp_path / "seed0", {"job": job.id}, root=tmp_path)
    metrics2, log2, state2, _ = train_run(cfg, job, DS, 0, again)
    assert again.resumed_from == 1 and metrics2 == metrics and log2 == log
    assert all(torch.equal(state2[k], v) for k, v in state.items())
    plain = cfg_with("released", epochs=3)
    _, plain_log, _, _ = train_run(plain, job, DS, 0)
    assert plain_log != log  # the augmentation did change training


def test_step_generators_differ_per_step_and_repeat_per_seed():
    draw = lambda *k: torch.rand(4, generator=step_generator(*k))  # noqa: E731
    assert torch.equal(draw(0, 1, 2), draw(0, 1, 2))
    assert len({tuple(draw(*k).tolist()) for k in ((0, 1, 2), (0, 2, 1), (1, 1, 2), (0, 1, 3))}) == 4
    assert augment.RECIPES["video"].kernel == "bilinear" and not augment.RECIPES["video"].jitter
    assert augment.RECIPES["image"].kernel == "bicubic" and augment.RECIPES["image"].jitter
