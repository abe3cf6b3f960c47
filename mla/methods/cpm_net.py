"""``cpm_net``: Cross Partial Multi-View Networks (Zhang et al., NeurIPS 2019), on fixed features.

Sources: the paper §2.1 Eq. (5), §2.2 Eqs. (6)-(8), §2.3 and Algorithm 1; the authors' code
github.com/hanmenghan/CPM_Nets (commit df6b1b4) ``util/model.py`` L11-171, ``util/classfiy.py``
L31-47; and GCNet's port, which the MLA paper's Table 2 follows (github.com/zeroQiaoba/GCNet,
commit 8cce4a0) ``baseline-cpmnet/util/model.py`` L11-214, ``baseline-cpmnet/util/classfiy.py``
L31-47, ``baseline-cpmnet/test_lianzheng.py`` L20-52 and the CPM-Net command of its
``README.md`` (L143-153). Read for facts only; nothing is copied.

No encoder: every training sample n owns a latent vector h_n (``train_latents``, (N, k)), and
one reconstruction network per modality maps it back to that modality's feature:
``f_v(h) = W_v h + b_v`` (GCNet's ``layer_size = [[dim_v]]``: a single linear layer, Xavier
weights, zero bias; the original repository's two linear layers without activation compute the
same function class). The modality features (the frozen unimodal encoders' outputs, ``encoders``
being identity maps in the grid) are targets only; they are detached.

- Reconstruction (Eq. 5; model.py L122-128): ``l_r = sum_n sum_v s_nv ||f_v(h_n) - x_nv||^2``,
  summed (not averaged) as the code does. An absent view (``present[n, v]`` False) is not
  multiplied by zero but left out with ``torch.where``, so its feature is never read.
- Structured classification loss (Eqs. 6-7 with phi(h) = h; model.py L139-160): with
  F = h h^T off the diagonal, mu_nc = mean of F[n, m] over the other training samples m of class
  c, prediction ``argmax_c mu_nc`` and ``theta_n = [prediction != y_n]``,
  ``l_c = sum_n relu(theta_n + max_c mu_nc - mu_{n, y_n})``. A class without training samples
  is left out of the max (the code would divide by zero); a class with a single training sample
  is an error (its sample has no class mates to be compared with).
- Training (Algorithm 1; model.py L165-186, alternating as the code does): ``epoch_batches``
  yields the whole training split as one batch (the code is full-batch: the structured loss
  compares every pair of training samples); ``train_step`` then takes ``net_steps`` Adam steps
  (lr ``lr_net``) on l_r for the networks with the latents fixed, then ``latent_steps`` Adam
  steps (lr ``lr_latent``) on ``l_r + lamb * l_c`` for the latents with the networks fixed. One
  loop epoch is one such round (the code's ``--epochs-train`` counts the same rounds).
- Test (model.py L190-204, classfiy.py ``ave``): each test sample gets a fresh latent,
  optimised for ``test_epochs * test_steps`` Adam steps (lr ``lr_test``, the code's
  ``learning_rate[0]``) on the reconstruction of its present views only, the trained networks
  and training latents frozen (gradients are taken with respect to the test latents alone, so
  ``predict`` changes no weight and no optimiser state). It is classified by its mean similarity
  to each class's training latents, ``mean_{m in class c} h^T h_m`` (these means are the logits).

How it fits the Method API (``mla/methods/base.py``):

- The latents are sized to the training split when ``epoch_batches`` first sees it (drawn from
  the loop's generator, Xavier-uniform as the code's ``H_init``), and the training labels are
  kept in a buffer for classification; both are in ``state_dict``. ``batch["index"]`` selects
  the latents of a batch. Called without ``epoch_batches`` (batches of part of the split),
  ``train_step`` grows the latents to the largest index seen (restarting its optimisers); the
  structured loss then sums the batch's terms, its class means and the classification using the
  training samples seen so far.
- The method owns its two Adam optimisers (the code's separate optimisers for networks and
  latents, whose sum-reduced losses need Adam's scale invariance); the loop's ``optimizer`` is not
  used. Their state travels in the state dict (``get_extra_state``), so a resumed run continues
  with the same moments.
- Test latents start from a per-sample draw seeded by the sample's ``index`` (Xavier-uniform
  bound of the training latents), and Adam updates each sample's latent from its own loss only,
  so a prediction does not depend on the batch it is scored in.
- Per-modality prediction: the same test-time optimisation with only that modality's view
  counted (the other views treated as absent). A sample that lacks it, or (independent masking)
  lacks every view, keeps its initial latent: its prediction carries no information.

Deviations: the paper's §2.3 fine-tuning of the networks before test is in neither code base and
is not done; the code's xavier bound for test latents uses the test-set size, ours the training
set's (``predict`` sees one batch); the code reads labels 1..C, ours 0..C-1.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mla.batches import SplitTensors, shuffled_batches
from mla.catalog import option_defaults
from mla.methods.base import METHODS, Method
from mla.methods.option_checks import check_count, check_positive

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "latent_dim": {"default": 128},     # GCNet README CPM-Net command --lsd-dim=128
        "lamb": {"default": 1.0},           # GCNet README --lamb=1
        "lr_net": {"default": 0.001},       # GCNet test_lianzheng.py L52 learning_rate[0]
        "lr_latent": {"default": 0.01},     # GCNet test_lianzheng.py L52 learning_rate[1]
        "lr_test": {"default": 0.001},      # GCNet model.py L80: the test latents use learning_rate[0]
        "net_steps": {"default": 5},        # GCNet model.py L165 step=[5, 5]
        "latent_steps": {"default": 5},     # GCNet model.py L165
        "test_epochs": {"default": 300},    # GCNet README --epochs-test=300
        "test_steps": {"default": 5},       # GCNet model.py L198: 5 updates per test epoch
    },
}

_INT_OPTIONS = ("latent_dim", "net_steps", "latent_steps", "test_epochs", "test_steps")
_RATE_OPTIONS = ("lamb", "lr_net", "lr_latent", "lr_test")


def reconstruction_loss(recon: dict[str, torch.Tensor], views: dict[str, torch.Tensor],
                        present: torch.Tensor) -> torch.Tensor:
    """Eq. (5): ``sum_n sum_v s_nv ||recon_v[n] - views_v[n]||^2`` over present entries only.

    ``recon`` and ``views`` map each modality to (B, s); ``present`` is (B, M) bool in the same
    modality order. Absent entries are selected away (never multiplied), so NaN there is harmless.
    """
    total = recon[next(iter(recon))].new_zeros(())
    for i, m in enumerate(recon):
        keep = present[:, i].unsqueeze(1)
        sq = torch.where(keep, recon[m] - torch.where(keep, views[m], torch.zeros_like(views[m])), 0.0)
        total = total + sq.pow(2).sum()
    return total


def class_mean_similarity(h: torch.Tensor, ref: torch.Tensor, ref_labels: torch.Tensor, n_classes: int,
                          self_rows: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C) mean of ``h_b . ref_m`` over the ``ref`` rows m of each class; -inf for empty classes.

    With ``self_rows`` (``h[b]`` is ``ref[self_rows[b]]``) a sample is left out of its own class
    mean, as in the training loss (model.py L141-151); without, this is classfiy.py's ``ave``.
    """
    onehot = F.one_hot(ref_labels, n_classes).to(h.dtype)  # (N, C)
    sim = h @ ref.T
    counts = onehot.sum(0, keepdim=True).expand(h.shape[0], -1)
    if self_rows is not None:
        sim = sim.scatter(1, self_rows.unsqueeze(1), 0.0)
        counts = counts - onehot[self_rows]
    sums = sim @ onehot
    return torch.where(counts > 0, sums / counts.clamp(min=1), float("-inf"))


