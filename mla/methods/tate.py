"""``tate``: Tag-Assisted Transformer Encoder (Zeng, Liu & Zhou, SIGIR 2022), on fixed features.

Sources: "Tag-assisted Multimodal Sentiment Analysis under Uncertain Missing Modalities",
SIGIR 2022 (doi 10.1145/3477495.3532064, arXiv 2204.13707), its method section (tag encoding,
two-by-two space projection, transformer encoder-decoder, losses); the authors' code
github.com/JaydenZeng/TATE (commit e450189), TensorFlow 1: ``iemocap/network.py`` L11-157 (the
IEMOCAP model), ``network.py`` L89-105 (the tag table for one and two missing modalities),
``module.py`` L21-27 (``SigmoidAtt``), L173-240 (attention and feed-forward blocks),
``Settings.py`` L1-13 and ``iemocap/train.py`` L37-80. Read for facts only; nothing is copied.

Each modality enters as one utterance-level feature (B, s), a sequence of length one, as the
baselines of the MLA paper's Table 2 do:

1. Per modality: ``Linear(s, d, bias=False)`` and one transformer block (network.py L22-55).
2. Two-by-two space projection (L71-84): one bias-free matrix per pair of modalities, shared by
   the pair; a modality's common vector concatenates its projections with each partner, in
   modality order (M = 3: d x d/2 matrices, M = 2: one d x d matrix), so every token has d dims.
3. Tag (L89-99 and network.py L89-105): a 4-bit vector appended to every token -- bit 0 set when
   no modality is missing, bit 1 + j set when modality j is missing. The code's table lists the
   complete case, each single and each double missing case of its three modalities; we compute
   the same bits from ``present``. With two modalities bit 3 is always 0 (the width stays 4, so
   the joint width is d + 4 as in the code). As we read the released code, its ``if
   self.flag[i] == -1`` tests compare a TensorFlow 1.14 tensor by identity, which is never
   equal, so every sample gets the table's last tag; we implement the table the branches spell out.
4. Encoder and decoder: one transformer block each on the (B, M, d + 4) joint tokens (L104-134).
5. Pooling (``SigmoidAtt``): ``a = softmax_l(((X Wu) * sigmoid(X Wm)) Wr)``, ``z = sum_l a_l X_l``;
   classifier ``Linear(d + 4, d, bias=False)`` then ``Linear(d, C)`` (L141-147).

Transformer block (module.py L173-240): multi-head attention with bias-free Q, K, V projections,
no output projection, dropout on the attention weights, residual, layer norm; then a feed-forward
``Linear(D, 4D) -> ReLU -> Linear(4D, D)``, residual, layer norm. The code's key masking of
all-zero positions never applies to a length-one sequence or to tagged tokens, so there is none.

Losses (iemocap/network.py L136-157): ``sum_b CE + 0.1 * l2 + 0.1 * de + 0.1 * tag`` with
``l2 = 1e-4 * (||W_l||^2 + ||b_l||^2) / 2`` on the last layer; ``de``, the reconstruction of the
tagged joint representation by the decoder, the symmetric KL between ``softmax(decoded)`` and
``softmax(joint)`` per token, averaged over tokens and summed over the batch; ``tag`` the mean
absolute error between the tag and ``sigmoid`` of the pooled vector's last 4 entries.

Missing modalities: an absent modality's feature is replaced by zeros before anything reads it
(``torch.where``, so a NaN there never propagates), which is what the code feeds for a missing
modality, and the tag says which are missing. The reconstruction loss compares only the tokens of
present modalities (the code compares every token, including the zero-derived ones of missing
modalities): an absent modality has no data to reconstruct.

Deviations, each forced by the protocol or stated as ours:

- The code's third loss, ``0.1 * kl``, pulls the encoder output towards that of a separately
  pre-trained network (trained on complete data; checkpoints ``saved-model/MT_ATT_model-290``).
  This protocol has no such network, and complete-modality data exist only for the samples the
  mask leaves complete (none at eta = 0.7 with three modalities under ``masking: released``);
  the term is not implemented.
- The method owns its Adam optimiser (lr 0.001, Settings.py L12), as the code trains with Adam on
  summed losses; the loop's ``optimizer`` is not used. Its state is in the state dict. Batch size
  and number of epochs are the grid's (the code: 32 and 15, Settings.py L3, L7).
- Dropout (0.2 on attention weights) is active in training only (the code leaves it on at test).
- Per-modality prediction: the model with only that modality counted present (its tag too).
"""
from __future__ import annotations

