"""Every option of the Table 2 baselines that the method checks: a bad value is refused with the method's
and the option's names and the setting that fixes it (``method_options.<method>.<option>``); the
boundary values the sources use (a weight of 0, a dropout of 0) are accepted. Boundaries are tested
on both sides so that a loosened or tightened check fails here."""
from __future__ import annotations

import pytest
import torch

from mla.frozen import identity_encoders
from mla.methods.base import METHODS, create_method

S, N_CLASSES = 12, 3
# Small networks: construction only.
SMALL = {"embed_dim": 4, "cls_layers": [4], "ae_layers": [8, 4], "hidden": 8, "n_components": 3,
         "latent_dim": 4, "att_dim": 8, "heads": 2}
WEIGHTS = {"ae": ["ce_weight", "mse_weight"], "cra": ["ce_weight", "mse_weight"],
           "mmin": ["ce_weight", "mse_weight", "cycle_weight"],
           "if_mmin": ["ce_weight", "mse_weight", "invariant_weight"],
           "cca": ["r1", "r2"], "dcca": ["r1", "r2"], "dccae": ["r1", "r2", "recon_weight"]}
POSITIVE = {"ae": ["clip_norm", "embed_dim"], "cra": ["clip_norm", "embed_dim", "n_blocks"],
            "mmin": ["clip_norm", "pretrain_clip_norm", "pretrain_lr", "embed_dim", "n_blocks", "pretrain_batch_size"],
            "if_mmin": ["clip_norm", "pretrain_clip_norm", "pretrain_lr", "embed_dim", "n_blocks",
                        "pretrain_batch_size", "cmd_order"],
            "cpm_net": ["latent_dim", "net_steps", "latent_steps", "test_epochs", "test_steps",
                        "lr_net", "lr_latent", "lr_test"],
            "tate": ["att_dim", "heads", "lr"],
            "cca": ["n_components", "svm_c"], "dcca": ["n_components", "hidden", "eps", "svm_c"],
            "dccae": ["n_components", "hidden", "eps", "svm_c"]}
DROPOUTS = {"ae": ["dropout"], "cra": ["dropout"], "mmin": ["dropout", "pretrain_dropout"],
            "if_mmin": ["dropout", "pretrain_dropout"], "tate": ["dropout"]}
LAYERS = {"ae": ["cls_layers", "ae_layers"], "cra": ["cls_layers", "ae_layers"],
          "mmin": ["cls_layers", "ae_layers"], "if_mmin": ["cls_layers", "ae_layers"]}
CHOICES = {"ae": ["train_keep"], "cra": ["train_keep"], "mmin": ["train_keep", "pretrain_on"],
           "if_mmin": ["train_keep", "pretrain_on"]}
MODS = ("audio", "image", "text")


def build(name: str, **options):
    small = {k: v for k, v in SMALL.items() if k in METHODS.get(name).defaults}
    return create_method(name, identity_encoders(MODS), n_classes=N_CLASSES, feature_dim=S, **{**small, **options})


def refused(name: str, key: str, value) -> str:
    with pytest.raises(ValueError) as err:
        build(name, **{key: value})
    msg = str(err.value)
    assert f"method {name}: option {key}={value!r}; expected " in msg, msg
    assert f"method_options.{name}.{key}" in msg, msg
    return msg


def cases(table: dict) -> list[tuple[str, str]]:
    return [(m, k) for m, keys in table.items() for k in keys]


@pytest.mark.parametrize("name,key", cases(WEIGHTS))
def test_a_weight_may_be_zero_not_negative(name, key):
    assert build(name, **{key: 0}).options[key] == 0
    assert f"{key}=-0.5" in refused(name, key, -0.5)
    refused(name, key, "1")


@pytest.mark.parametrize("name,key", cases(POSITIVE))
def test_a_positive_setting_refuses_zero_and_negatives(name, key):
    refused(name, key, 0)
    refused(name, key, -1)
    refused(name, key, True)


