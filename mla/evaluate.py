"""Scoring: accuracy of every prediction a method makes, over the whole split."""
from __future__ import annotations

import torch

from mla.batches import SplitTensors, eval_batches
from mla.methods.base import Method


@torch.no_grad()
def accuracies(method: Method, data: SplitTensors, batch_size: int) -> dict[str, float]:
    """Accuracy (%) per prediction key of ``method.predict`` over every example of ``data``.

    Scoring is per example, so the batch size does not change the result; the number of
    scored examples is checked against the split's length (no dropped last batch).
    """
    was_training = method.training
    method.eval()
    correct: dict[str, int] = {}
    seen = 0
    for batch in eval_batches(data, batch_size):
        for key, logits in method.predict(batch).items():
            correct[key] = correct.get(key, 0) + int((logits.argmax(-1) == batch["label"]).sum())
        seen += len(batch["label"])
    method.train(was_training)
    if seen != len(data):
        raise RuntimeError(f"scored {seen} examples, expected {len(data)}")
    return {k: round(100.0 * v / seen, 4) for k, v in sorted(correct.items())}


def split_metrics(acc: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Split ``predict`` keys into plain accuracies and ``multi:<fusion>`` variants."""
    plain = {k: v for k, v in acc.items() if ":" not in k}
    fusion = {k.split(":", 1)[1]: v for k, v in acc.items() if k.startswith("multi:")}
    return plain, fusion