from itertools import combinations
import torch
from torch import nn
from torch.nn import functional as F

from mla.catalog import option_defaults
from mla.methods.base import METHODS, Method
from mla.methods.option_checks import check_count, check_fraction, check_positive

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "att_dim": {"default": 300},        # TATE Settings.py L9 att_dim
        "heads": {"default": 4},            # iemocap/network.py L30 num_heads=4
        "dropout": {"default": 0.2},        # iemocap/network.py L31 dropout_rate=0.2 (attention weights)
        "lr": {"default": 0.001},           # Settings.py L12, Adam (iemocap/train.py L44)
        "l2_weight": {"default": 0.1},      # iemocap/network.py L157: 0.1 * l2_loss
        "l2_scale": {"default": 0.0001},    # iemocap/network.py L155: l2_regularizer(0.0001)
        "de_weight": {"default": 0.1},      # iemocap/network.py L157: 0.1 * de_loss
        "tag_weight": {"default": 0.1},     # iemocap/network.py L157: 0.1 * tag_loss
    },
}
TAG_BITS = 4  # the code's tag width: [complete, missing_1, missing_2, missing_3]


def missing_tag(present: torch.Tensor) -> torch.Tensor:
    """(B, 4) tag of each sample's missing pattern from ``present`` (B, M), M <= 3.

    Bit 0: no modality missing; bit 1 + j: modality j missing (the code's table, network.py L89-105).
    """
    b, m = present.shape
    if m > TAG_BITS - 1:
        raise ValueError(f"method tate: the tag encodes at most {TAG_BITS - 1} modalities, got {m}")
    tag = present.new_zeros((b, TAG_BITS), dtype=torch.float32)
    tag[:, 0] = present.all(1).float()
    tag[:, 1:1 + m] = (~present).float()
    return tag


class Block(nn.Module):
    """The code's transformer block: bias-free QKV attention (no output projection) + residual + LN,
    then a ReLU feed-forward (4x) + residual + LN."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"method tate: width {dim} is not divisible by heads={heads} "
                             "(set method_options.tate.att_dim or heads)")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-8), nn.LayerNorm(dim, eps=1e-8)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head scaled dot-product self-attention over (B, L, D) tokens."""
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        weights = F.dropout(weights, self.dropout, self.training)
        return (weights @ v).transpose(1, 2).reshape(b, n, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attend(x))
        return self.ln2(x + self.ff(x))


