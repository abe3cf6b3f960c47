"""Paper encoders (M3AE, CAV-MAE) and safe weight conversion, on synthetic checkpoints.

The synthetic sources carry the public parameter names and (scaled-down) shapes, written out
here from the public code, independently of our modules: the Flax tree of young-geng/m3ae_public
``m3ae/model.py``, the PyTorch names of [C]'s M3AE port, CAV-MAE's ``CAVMAEFT`` and [C]'s
classifiers. Reference outputs are computed from the SOURCE parameters by functional code below.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mla.cli import main as cli_main
from mla.methods import create_method
from mla.models.encoders import create_encoder
from mla.weights.convert import ConversionError, convert_file
from mla.weights.load import WeightsError, load_method_state
from mla.weights.safe_load import UnsafeCheckpointError, read_checkpoint

D, HEADS, DEPTH, VOCAB, P = 16, 2, 2, 40, 4          # tiny M3AE
M3AE_OPTS = {"out_dim": D, "depth": DEPTH, "heads": HEADS, "vocab_size": VOCAB, "patch_size": P}
CAV_OPTS = {"out_dim": D, "depth": 2, "shared_depth": 1, "heads": HEADS, "patch_size": P, "n_frames": 16, "n_mels": 8}
EPS = 1e-5


# --- synthetic sources --------------------------------------------------------------------------
def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32) * 0.3


def flax_dense(rng, n_in, n_out):
    return {"kernel": rand(rng, n_in, n_out), "bias": rand(rng, n_out)}


def flax_ln(rng, d):
    return {"scale": 1 + rand(rng, d), "bias": rand(rng, d)}


def flax_block(rng, d):
    return {"LayerNorm_0": flax_ln(rng, d), "LayerNorm_1": flax_ln(rng, d),
            "Attention_0": {"Dense_0": flax_dense(rng, d, 3 * d), "Dense_1": flax_dense(rng, d, d)},
            "TransformerMLP_0": {"fc1": flax_dense(rng, d, 4 * d), "fc2": flax_dense(rng, 4 * d, d)}}


def flax_m3ae_tree(seed=0, dec=8):
    """``model.init(...)`` of MaskedMultimodalAutoencoder, encoder AND decoder, as nested dicts."""
    rng = np.random.default_rng(seed)
    enc = {f"Block_{i}": flax_block(rng, D) for i in range(DEPTH)}
    enc["LayerNorm_0"] = flax_ln(rng, D)
    params = {
        "cls_token": rand(rng, 1, 1, D), "encoder_image_type_embedding": rand(rng, 1, 1, D),
        "encoder_text_type_embedding": rand(rng, 1, 1, D), "decoder_image_type_embedding": rand(rng, 1, 1, dec),
        "decoder_text_type_embedding": rand(rng, 1, 1, dec), "image_mask_embedding": rand(rng, 1, 1, dec),
        "text_mask_embedding": rand(rng, 1, 1, dec), "text_embedding": {"embedding": rand(rng, VOCAB, D)},
        "image_embedding": flax_dense(rng, P * P * 3, D), "encoder": enc,
        "decoder": {"Block_0": flax_block(rng, dec), "LayerNorm_0": flax_ln(rng, dec)},
        "decoder_input_projection": flax_dense(rng, D, dec),
        "decoder_image_output": {"Dense_0": flax_dense(rng, dec, P * P * 3)},
        "decoder_text_output": {"Dense_0": flax_dense(rng, dec, VOCAB)},
    }
    return {"params": params}


def c_port_m3ae(rng, prefix=""):
    """[C] ``models/m3ae.py`` MaskedMultimodalAutoencoder names (torch layout) -> tensors."""
    shapes = {"cls_token": (1, 1, D), "encoder_image_type_embedding": (1, 1, D),
              "encoder_text_type_embedding": (1, 1, D), "text_embedding.weight": (VOCAB, D),
              "image_embedding.weight": (D, 3 * P * P), "image_embedding.bias": (D,),
              "encoder.layer_norm.weight": (D,), "encoder.layer_norm.bias": (D,)}
    for i in range(DEPTH):
        b = f"encoder.blocks.{i}."
        shapes.update({b + "layer_norm1.weight": (D,), b + "layer_norm1.bias": (D,),
                       b + "attention.qkv_linear.weight": (3 * D, D), b + "attention.qkv_linear.bias": (3 * D,),
                       b + "attention.fc.weight": (D, D), b + "attention.fc.bias": (D,),
                       b + "layer_norm2.weight": (D,), b + "layer_norm2.bias": (D,),
                       b + "transformer_mlp.fc1.weight": (4 * D, D), b + "transformer_mlp.fc1.bias": (4 * D,),
                       b + "transformer_mlp.fc2.weight": (D, 4 * D), b + "transformer_mlp.fc2.bias": (D,)})
    return {prefix + k: torch.from_numpy(rand(rng, *s)) for k, s in shapes.items()}


def cavmae_ft(rng, prefix="module.", n_classes=5):
    """CAV-MAE ``CAVMAEFT`` state dict (both branches, all norms, mlp_head) at CAV_OPTS size."""
    na = (CAV_OPTS["n_frames"] // P) * (CAV_OPTS["n_mels"] // P)
    shapes = {"patch_embed_a.proj.weight": (D, 1, P, P), "patch_embed_a.proj.bias": (D,),
              "patch_embed_v.proj.weight": (D, 3, P, P), "patch_embed_v.proj.bias": (D,),
              "modality_a": (1, 1, D), "modality_v": (1, 1, D), "pos_embed_a": (1, na, D), "pos_embed_v": (1, 4, D),
              "mlp_head.0.weight": (D,), "mlp_head.0.bias": (D,), "mlp_head.1.weight": (n_classes, D),
              "mlp_head.1.bias": (n_classes,)}
    for n in ("norm_a", "norm_v", "norm"):
        shapes.update({f"{n}.weight": (D,), f"{n}.bias": (D,)})
    for branch, depth in (("blocks_a", 2), ("blocks_v", 2), ("blocks_u", 1)):
        for i in range(depth):
            b = f"{branch}.{i}."
            for n in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
                shapes.update({b + n + ".weight": (D,), b + n + ".bias": (D,)})
            shapes.update({b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                           b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                           b + "mlp.fc1.weight": (4 * D, D), b + "mlp.fc1.bias": (4 * D,),
                           b + "mlp.fc2.weight": (D, 4 * D), b + "mlp.fc2.bias": (D,)})
    return {prefix + k: torch.from_numpy(rand(rng, *s)) for k, s in shapes.items()}


# --- reference forward passes (float64, from the source parameters) ----------------------------------
def sincos(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(d, h, w):
    gw, gh = np.meshgrid(np.arange(w), np.arange(h))  # MAE: meshgrid(grid_w, grid_h), w first
    return torch.from_numpy(np.concatenate([sincos(d // 2, gw), sincos(d // 2, gh)], axis=1))


def block(x, g, heads, keep=None):
    """Pre-LN block; ``g(name)`` gives (weight in torch layout, bias) or (scale, bias)."""
    b, n, d = x.shape
    y = F.layer_norm(x, (d,), *g("ln1"), EPS)
    w, bias = g("qkv")
    q, k, v = (y @ w.T + bias).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    att = q @ k.transpose(-1, -2) * (d // heads) ** -0.5
    if keep is not None:
        att = torch.where(keep[:, None, None, :], att, torch.tensor(-1e7, dtype=att.dtype))
    w, bias = g("proj")
    x = x + (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d) @ w.T + bias
    y = F.layer_norm(x, (d,), *g("ln2"), EPS)
    w1, b1 = g("fc1")
    w2, b2 = g("fc2")
    return x + F.gelu(y @ w1.T + b1) @ w2.T + b2


def flax_getter(tree):
    p = tree["params"]
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    names = {"ln1": "LayerNorm_0", "ln2": "LayerNorm_1"}
    dense = {"qkv": ("Attention_0", "Dense_0"), "proj": ("Attention_0", "Dense_1"),
             "fc1": ("TransformerMLP_0", "fc1"), "fc2": ("TransformerMLP_0", "fc2")}

    def block_getter(i):
        blk = p["encoder"][f"Block_{i}"]

        def g(name):
            if name in names:
                return t(blk[names[name]]["scale"]), t(blk[names[name]]["bias"])
            a, b = dense[name]
            return t(blk[a][b]["kernel"]).T, t(blk[a][b]["bias"])  # Flax kernels are (in, out)
        return g

    return p, t, block_getter


def ref_m3ae(tree, x, modality):
    """M3AE's own forward_representation on one modality, mean over all tokens (as [C])."""
    p, t, block_getter = flax_getter(tree)
    if modality == "image":
        b, c, h, w = x.shape  # M3AE's extract_patches on NHWC images: patch vectors in (p1, p2, c) order
        nhwc = x.double().permute(0, 2, 3, 1).reshape(b, h // P, P, w // P, P, c).transpose(2, 3)
        seq = nhwc.reshape(b, -1, P * P * c) @ t(p["image_embedding"]["kernel"]) + t(p["image_embedding"]["bias"])
        seq = seq + sincos_2d(D, h // P, w // P) + t(p["encoder_image_type_embedding"])
        keep = None
    else:
        seq = t(p["text_embedding"]["embedding"])[x] + torch.from_numpy(sincos(D, np.arange(x.shape[1])))
        seq = seq + t(p["encoder_text_type_embedding"])
        keep = torch.cat([torch.ones(len(x), 1, dtype=torch.bool), x != 0], 1)
    seq = torch.cat([t(p["cls_token"]).expand(len(x), 1, D), seq], 1)
    for i in range(DEPTH):
        seq = block(seq, block_getter(i), HEADS, keep)
    ln = p["encoder"]["LayerNorm_0"]
    return F.layer_norm(seq, (D,), t(ln["scale"]), t(ln["bias"]), EPS).mean(1)


def ref_cavmae(sd, x, prefix="module."):
    """CAVMAEFT.forward_feat(a, None, 'a').mean(1) from a CAV-MAE state dict; x (B, 1, frames, mel)."""
    g = lambda n: sd[prefix + n].double()  # noqa: E731
    img = x.double()[:, 0].transpose(1, 2)  # (B, mel, frames), as a.unsqueeze(1).transpose(2, 3)
    b, fh, tw = img.shape[0], img.shape[1] // P, img.shape[2] // P
    patches = img.reshape(b, fh, P, tw, P).permute(0, 1, 3, 2, 4).reshape(b, fh * tw, P * P)
    seq = patches @ g("patch_embed_a.proj.weight").reshape(D, -1).T + g("patch_embed_a.proj.bias")
    seq = seq + g("pos_embed_a") + g("modality_a")

    def getter(pre, suffix):
        names = {"ln1": f"norm1{suffix}", "ln2": f"norm2{suffix}", "qkv": "attn.qkv", "proj": "attn.proj",
                 "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
        return lambda n: (g(f"{pre}{names[n]}.weight"), g(f"{pre}{names[n]}.bias"))

    for i in range(CAV_OPTS["depth"]):
        seq = block(seq, getter(f"blocks_a.{i}.", ""), HEADS)
    seq = block(seq, getter("blocks_u.0.", "_a"), HEADS)
    return F.layer_norm(seq, (D,), g("norm_a.weight"), g("norm_a.bias"), EPS).mean(1)


def ref_port_m3ae(sd, x, modality, prefix):
    """[C]-port-named M3AE -> the same reference, through an equivalent Flax tree."""
    g = lambda n: sd[prefix + n].numpy()  # noqa: E731
    enc = {"LayerNorm_0": {"scale": g("encoder.layer_norm.weight"), "bias": g("encoder.layer_norm.bias")}}
    for i in range(DEPTH):
        b = f"encoder.blocks.{i}."
        dense = lambda n: {"kernel": g(b + n + ".weight").T, "bias": g(b + n + ".bias")}  # noqa: E731
        enc[f"Block_{i}"] = {
            "LayerNorm_0": {"scale": g(b + "layer_norm1.weight"), "bias": g(b + "layer_norm1.bias")},
            "LayerNorm_1": {"scale": g(b + "layer_norm2.weight"), "bias": g(b + "layer_norm2.bias")},
            "Attention_0": {"Dense_0": dense("attention.qkv_linear"), "Dense_1": dense("attention.fc")},
            "TransformerMLP_0": {"fc1": dense("transformer_mlp.fc1"), "fc2": dense("transformer_mlp.fc2")}}
    # [C] feeds (c, p1, p2) patch vectors: express its weight in the (p1, p2, c) rows the reference uses.
    w = g("image_embedding.weight").reshape(D, 3, P, P).transpose(2, 3, 1, 0).reshape(3 * P * P, D)
    tree = {"params": {"cls_token": g("cls_token"), "encoder": enc,
                       "text_embedding": {"embedding": g("text_embedding.weight")},
                       "image_embedding": {"kernel": w, "bias": g("image_embedding.bias")},
                       "encoder_image_type_embedding": g("encoder_image_type_embedding"),
                       "encoder_text_type_embedding": g("encoder_text_type_embedding")}}
    return ref_m3ae(tree, x, modality)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, 2 * P, 2 * P, generator=g)
    ids = torch.randint(1, VOCAB, (3, 6), generator=g)
    ids[0, 4:] = 0  # padded text
    ids[2] = 0      # a missing text: all [PAD]
    audio = torch.randn(3, 1, CAV_OPTS["n_frames"], CAV_OPTS["n_mels"], generator=g)
    return images, ids, audio


# --- the restricted unpickler ------------------------------------------------------------------------
class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Payload:
    """A harmless class: still refused, because only data types are allowed."""


def test_pickle_with_os_system_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"params": {"w": np.ones(3, np.float32)}, "x": Evil(marker)}))
    with pytest.raises(UnsafeCheckpointError, match=rf"{os.system.__module__}\.system"):
        read_checkpoint(src)
    assert cli_main(["convert-weights", "--kind", "m3ae", "--src", str(src), "--out", str(tmp_path / "o.pt")]) == 1
    torch.save({"w": torch.ones(2), "x": Evil(marker)}, tmp_path / "evil.pth")  # a torch zip: weights_only
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to unpickle {os.system.__module__}\.system") as err:
        read_checkpoint(tmp_path / "evil.pth")  # refused by our reading of data.pkl, before torch.load
    assert "weights_only=False" not in str(err.value)
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_pickle_with_other_classes_is_refused_naming_them(tmp_path):
    src = tmp_path / "obj.pkl"
    src.write_bytes(pickle.dumps([np.zeros(2), Payload()], protocol=4))
    with pytest.raises(UnsafeCheckpointError, match=r"test_weights\.Payload"):
        read_checkpoint(src)
    src.write_bytes(b"cflax.core.frozen_dict\nFrozenDict\n(dtR.")  # what a pickled flax TrainState holds
    with pytest.raises(UnsafeCheckpointError, match=r"flax\.core\.frozen_dict\.FrozenDict.*Extract its parameters"):
        read_checkpoint(src)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_of_numpy_and_containers_loads(tmp_path, protocol):
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(3), 1.5, "s", None, (True,)],
            "c": collections.OrderedDict(k=np.ones((2, 2), np.float16)), "d": {1, 2}, "e": b"raw"}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
    out = read_checkpoint(tmp_path / "ok.pkl")
    np.testing.assert_array_equal(out["a"], data["a"])
    assert out["b"] == data["b"] and out["d"] == {1, 2} and out["e"] == b"raw"
    np.testing.assert_array_equal(out["c"]["k"], data["c"]["k"])