@pytest.mark.parametrize("name,key", cases(DROPOUTS))
def test_a_dropout_lies_in_zero_to_one(name, key):
    build(name, **{key: 0})
    build(name, **{key: 0.99})
    refused(name, key, 1.0)
    refused(name, key, -0.1)


@pytest.mark.parametrize("name,key", cases(LAYERS))
def test_layer_sizes_are_a_non_empty_list_of_positive_integers(name, key):
    for bad in ([], [4, 0], 4, [4.0]):
        refused(name, key, bad)


@pytest.mark.parametrize("name,key", cases(CHOICES))
def test_a_choice_outside_its_list_is_refused(name, key):
    assert "expected one of" in refused(name, key, "bogus")


@pytest.mark.parametrize("name", ["mmin", "if_mmin"])
def test_pretrain_epochs_are_two_non_negative_integers_not_both_zero(name):
    build(name, pretrain_epochs=[0, 1])
    build(name, pretrain_epochs=[1, 0])
    for bad in ([0, 0], [1], [1, -1], [1.0, 1], 3):
        refused(name, "pretrain_epochs", bad)


def test_options_set_the_networks_they_name():
    """The checked values reach the model: sizes, clip norms and dropout rates."""
    ae = build("ae", embed_dim=5, cls_layers=[7], dropout=0.25, clip_norm=2.5)
    assert ae.fused_dim == 15 and ae.clip == 2.5
    assert ae.utt["audio"][0].out_features == 7 and ae.utt["audio"][-1].out_features == 5
    assert ae.utt["audio"][2].p == 0.25 and ae.classifier[2].p == 0.25 and ae.decoders["text"][2].p == 0.25
    assert ae.classifier[-1].out_features == N_CLASSES and ae.decoders["text"][-1].out_features == S
    assert ae.decoders["text"][0].in_features == 15 and ae.classifier[0].in_features == 15
    cra = build("cra", n_blocks=3, ae_layers=[6, 2])
    assert len(cra.autoencoder.blocks) == 3


@pytest.mark.parametrize("name", ["dcca", "dccae"])
def test_dcca_layers_may_be_zero(name):
    assert len(build(name, layers=0).nets["audio"]) == 1  # one Linear: feature -> components
    assert f"{name}: option layers=-1; expected an integer >= 0" in refused(name, "layers", -1)
    refused(name, "layers", 1.5)


def test_cca_components_at_most_the_feature_size():
    assert build("cca", n_components=S).proj.shape == (3, 2, S, S)
    assert "n_components=13; expected at most the feature size 12 (model.feature_dim)" in refused(
        "cca", "n_components", S + 1)
    cca = build("cca")  # buffers saved with the state: counts are integers, the flag a boolean
    assert cca.n_both.dtype == torch.long and cca.fitted.dtype == torch.bool


@pytest.mark.parametrize("name", sorted(set(WEIGHTS) | set(POSITIVE)))
def test_the_base_keeps_classes_and_feature_size(name):
    method = build(name)
    assert (method.n_classes, method.feature_dim, method.modalities) == (N_CLASSES, S, MODS)


def test_refusals_say_what_is_expected():
    assert refused("ae", "cls_layers", []).endswith(
        "option cls_layers=[]; expected a non-empty list of positive integers (method_options.ae.cls_layers)")
    assert refused("ae", "dropout", 1.0).endswith(
        "option dropout=1.0; expected a number in [0, 1) (method_options.ae.dropout)")
    assert refused("mmin", "train_keep", "x").endswith(
        "option train_keep='x'; expected one of proper, any (method_options.mmin.train_keep)")
    assert refused("tate", "heads", 0).endswith("option heads=0; expected a positive integer (method_options.tate.heads)")
    assert refused("ae", "clip_norm", 0).endswith("option clip_norm=0; expected a number > 0 (method_options.ae.clip_norm)")
    assert refused("ae", "mse_weight", -1).endswith(
        "option mse_weight=-1; expected a number >= 0 (method_options.ae.mse_weight)")
    assert build("ae", cls_layers=[1], ae_layers=[1]).utt["audio"][0].out_features == 1  # 1 is a positive size
