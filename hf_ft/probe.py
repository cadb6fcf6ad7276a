"""A frozen-backbone linear probe: the baseline that says what fine-tuning added beyond the pretrained features.

Before training, the model's head input (the features its new head is given: a pooled vector per example, or one
per token) is computed for every example of the training and evaluation splits, under the same preprocessing as
evaluation; a logistic regression (scikit-learn) is fitted on the training features, its regularisation chosen on
validation accuracy. Its class log-probabilities on the evaluation splits take the place of the model's logits, so
the task scores the probe with its own report code, on the same examples as the fine-tuned model (`runs.finish`).

    probe = linear_probe(trainer, {"train": ..., "validation": ..., "test": ...})   # before trainer.train()
    runs.finish(..., linear_probe=probe)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import datasets
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import Trainer

from .args import ConfigError
from .models import new_head_module_names
from .runs import Prediction

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried (on standardised features); the best on validation accuracy is kept.
C_GRID = (0.01, 0.1, 1.0, 10.0)
ABSENT_CLASS_LOGIT = -1e4  # a class with no training example: never predicted


@dataclass
class LinearProbe:
    """The probe's predictions on the evaluation splits, as `runs.predict` gives the model's, and how it was fitted."""

    predictions: dict[str, Prediction]
    C: float
    train_examples: int  # the examples (or tokens) it was fitted on
    feature_size: int


def linear_probe(trainer: Trainer, splits: Mapping[str, datasets.Dataset]) -> LinearProbe | None:
    """Fit the probe on `splits["train"]`'s head inputs and predict "validation" and "test" (those there are): every
    process computes its share of the features, the main one fits and returns the probe (the others None). The
    random state is restored afterwards, so the training that follows is the one it would have been.

    Raises:
        ConfigError: the model is not a single-label classifier (multi-label, regression).
    """
    problem_type = trainer.model.config.problem_type
    if problem_type in ("multi_label_classification", "regression"):
        raise ConfigError(f"--linear_probe_baseline is for single-label classification; this model's problem_type is "
                          f"{problem_type}. Set --linear_probe_baseline false.")
    with torch.random.fork_rng():
        features = {name: _head_inputs(trainer, split) for name, split in splits.items()}
    if not trainer.is_world_process_zero():
        return None
    train_x, train_y, _ = features.pop("train")
    validation = features.get("validation")
    fitted, C = _fit(train_x, train_y, validation and validation[:2])
    num_labels = trainer.model.config.num_labels
    predictions = {}
    for name, (x, y, label_ids) in features.items():
        scores = np.full((len(x), num_labels), ABSENT_CLASS_LOGIT, dtype=np.float32)
        scores[:, fitted.classes_] = fitted.predict_log_proba(x)
        logits = np.zeros((*label_ids.shape, num_labels), dtype=np.float32)
        logits[label_ids != -100] = scores  # per token: the labelled positions, in order
        predictions[name] = Prediction(logits, label_ids, {})
    logger.info("Linear probe: logistic regression, C=%g, on %d training features of size %d", C, len(train_x),
                train_x.shape[1])
    return LinearProbe(predictions, C, len(train_x), train_x.shape[1])


def head_input_module(model: torch.nn.Module) -> torch.nn.Module:
    """The first module of the model's new head (`hf_ft.models.new_head_module_names`): its input is the pretrained
    features. Through a PEFT wrapper too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = new_head_module_names(base)
    if not names:
        raise ValueError(f"{type(base).__name__} has no classification head to probe.")
    return base.get_submodule(names[0])


@torch.no_grad()
def _head_inputs(trainer: Trainer, split: datasets.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features of the labelled examples or tokens (n, H), their labels (n,), the split's label ids as
    `Trainer.predict` returns them: (N,), or (N, L) padded with -100)."""
    model, module = trainer.model, head_input_module(trainer.model)
    captured = []
    handle = module.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    features, label_batches = [], []
    try:
        for batch in trainer.get_test_dataloader(split):
            labels = batch.pop("labels")
            model(**{key: value.to(trainer.args.device) for key, value in batch.items()})
            found = captured.pop().float()
            labels = labels.to(found.device)
            if labels.dim() > 1:  # per token: the same width on every process before gathering
                found = trainer.accelerator.pad_across_processes(found, dim=1)
                labels = trainer.accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
            found, labels = trainer.accelerator.gather_for_metrics((found, labels))
            keep = labels != -100
            features.append(found[keep].cpu().numpy())
            label_batches.append(labels.cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    width = max((batch.shape[1] for batch in label_batches if batch.ndim > 1), default=None)
    if width is not None:
        label_batches = [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-100) for b in label_batches]
    label_ids = np.concatenate(label_batches)
    return np.concatenate(features), label_ids[label_ids != -100], label_ids


def _fit(x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None) -> tuple[Pipeline, float]:
    """The logistic regression of `y` on standardised `x`, with the C of `C_GRID` best on `validation` (C=1 without
    one)."""
    def fit(C: float) -> Pipeline:
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000)).fit(x, y)

    if validation is None:
        return fit(1.0), 1.0
    fitted = {C: fit(C) for C in C_GRID}
    best = max(C_GRID, key=lambda C: (fitted[C].score(*validation), -C))  # a tie: the stronger regularisation
    return fitted[best], best