def structured_loss(h: torch.Tensor, labels: torch.Tensor, n_classes: int,
                    rows: torch.Tensor | None = None) -> torch.Tensor:
    """Eqs. (6)-(7): ``sum_n relu(theta_n + max_c mu_nc - mu_{n,y_n})`` over the latents ``h`` (N, k).

    The sum runs over ``rows`` (default: every sample); the class means always use all of ``h``.
    """
    rows = torch.arange(len(h), device=h.device) if rows is None else rows
    mu = class_mean_similarity(h[rows], h, labels, n_classes, self_rows=rows)
    y = labels[rows]
    own = mu.gather(1, y.unsqueeze(1)).squeeze(1)
    if torch.isinf(own).any():
        lonely = sorted({int(c) for c in y[torch.isinf(own)]})
        raise ValueError(f"method cpm_net: class(es) {lonely} have a single training sample; the structured "
                         "loss compares each sample with the other samples of its class")
    best, pred = mu.max(1)
    theta = (pred != y).to(h.dtype)
    return F.relu(theta + best - own).sum()


def xavier_bound(fan_in: int, fan_out: int) -> float:
    """The code's ``xavier_init`` bound, ``sqrt(6 / (fan_in + fan_out))``."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def per_sample_uniform(index: torch.Tensor, dim: int, bound: float) -> torch.Tensor:
    """(B, dim) U(-bound, bound) rows, row b drawn from a generator seeded with ``index[b]``."""
    rows = [torch.empty(dim).uniform_(-bound, bound, generator=torch.Generator().manual_seed(int(i)))
            for i in index.tolist()]
    return torch.stack(rows) if rows else torch.empty(0, dim)


@METHODS.register("cpm_net")
class CPMNet(Method):
    """Per-sample latents, linear reconstruction networks, structured loss, test-time latents."""

    defaults = option_defaults(CATALOG)
    modality_counts = CATALOG["modality_counts"]

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        for key in _INT_OPTIONS:
            check_count("cpm_net", key, self.options[key])
        for key in _RATE_OPTIONS:
            check_positive("cpm_net", key, self.options[key])
        k = self.options["latent_dim"]
        self.decoders = nn.ModuleDict({m: nn.Linear(k, feature_dim) for m in self.modalities})
        for lin in self.decoders.values():  # the code's xavier_init weights and zero biases
            nn.init.uniform_(lin.weight, -xavier_bound(k, feature_dim), xavier_bound(k, feature_dim))
            nn.init.zeros_(lin.bias)
        self.train_latents = nn.Parameter(torch.empty(0, k))
        self.register_buffer("train_labels", torch.empty(0, dtype=torch.long))
        self._optimisers: tuple[torch.optim.Adam, torch.optim.Adam] | None = None

    # --- latents and optimisers ------------------------------------------------------------
    def size_latents(self, labels: torch.Tensor, gen: torch.Generator | None = None) -> None:
        """Create the training latents for a training split with ``labels`` (once per run)."""
        if self.train_latents.shape[0] not in (0, len(labels)):
            raise ValueError(f"method cpm_net: latents were sized for {self.train_latents.shape[0]} training "
                             f"samples, got a training split of {len(labels)}")
        if not self.train_latents.shape[0]:
            self.grow_latents(len(labels), gen)
        self.train_labels.copy_(labels)

    def grow_latents(self, n: int, gen: torch.Generator | None = None) -> None:
        """Latents for ``n`` training samples: existing rows kept, new rows drawn, their labels unknown
        (-1) until a batch shows them. Growing restarts the method's Adam optimisers."""
        old, k = self.train_latents.shape[0], self.options["latent_dim"]
        if n <= old:
            return
        bound = xavier_bound(n, k)
        device = self.decoders[self.modalities[0]].weight.device
        new = torch.empty(n - old, k).uniform_(-bound, bound, generator=gen).to(device)
        self.train_latents = nn.Parameter(torch.cat([self.train_latents.detach(), new]))
        self.train_labels = torch.cat([self.train_labels, self.train_labels.new_full((n - old,), -1)])
        self._optimisers = None

    def optimisers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """(networks' Adam, latents' Adam), built on first use (model.py L70-76)."""
        if self._optimisers is None:
            self._optimisers = (torch.optim.Adam(self.decoders.parameters(), lr=float(self.options["lr_net"])),
                                torch.optim.Adam([self.train_latents], lr=float(self.options["lr_latent"])))
        return self._optimisers

    def get_extra_state(self) -> dict:
        """Both optimisers' states, saved with the weights so that a resumed run keeps its moments."""
        if self._optimisers is None:
            return {}
        return {"net": self._optimisers[0].state_dict(), "latent": self._optimisers[1].state_dict()}

    def set_extra_state(self, state: dict) -> None:
        """Restore the optimisers saved by :meth:`get_extra_state` (none if never built)."""
        self._optimisers = None
        if state:
            net, latent = self.optimisers()
            net.load_state_dict(state["net"])
            latent.load_state_dict(state["latent"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "train_latents")
        if stored is not None and stored.shape != self.train_latents.shape:
            self.train_latents = nn.Parameter(self.train_latents.new_empty(stored.shape))
            self.train_labels = self.train_labels.new_empty(stored.shape[:1])
            self._optimisers = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- pieces ------------------------------------------------------------------------------
    def views(self, batch: dict) -> dict[str, torch.Tensor]:
        """Each modality's feature (the reconstruction target), detached."""
        return {m: self.encoders[m](batch[m]).detach().float() for m in self.modalities}

    def decode(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every reconstruction network applied to latents ``h`` (B, k)."""
        return {m: self.decoders[m](h) for m in self.modalities}

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """The whole training split as one shuffled batch (the code is full-batch); sizes the latents."""
        self.size_latents(data.labels, gen)
        return shuffled_batches(data, len(data), gen)

    # --- training ------------------------------------------------------------------------------
    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """One round of Algorithm 1: networks on l_r, then latents on l_r + lamb * l_c.

        ``optimizer`` (the loop's) is not used: the method steps its own Adam optimisers.
        """
        index, labels, present = batch["index"], batch["label"], batch["present"]
        self.grow_latents(int(index.max()) + 1)  # only if called without epoch_batches
        self.train_labels[index] = labels
        views = self.views(batch)
        net_opt, latent_opt = self.optimisers()
        params = list(self.decoders.parameters())
        for _ in range(self.options["net_steps"]):
            loss = reconstruction_loss(self.decode(self.train_latents[index].detach()), views, present)
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
            net_opt.step()
        known = (self.train_labels >= 0).nonzero().squeeze(1)  # every row once a whole split was seen
        position = torch.full_like(self.train_labels, -1)
        position[known] = torch.arange(len(known), device=known.device)
        for _ in range(self.options["latent_steps"]):
            structured = structured_loss(self.train_latents[known], self.train_labels[known], self.n_classes,
                                         rows=position[index])
            loss = (reconstruction_loss(self.decode(self.train_latents[index]), views, present)
                    + float(self.options["lamb"]) * structured)
            (self.train_latents.grad,) = torch.autograd.grad(loss, [self.train_latents])
            latent_opt.step()
        return float(loss.detach())

    # --- test ------------------------------------------------------------------------------------
    def fit_test_latents(self, views: dict[str, torch.Tensor], present: torch.Tensor,
                         init: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """Latents minimising the reconstruction of the present views, networks frozen.

        Returns the latents (B, k) and the objective before each Adam step and after the last.
        """
        h = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([h], lr=float(self.options["lr_test"]))
        trace = []
        with torch.enable_grad():
            for _ in range(self.options["test_epochs"] * self.options["test_steps"]):
                loss = reconstruction_loss(self.decode(h), views, present)
                (h.grad,) = torch.autograd.grad(loss, [h])
                trace.append(float(loss.detach()))
                opt.step()
            trace.append(float(reconstruction_loss(self.decode(h), views, present).detach()))
        return h.detach(), trace

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """Logits = mean similarity to each class's training latents, for all views and for each alone."""
        if not self.train_latents.shape[0]:
            raise RuntimeError("method cpm_net: predict before training (no training latents)")
        views, present, b = self.views(batch), batch["present"], len(batch["label"])
        alone_of = self.modalities if self.score_modalities else ()
        copies = 1 + len(alone_of)  # all present views; then each modality alone
        alone = torch.eye(len(self.modalities), dtype=torch.bool, device=present.device)
        masks = torch.cat([present] + [present & alone[i] for i in range(len(alone_of))])
        stacked = {m: v.repeat(copies, 1) for m, v in views.items()}
        k = self.options["latent_dim"]
        init = per_sample_uniform(batch["index"].cpu(), k, xavier_bound(self.train_latents.shape[0], k))
        init = init.to(self.train_latents.device).repeat(copies, 1)
        h, _ = self.fit_test_latents(stacked, masks, init)
        known = self.train_labels >= 0  # every row once a whole training split has been seen
        logits = class_mean_similarity(h, self.train_latents.detach()[known], self.train_labels[known], self.n_classes)
        parts = logits.split(b)
        return {"multi": parts[0], **{m: parts[1 + i] for i, m in enumerate(alone_of)}}