# --- tiny encoders ------------------------------------------------------------------------------------
def test_tiny_paper_encoders_forward_shapes():
    images, ids, audio = inputs()
    image = create_encoder("image", D, {"name": "m3ae", **{k: v for k, v in M3AE_OPTS.items() if k != "out_dim"}})
    text = create_encoder("text", D, {"name": "m3ae", **{k: v for k, v in M3AE_OPTS.items() if k != "out_dim"},
                                      "max_len": 6})
    valid = create_encoder("text", D, {"name": "m3ae", **{k: v for k, v in M3AE_OPTS.items() if k != "out_dim"},
                                       "pool": "valid"})
    valid.load_state_dict(text.state_dict())
    cav = create_encoder("audio", D, {"name": "cavmae_audio", **{k: v for k, v in CAV_OPTS.items() if k != "out_dim"}})
    assert image(images).shape == (3, D) and cav(audio).shape == (3, D) and cav(audio[:, 0]).shape == (3, D)
    out = text(ids)
    assert out.shape == (3, D) and torch.isfinite(out).all()  # the all-[PAD] row attends to everything
    assert not torch.allclose(out[0], valid(ids)[0])  # pool=all also averages the [PAD] positions, as [C]
    with pytest.raises(ValueError, match="expected"):
        cav(audio[:, :, :8])
    with pytest.raises(ValueError, match="image or text"):
        create_encoder("audio", D, {"name": "m3ae"})