def symmetric_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``KL(softmax a || softmax b) + KL(softmax b || softmax a)`` over the last axis."""
    la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    return ((la.exp() - lb.exp()) * (la - lb)).sum(-1)


@METHODS.register("tate")
class TATE(Method):
    """Per-modality blocks, pairwise space projection, tagged joint tokens, encoder-decoder."""

    defaults = option_defaults(CATALOG)
    modality_counts = CATALOG["modality_counts"]

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        o = self.options
        for key in ("att_dim", "heads"):
            check_count("tate", key, o[key])
        check_fraction("tate", "dropout", o["dropout"])
        check_positive("tate", "lr", o["lr"])
        d, m = o["att_dim"], len(self.modalities)
        if d % (m - 1):
            raise ValueError(f"method tate: att_dim {d} must be divisible by {m - 1} (one share per partner "
                             "modality; set method_options.tate.att_dim)")
        self.project = nn.ModuleDict({k: nn.Linear(feature_dim, d, bias=False) for k in self.modalities})
        self.unimodal_blocks = nn.ModuleDict({k: Block(d, o["heads"], o["dropout"]) for k in self.modalities})
        self.pairs = list(combinations(range(m), 2))
        self.pair_maps = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d // (m - 1)))) for _ in self.pairs])
        joint = d + TAG_BITS
        self.encoder = Block(joint, o["heads"], o["dropout"])
        self.decoder = Block(joint, o["heads"], o["dropout"])
        self.pool_r = nn.Parameter(nn.init.xavier_uniform_(torch.empty(joint, 1)))
        self.pool_m = nn.Parameter(nn.init.xavier_uniform_(torch.empty(joint, joint)))
        self.pool_u = nn.Parameter(nn.init.xavier_uniform_(torch.empty(joint, joint)))
        self.hidden = nn.Linear(joint, d, bias=False)
        self.head = nn.Linear(d, n_classes)
        for lin in self.modules():  # the code's xavier initialiser (iemocap/train.py L40), zero biases
            if isinstance(lin, nn.Linear):
                nn.init.xavier_uniform_(lin.weight)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
        self._optimiser: torch.optim.Adam | None = None

    # --- optimiser -------------------------------------------------------------------------------
    def optimiser(self) -> torch.optim.Adam:
        """The method's Adam over all its parameters (iemocap/train.py L44), built on first use."""
        if self._optimiser is None:
            self._optimiser = torch.optim.Adam(self.parameters(), lr=float(self.options["lr"]))
        return self._optimiser

    def get_extra_state(self) -> dict:
        """The optimiser's state, saved with the weights so that a resumed run keeps its moments."""
        return {} if self._optimiser is None else {"adam": self._optimiser.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        """Restore the optimiser saved by :meth:`get_extra_state` (none if it was never built)."""
        self._optimiser = None
        if state:
            self.optimiser().load_state_dict(state["adam"])

    # --- model -----------------------------------------------------------------------------------
    def joint_tokens(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        """(B, M, d + 4) tagged common vectors; absent modalities enter as zero features."""
        enc = []
        for i, k in enumerate(self.modalities):
            x = batch[k]
            x = torch.where(present[:, i].view(-1, *([1] * (x.dim() - 1))), x, torch.zeros_like(x))
            feats = self.encoders[k](x).float()
            enc.append(self.unimodal_blocks[k](self.project[k](feats).unsqueeze(1)).squeeze(1))
        common = []
        for i in range(len(self.modalities)):
            shares = [enc[i] @ self.pair_maps[p] for p, pair in enumerate(self.pairs) if i in pair]
            common.append(torch.cat(shares, -1))
        tokens = torch.stack(common, 1)
        tag = missing_tag(present).to(tokens.dtype)
        return torch.cat([tokens, tag.unsqueeze(1).expand(-1, tokens.shape[1], -1)], -1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``SigmoidAtt``: attention weights from ``((x Wu) * sigmoid(x Wm)) Wr``, softmax over tokens."""
        scores = ((x @ self.pool_u) * torch.sigmoid(x @ self.pool_m)) @ self.pool_r  # (B, L, 1)
        return (torch.softmax(scores, dim=1) * x).sum(1)

    def forward_parts(self, batch: dict, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Joint tokens, encoded, decoded, pooled vector and logits of one batch."""
        joint = self.joint_tokens(batch, present)
        encoded = self.encoder(joint)
        pooled = self.pool(encoded)
        return {"joint": joint, "encoded": encoded, "decoded": self.decoder(encoded), "pooled": pooled,
                "logits": self.head(self.hidden(pooled))}

    def losses(self, parts: dict[str, torch.Tensor], labels: torch.Tensor, present: torch.Tensor) -> dict:
        """The code's loss terms (sums over the batch as in iemocap/network.py L136-157)."""
        ce = F.cross_entropy(parts["logits"].float(), labels, reduction="sum")
        l2 = float(self.options["l2_scale"]) * (self.head.weight.pow(2).sum() + self.head.bias.pow(2).sum()) / 2
        kl = symmetric_kl(parts["decoded"].float(), parts["joint"].float())  # (B, M)
        counted = present.to(kl.dtype)
        has = counted.sum(1) > 0
        de = ((kl * counted).sum(1)[has] / counted.sum(1)[has]).sum()
        tag = missing_tag(present).to(parts["pooled"].dtype)
        tag_loss = (tag - torch.sigmoid(parts["pooled"][:, -TAG_BITS:])).abs().mean()
        o = self.options
        total = (ce + float(o["l2_weight"]) * l2 + float(o["de_weight"]) * de + float(o["tag_weight"]) * tag_loss)
        return {"total": total, "ce": ce, "l2": l2, "de": de, "tag": tag_loss}

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """One Adam step on the code's total loss (the loop's ``optimizer`` is not used)."""
        loss = self.losses(self.forward_parts(batch, batch["present"]), batch["label"], batch["present"])["total"]
        return self.optimise(loss, self.optimiser())

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """Logits with the batch's presence mask, and for each modality with only it counted present."""
        present = batch["present"]
        out = {"multi": self.forward_parts(batch, present)["logits"]}
        for i, k in enumerate(self.modalities if self.score_modalities else ()):
            alone = torch.zeros_like(present)
            alone[:, i] = present[:, i]
            out[k] = self.forward_parts(batch, alone)["logits"]
        return out
