"""Scoring: accuracy of every prediction a method makes, over the examples it can predict."""
from __future__ import annotations

import torch

from mla.batches import SplitTensors, eval_batches
from mla.methods.base import Method


def scored_rows(data: SplitTensors) -> torch.Tensor:
    """The examples a model over ``data.modalities`` is scored on.

    A split over several modalities is scored on every example (absent inputs zeroed, fusion
    over the present ones), so Table 2 keeps its whole test set in the denominator. A split
    over one modality (a ``unimodal`` run) is scored on the examples that have it: a unimodal
    model has nothing to predict a sample without its modality from.
    """
    if len(data.modalities) == 1:
        return torch.nonzero(data.present[:, 0].cpu()).flatten()
    return torch.arange(len(data))


@torch.no_grad()
def accuracies(method: Method, data: SplitTensors, batch_size: int) -> dict[str, float]:
    """Accuracy (%) per prediction key of ``method.predict`` over :func:`scored_rows` of ``data``.

    Scoring is per example, so the batch size does not change the result; the number of
    scored examples is checked against the rows (no dropped last batch).
    """
    rows = scored_rows(data)
    if len(data) == 0:
        raise ValueError("cannot score an empty split")
    if len(rows) == 0:
        raise ValueError(f"no example to score: none of the {len(data)} examples has modality "
                         f"{data.modalities[0]!r} under this missing rate; lower missing.rates or use more data")
    was_training = method.training
    method.eval()
    correct: dict[str, int] = {}
    seen = 0
    for batch in eval_batches(data, batch_size, rows):
        for key, logits in method.predict(batch).items():
            correct[key] = correct.get(key, 0) + int((logits.argmax(-1) == batch["label"]).sum())
        seen += len(batch["label"])
    method.train(was_training)
    if seen != len(rows):
        raise RuntimeError(f"scored {seen} examples, expected {len(rows)}")
    return {k: round(100.0 * v / seen, 4) for k, v in sorted(correct.items())}


def split_metrics(acc: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Split ``predict`` keys into plain accuracies and ``multi:<fusion>`` variants."""
    plain = {k: v for k, v in acc.items() if ":" not in k}
    fusion = {k.split(":", 1)[1]: v for k, v in acc.items() if k.startswith("multi:")}
    return plain, fusion