# --- conversion round trips ----------------------------------------------------------------------------
def encoder(modality, name, weights, opts, **extra):
    spec = {"name": name, **{k: v for k, v in opts.items() if k != "out_dim"}, **extra}
    if weights is not None:
        spec["weights"] = str(weights)
    return create_encoder(modality, D, spec).eval()


def test_m3ae_flax_round_trip(tmp_path):
    tree = flax_m3ae_tree()
    src = tmp_path / "m3ae_params.pkl"
    src.write_bytes(pickle.dumps(tree, protocol=5))
    out = tmp_path / "m3ae.pt"
    assert cli_main(["convert-weights", "--kind", "m3ae", "--src", str(src), "--out", str(out),
                     "--options", json.dumps({"m3ae": M3AE_OPTS})]) == 0
    sd = torch.load(out, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    report = (tmp_path / "m3ae.pt.json").read_text()
    assert "params/decoder/Block_0/LayerNorm_0/scale" in report and "params/decoder_input_projection/kernel" in report
    images, ids, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(encoder("image", "m3ae", out, M3AE_OPTS)(images).double(),
                                   ref_m3ae(tree, images, "image"), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(encoder("text", "m3ae", out, M3AE_OPTS)(ids[:2]).double(),
                                   ref_m3ae(tree, ids[:2], "text"), atol=1e-5, rtol=1e-4)
        # [C]'s conversion (transpose only) keeps M3AE's (p1, p2, c) rows for (c, p1, p2) patches:
        # not the function M3AE learnt.
        convert_file("m3ae", src, tmp_path / "c.pt", {"m3ae": M3AE_OPTS}, released_patch_order=True)
        assert not torch.allclose(encoder("image", "m3ae", tmp_path / "c.pt", M3AE_OPTS)(images).double(),
                                  ref_m3ae(tree, images, "image"), atol=1e-3)


def test_m3ae_torch_port_checkpoint_round_trip(tmp_path):
    """[C]'s converted ``m3ae_base.pth`` (its PyTorch port's names, DataParallel prefix) loads one to one."""
    sd = c_port_m3ae(np.random.default_rng(5), "module.")
    torch.save(sd, tmp_path / "m3ae_base.pth")
    report = convert_file("m3ae", tmp_path / "m3ae_base.pth", tmp_path / "m3ae.pt", {"m3ae": M3AE_OPTS})
    assert report["format"] == "torch" and report["dropped"] == []
    images, ids, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(encoder("image", "m3ae", tmp_path / "m3ae.pt", M3AE_OPTS)(images).double(),
                                   ref_port_m3ae(sd, images, "image", "module."), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(encoder("text", "m3ae", tmp_path / "m3ae.pt", M3AE_OPTS)(ids[:2]).double(),
                                   ref_port_m3ae(sd, ids[:2], "text", "module."), atol=1e-5, rtol=1e-4)


def test_m3ae_missing_or_misshaped_parameter_is_named(tmp_path):
    tree = flax_m3ae_tree()
    del tree["params"]["encoder"]["Block_1"]["Attention_0"]["Dense_1"]["kernel"]
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(tree))
    with pytest.raises(ConversionError, match=r"missing parameter 'params/encoder/Block_1/Attention_0/Dense_1/kernel'"):
        convert_file("m3ae", tmp_path / "a.pkl", tmp_path / "a.pt", {"m3ae": M3AE_OPTS})
    tree = flax_m3ae_tree()
    tree["params"]["encoder"]["LayerNorm_0"]["scale"] = np.ones(D + 1, np.float32)
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(tree))
    with pytest.raises(ConversionError, match=r"'params/encoder/LayerNorm_0/scale' has shape \(17,\)"):
        convert_file("m3ae", tmp_path / "b.pkl", tmp_path / "b.pt", {"m3ae": M3AE_OPTS})
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()


def test_cavmae_round_trip_and_weights_errors(tmp_path):
    sd = cavmae_ft(np.random.default_rng(1))
    torch.save(sd, tmp_path / "cav.pth")
    report = convert_file("cavmae", tmp_path / "cav.pth", tmp_path / "cav.pt", {"cavmae_audio": CAV_OPTS})
    assert "blocks_u.0.norm1.weight" in report["dropped"] and "patch_embed_v.proj.weight" in report["dropped"]
    _, _, audio = inputs()
    with torch.no_grad():
        torch.testing.assert_close(encoder("audio", "cavmae_audio", tmp_path / "cav.pt", CAV_OPTS)(audio).double(),
                                   ref_cavmae(sd, audio), atol=1e-5, rtol=1e-4)
    # The config's sha256 of the source: the right one converts, another refuses before writing.
    good = hashlib.sha256((tmp_path / "cav.pth").read_bytes()).hexdigest()
    convert_file("cavmae", tmp_path / "cav.pth", tmp_path / "ok.pt", {"cavmae_audio": CAV_OPTS}, expected_sha256=good)
    with pytest.raises(ConversionError, match=f"cav.pth: sha256 {good}, but the config expects {'0' * 64}"):
        convert_file("cavmae", tmp_path / "cav.pth", tmp_path / "bad.pt", {"cavmae_audio": CAV_OPTS},
                     expected_sha256="0" * 64)
    assert not list(tmp_path.glob("bad.pt*"))
    del sd["module.blocks_u.0.norm1_a.weight"]
    torch.save(sd, tmp_path / "cav2.pth")
    with pytest.raises(ConversionError, match=r"missing parameter 'blocks_u\.0\.norm1_a\.weight'"):
        convert_file("cavmae", tmp_path / "cav2.pth", tmp_path / "cav2.pt", {"cavmae_audio": CAV_OPTS})
    # The `weights` option: absent file, wrong shape, foreign entry; each error names it.
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        encoder("audio", "cavmae_audio", tmp_path / "nope.pt", CAV_OPTS)
    good = torch.load(tmp_path / "cav.pt", weights_only=True)
    torch.save({**good, "norm_a.bias": torch.zeros(D + 1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"'norm_a\.bias' has shape \(17,\)"):
        encoder("audio", "cavmae_audio", tmp_path / "bad.pt", CAV_OPTS)
    torch.save({**good, "norm_v.bias": torch.zeros(D)}, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match=r"unexpected parameter\(s\) norm_v\.bias"):
        encoder("audio", "cavmae_audio", tmp_path / "extra.pt", CAV_OPTS)


def released_checkpoint(model: dict, n_classes: int, dim: int, rng) -> dict:
    """[C] main.py's saved_dict around a DataParallel state dict."""
    model = {**model, "fusion_module.fc_out.weight": torch.from_numpy(rand(rng, n_classes, dim)),
             "fusion_module.fc_out.bias": torch.from_numpy(rand(rng, n_classes))}
    return {"saved_epoch": 7, "modulation": "Normal", "alpha": 0.3, "fusion": "concat", "acc": 0.5,
            "model": {"module." + k: v for k, v in model.items()}, "optimizer": {"state": {}, "param_groups": []}}


def test_released_ait_checkpoint_scores_like_its_source(tmp_path):
    rng = np.random.default_rng(2)
    cav = cavmae_ft(rng, prefix="mae_a.")
    ckpt = released_checkpoint({**cav, **c_port_m3ae(rng, "mae_v."), **c_port_m3ae(rng, "mae_t.")}, 4, D, rng)
    torch.save(ckpt, tmp_path / "mla_iemocap.pth")
    opts = {"m3ae": M3AE_OPTS, "cavmae_audio": CAV_OPTS}
    report = convert_file("released", tmp_path / "mla_iemocap.pth", tmp_path / "r.pt", opts)
    assert report["modalities"] == ["audio", "image", "text"] and report["n_classes"] == 4
    assert "mae_v.text_embedding.weight" in report["dropped"] and "mae_a.norm_v.weight" in report["dropped"]
    encs = torch.nn.ModuleDict({"audio": encoder("audio", "cavmae_audio", None, CAV_OPTS),
                                "image": encoder("image", "m3ae", None, M3AE_OPTS),
                                "text": encoder("text", "m3ae", None, M3AE_OPTS)})
    method = create_method("mla", encs, n_classes=4, feature_dim=D)
    load_method_state(method, tmp_path / "r.pt")
    torch.testing.assert_close(method.P, torch.eye(D, dtype=torch.float64))  # method state keeps its start
    images, ids, audio = inputs()
    sd = {k[len("module."):]: v.double() for k, v in ckpt["model"].items()}
    head = lambda f: f @ sd["fusion_module.fc_out.weight"].T + sd["fusion_module.fc_out.bias"]  # noqa: E731
    method.eval()
    with torch.no_grad():
        out = method.predict({"audio": audio, "image": images, "text": ids[:3],
                              "present": torch.ones(3, 3, dtype=torch.bool)})
    torch.testing.assert_close(out["audio"].double(), head(ref_cavmae(sd, audio, "mae_a.")), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["image"].double(), head(ref_port_m3ae(sd, images, "image", "mae_v.")),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["text"][:2].double(), head(ref_port_m3ae(sd, ids[:2], "text", "mae_t.")),
                               atol=1e-5, rtol=1e-4)
    # I-T checkpoints: [C]'s mae_a is the TEXT encoder.
    it = released_checkpoint({**c_port_m3ae(rng, "mae_a."), **c_port_m3ae(rng, "mae_v.")}, 3, D, rng)
    torch.save(it, tmp_path / "mla_food.pth")
    report = convert_file("released", tmp_path / "mla_food.pth", tmp_path / "it.pt", opts)
    assert report["modalities"] == ["text", "image"]
    conv = torch.load(tmp_path / "it.pt", weights_only=True)
    assert torch.equal(conv["encoders.text.text_embedding.weight"], it["model"]["module.mae_a.text_embedding.weight"])
    assert torch.equal(conv["encoders.image.image_embedding.weight"],
                       it["model"]["module.mae_v.image_embedding.weight"])


def ogm_resnet18(rng, prefix, in_ch, w):
    """OGM-GE ``models/backbone.py`` resnet18 names at width ``w`` (64 in [C]); BN with statistics."""
    sd = {}

    def conv(name, c_out, c_in, k):
        sd[prefix + name + ".weight"] = torch.from_numpy(rand(rng, c_out, c_in, k, k))

    def bn(name, c):
        sd.update({prefix + name + ".weight": torch.from_numpy(1 + rand(rng, c)),
                   prefix + name + ".bias": torch.from_numpy(rand(rng, c)),
                   prefix + name + ".running_mean": torch.from_numpy(rand(rng, c)),
                   prefix + name + ".running_var": torch.from_numpy(1 + np.abs(rand(rng, c))),
                   prefix + name + ".num_batches_tracked": torch.tensor(10)})

    conv("conv1", w, in_ch, 7), bn("bn1", w)
    c_in = w
    for s in range(1, 5):
        planes = w * 2 ** (s - 1)
        for j in range(2):
            q = f"layer{s}.{j}."
            conv(q + "conv1", planes, c_in, 3), bn(q + "bn1", planes), conv(q + "conv2", planes, planes, 3)
            bn(q + "bn2", planes)
            if j == 0 and s > 1:
                conv(q + "downsample.0", planes, c_in, 1), bn(q + "downsample.1", planes)
            c_in = planes
    return sd


def ref_resnet18(sd, prefix, x):
    """OGM-GE's ResNet.forward (eval-mode BatchNorm) from its state dict; (N, C, H, W) -> maps."""
    def bn(x, name):
        g = lambda n: sd[prefix + name + "." + n]  # noqa: E731
        return F.batch_norm(x, g("running_mean"), g("running_var"), g("weight"), g("bias"), False, 0.0, 1e-5)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd[prefix + "conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for s in range(1, 5):
        for j in range(2):
            q, stride = f"layer{s}.{j}.", 2 if (s > 1 and j == 0) else 1
            out = F.relu(bn(F.conv2d(x, sd[prefix + q + "conv1.weight"], stride=stride, padding=1), q + "bn1"))
            out = bn(F.conv2d(out, sd[prefix + q + "conv2.weight"], padding=1), q + "bn2")
            if prefix + q + "downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[prefix + q + "downsample.0.weight"], stride=stride), q + "downsample.1")
            x = F.relu(out + x)
    return x


def test_released_av_checkpoint_matches_ogm_ge_resnet(tmp_path):
    """[C]'s AV checkpoint (OGM-GE ResNet-18 names), scaled to width 4 -> our resnet18."""
    w, rng = 4, np.random.default_rng(3)
    model = {**ogm_resnet18(rng, "audio_net.", 1, w), **ogm_resnet18(rng, "visual_net.", 3, w)}
    ckpt = released_checkpoint(model, 6, 8 * w, rng)
    torch.save(ckpt, tmp_path / "mla_cremad.pth")
    report = convert_file("released", tmp_path / "mla_cremad.pth", tmp_path / "av.pt", {"resnet18": {"width": w}})
    assert report["modalities"] == ["audio", "video"] and report["dropped"] == []
    spec = {"name": "resnet18", "width": w, "stem": "imagenet"}
    method = create_method("mla_released", torch.nn.ModuleDict(
        {m: create_encoder(m, 8 * w, spec) for m in ("audio", "video")}), n_classes=6, feature_dim=8 * w)
    load_method_state(method, tmp_path / "av.pt")
    method.eval()
    g = torch.Generator().manual_seed(4)
    audio, video = torch.randn(2, 1, 64, 48, generator=g), torch.randn(2, 3, 3, 32, 32, generator=g)
    with torch.no_grad():
        out = method.predict({"audio": audio, "video": video})
    sd = {k[len("module."):]: v for k, v in ckpt["model"].items()}
    a = ref_resnet18(sd, "audio_net.", audio).mean((2, 3))  # [C]: adaptive_avg_pool2d
    v = ref_resnet18(sd, "visual_net.", video.flatten(0, 1))  # [C]: frames as B·T images, then avg_pool3d
    v = v.view(2, 3, *v.shape[1:]).mean((1, 3, 4))
    wh, bh = sd["fusion_module.fc_out.weight"], sd["fusion_module.fc_out.bias"]
    torch.testing.assert_close(out["audio"], a @ wh.T + bh, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["video"], v @ wh.T + bh, atol=1e-4, rtol=1e-4)
    # A Normal/concat checkpoint (head over 2 × 32 features) is not an MLA checkpoint.
    ckpt["model"]["module.fusion_module.fc_out.weight"] = torch.zeros(6, 16 * w)
    torch.save(ckpt, tmp_path / "concat.pth")
    with pytest.raises(ConversionError, match=r"shared head takes 32 features"):
        convert_file("released", tmp_path / "concat.pth", tmp_path / "concat.pt", {"resnet18": {"width": w}})
