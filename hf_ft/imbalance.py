"""What a task can do about imbalanced labels: weigh the loss by class, or draw rare classes as often as common ones.

    weights = balanced_class_weights(train_label_ids, num_labels)       # scikit-learn's class_weight="balanced"
    Trainer(..., compute_loss_func=weighted_cross_entropy(weights, label_smoothing=args.label_smoothing_factor))
    StrictResumeTrainer(..., train_sampler=ClassBalancedSampler(train_label_ids, seed=args.seed))
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

logger = logging.getLogger("hf_ft")

IGNORE_INDEX = -100  # labels the loss skips: padding, special tokens, unscored sub-tokens


def balanced_class_weights(label_ids: np.ndarray, num_labels: int) -> torch.Tensor:
    """One weight per class, `n_samples / (n_present_classes * count)`: scikit-learn's `class_weight="balanced"`, so
    every class present in `label_ids` weighs as much in the loss as the others, and the average example weighs 1.
    Labels equal to `IGNORE_INDEX` are not counted; a class absent from `label_ids` gets weight 0."""
    labels = np.asarray(label_ids, dtype=np.int64).ravel()
    counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=num_labels).astype(np.float64)
    weights = np.zeros(num_labels)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def weighted_cross_entropy(
    weights: torch.Tensor, *, label_smoothing: float = 0.0
) -> Callable[[Any, torch.Tensor, Any], torch.Tensor]:
    """A `compute_loss_func` for classifiers of any output shape ((N, C) for a label per example, (N, T, C) for a
    label per token): cross-entropy with each example weighted by its class.

    The labels are class ids, or class distributions ((N, C) floats, as mixup and CutMix make them: an example then
    weighs the average of its classes' weights, and `label_smoothing` is left to whoever mixed them).
    As the Trainer expects of a `compute_loss_func`, the summed loss is divided by `num_items_in_batch` (the labelled
    items of the whole accumulated batch), so gradient accumulation and several processes change nothing; without
    it, the weighted mean. The Trainer skips its own label smoothing for a `compute_loss_func`: pass
    `label_smoothing_factor` here.
    """

    def compute_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.reshape(-1, logits.shape[-1]).float()
        class_weights = weights.to(logits.device)
        if labels.is_floating_point():
            targets = labels.reshape(-1, logits.shape[-1]).to(logits.device)
            losses = F.cross_entropy(logits, targets, weight=class_weights, reduction="none")
            example_weights = targets @ class_weights
        else:
            labels = labels.reshape(-1).to(logits.device)
            losses = F.cross_entropy(
                logits, labels, weight=class_weights, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing,
                reduction="none",
            )
            example_weights = class_weights[labels[labels != IGNORE_INDEX]]
        if num_items_in_batch is None:
            return losses.sum() / example_weights.sum()
        return losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)

    return compute_loss


class ClassBalancedSampler(torch.utils.data.Sampler[int]):
    """Each epoch, as many training indices as there are examples, drawn with replacement with a chance inversely
    proportional to the example's class count: every class is drawn about equally often, and an epoch keeps its
    length (rare examples repeat, common ones are left out in turn).

    The draw comes from a generator seeded by `seed` and the epoch (`set_epoch`, which the Trainer and Accelerate
    call), not from a running random state: a run resumed mid-epoch draws what the unbroken run drew, and every
    process draws the same order before Accelerate gives each its share of the batches.
    """

    def __init__(self, label_ids: np.ndarray, *, seed: int):
        labels = np.asarray(label_ids, dtype=np.int64)
        counts = np.bincount(labels)
        self.weights = torch.tensor(1.0 / counts[labels], dtype=torch.float64)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)  # one stream per (seed, epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()


def class_balanced_sampler(enabled: bool, label_ids: np.ndarray, *, seed: int) -> ClassBalancedSampler | None:
    """The sampler `--class_balanced_sampling` asks for, or None for the Trainer's own shuffling."""
    if not enabled:
        return None
    logger.info("Class-balanced sampling: each class drawn about equally often (with replacement)")
    return ClassBalancedSampler(label_ids, seed=seed)


def class_weighted_loss(
    class_weight: str | None, label_ids: np.ndarray, num_labels: int, *, label_smoothing: float = 0.0
) -> Callable[[Any, torch.Tensor, Any], torch.Tensor] | None:
    """The `compute_loss_func` `--class_weight` asks for, from the training labels (`IGNORE_INDEX` skipped), or None
    for the model's own loss. Logs the weights."""
    if class_weight is None:
        return None
    weights = balanced_class_weights(label_ids, num_labels)
    logger.info(
        "Class weights (%s, from the training labels): min %.3g, max %.3g", class_weight, weights.min(), weights.max()
    )
    return weighted_cross_entropy(weights, label_smoothing=label_smoothing)
