"""``dcca``: deep canonical correlation analysis + a linear SVM (Andrew et al., ICML 2013), Table 2's DCCA row.

Andrew et al. 2013, section "Deep CCA": one network per view, trained to maximise the total correlation of their
outputs, the sum of the top-k canonical correlations ``Σ σ_i(Σ11^-1/2 Σ12 Σ22^-1/2)`` with the
covariances regularised by ``r1 I``, ``r2 I``. As GCNet runs it (github zeroQiaoba/GCNet at 8cce4a0,
``baseline-cca/dcca.py``, a port of Michaelvll/DeepCCA):

- per modality an MLP ``[s, hidden, hidden, hidden, n_components]`` with BatchNorm and ReLU
  (L104-119, sizes at L519-521; ``n_hidden`` = 1024, ``n_components`` = 10, L453-454);
- loss: minus the sum over modality pairs (three for three modalities, L41-47) of the total
  correlation with ``r1 = r2 = 1e-3``, ``eps = 1e-9`` and all ``n_components`` singular values
  (L50-99, ``mla.methods.cca_parts.total_correlation``; ``torch.linalg.eigh`` for the removed
  ``torch.symeig``);
- then a linear SVM, ``LinearSVC(C=0.01, dual=False)`` (L552), on the concatenated outputs of all
  modalities' networks.

Missing modalities: a pair's correlation in a batch uses only the rows that have both modalities,
and needs at least ``n_components + 1`` of them (fewer give a rank-deficient covariance); a batch
where no pair has enough is not a step, and is counted in the log (``batches_without_pair``). At a
rate where no example keeps two modalities (released masking at eta 0.7 with three modalities) the
networks therefore keep their initial weights and only the SVM learns; the log says so. A modality's
network runs on its present rows only in training; for the SVM and at test time an absent modality
enters as its training-mean feature (GCNet's ``padmeanV1``, util.py L124-153, over the training
split only), so its output is the network's response to that mean. Per-modality prediction: every
other modality treated as absent.

How it runs in the ordinary loop: ``train_step`` is a gradient step of the correlation loss with
the pipeline's optimizer; at the end of every epoch, ``epoch_batches`` fits the SVM on the whole
training split's outputs (eval mode), so each epoch's validation score is that of a complete
DCCA + SVM and validation selects among epochs. The fill means are computed at the first epoch
and kept in a buffer (saved, resumed).

Deviations: the pipeline's optimizer, batch size and epochs (``training``) instead of GCNet's Adam
(lr 1e-3, weight decay 1e-4), batch 1024 and 20 epochs (L532-536, L455); GCNet's three-modality
model runs the second network on the third modality too (``z3 = self.model2(x3)``, L133), a slip
we do not reproduce (each modality has its own network); rows without a pair are excluded from the
correlation instead of entering it as mean-filled inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.batches import shuffled_batches
from mla.catalog import option_defaults
from mla.methods.base import METHODS, Method
from mla.methods.cca_parts import LinearSVM, features, fill, mlp, modality_pairs, total_correlation, whole_split
from mla.methods.option_checks import check_count, check_positive

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "n_components": {"default": 10},
        "hidden": {"default": 1024},
        "layers": {"default": 3},
        "r1": {"default": 1.0e-3},
        "r2": {"default": 1.0e-3},
        "eps": {"default": 1.0e-9},
        "svm_c": {"default": 0.01},
    },
}


@METHODS.register("dcca")
class DCCA(Method):
    """One MLP per modality trained on the pairwise total correlation; a linear SVM on their outputs."""

    name = "dcca"
    defaults = option_defaults(CATALOG)
    modality_counts = CATALOG["modality_counts"]

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        o = self.options
        n = self.name
        check_count(n, "n_components", o["n_components"])
        check_count(n, "hidden", o["hidden"])
        check_count(n, "layers", o["layers"], minimum=0)
        for key in ("r1", "r2"):
            check_positive(n, key, o[key], zero_ok=True)
        for key in ("eps", "svm_c"):
            check_positive(n, key, o[key])
        self.sizes = [feature_dim] + [o["hidden"]] * o["layers"] + [o["n_components"]]
        self.nets = nn.ModuleDict({m: mlp(self.sizes) for m in self.modalities})
        self.pairs = modality_pairs(self.modalities)
        self.register_buffer("mean", torch.zeros(len(self.modalities), feature_dim))
        self.register_buffer("mean_ready", torch.zeros((), dtype=torch.bool))
        self.svm = LinearSVM(o["n_components"] * len(self.modalities), n_classes, o["svm_c"])
        self.without_pair = 0  # batches of this epoch with no pair to correlate

    # --- the correlation objective ---------------------------------------------------------
    def outputs(self, batch: dict) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Training: modality index -> (its network's outputs on its present rows, those rows'
        positions in the batch); a modality with fewer than 2 present rows (BatchNorm needs 2) is left out."""
        out = {}
        for i, m in enumerate(self.modalities):
            rows = torch.nonzero(batch["present"][:, i]).flatten()
            if len(rows) >= 2:
                out[i] = (self.nets[m](self.encoders[m](batch[m][rows])), rows)
        return out

    def correlation_loss(self, batch: dict, outs: dict) -> torch.Tensor | None:
        """Minus the summed total correlation of every pair over the rows that have both modalities,
        or None when no pair has ``n_components + 1`` such rows."""
        o, terms = self.options, []
        n = batch["present"].shape[0]
        for a, b in self.pairs:
            if a not in outs or b not in outs:
                continue
            pos = {}
            for i in (a, b):  # row of the batch -> row of that modality's outputs
                pos[i] = torch.full((n,), -1, dtype=torch.long, device=batch["present"].device)
                pos[i][outs[i][1]] = torch.arange(len(outs[i][1]), device=pos[i].device)
            both = torch.nonzero(batch["present"][:, a] & batch["present"][:, b]).flatten()
            if len(both) < o["n_components"] + 1:
                continue
            terms.append(total_correlation(outs[a][0][pos[a][both]], outs[b][0][pos[b][both]],
                                           o["n_components"], o["r1"], o["r2"], o["eps"]))
        return -torch.stack(terms).sum() if terms else None

    def extra_loss(self, batch: dict, outs: dict) -> torch.Tensor | None:
        """Further training terms (DCCAE's reconstruction); none for DCCA."""
        return None

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        outs = self.outputs(batch)
        corr = self.correlation_loss(batch, outs)
        self.without_pair += corr is None
        parts = [t for t in (corr, self.extra_loss(batch, outs)) if t is not None]
        if not parts:  # nothing to learn from this batch (counted above, reported in the log)
            optimizer.zero_grad(set_to_none=True)
            optimizer.step()  # no gradient anywhere: changes nothing, keeps the order PyTorch's scheduler expects
            return 0.0
        return self.optimise(torch.stack(parts).sum(), optimizer)

    # --- the classifier ----------------------------------------------------------------------
    def components(self, batch: dict, keep: str | None = None, encoded: bool = False) -> torch.Tensor:
        """(B, k·M): every modality's network output on its feature, or on its training mean where
        absent (every modality but ``keep`` treated as absent, if given). ``encoded``: the batch
        already holds the encoders' features."""
        present = batch["present"]
        feats = {m: batch[m] for m in self.modalities} if encoded else features(self.encoders, batch)
        if keep is not None:
            present = present & torch.tensor([m == keep for m in self.modalities], device=present.device)
        return torch.cat([self.nets[m](fill(feats[m], present[:, i], self.mean[i]))
                          for i, m in enumerate(self.modalities)], dim=1)

    @torch.no_grad()
    def fit_means(self, data, batch_size: int) -> None:
        """Each modality's fill value: its mean over the training rows that have it."""
        feats, present, _ = whole_split(data, batch_size, self.encoders)
        for i, m in enumerate(self.modalities):
            if not present[:, i].any():
                raise ValueError(f"{type(self).__name__.lower()}: modality {m!r} is absent from every training "
                                 f"example; lower missing.rates")
            self.mean[i] = feats[m][present[:, i]].mean(0)
        self.mean_ready.fill_(True)

    @torch.no_grad()
    def fit_classifier(self, data, batch_size: int) -> None:
        """The SVM on the whole training split's components, networks in eval mode."""
        was = self.training
        self.eval()
        feats, present, labels = whole_split(data, batch_size, self.encoders)
        z = torch.cat([self.components({**{m: feats[m][i:i + batch_size] for m in self.modalities},
                                        "present": present[i:i + batch_size]}, encoded=True)
                       for i in range(0, len(labels), batch_size)])
        self.svm.fit(z.cpu().numpy(), labels.cpu().numpy())
        self.train(was)

    def epoch_batches(self, data, batch_size: int, gen: torch.Generator):
        """One shuffled pass of gradient steps, then the SVM fitted on the epoch's networks."""
        if not bool(self.mean_ready):
            self.fit_means(data, batch_size)
        yield from shuffled_batches(data, batch_size, gen)
        self.fit_classifier(data, batch_size)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {"multi": self.svm(self.components(batch))}
        for m in self.modalities if self.score_modalities else ():
            out[m] = self.svm(self.components(batch, keep=m))
        return out

    def epoch_diagnostics(self) -> dict:
        """Batches of the epoch in which no modality pair had enough rows to correlate."""
        n, self.without_pair = self.without_pair, 0
        return {"batches_without_pair": n}
