"""Classification metrics that work offline: `evaluate` modules shipped inside hf_ft, and the Trainer hook.

`evaluate.load("accuracy")` fetches the metric script from the Hub, so it fails offline (and is slow unless
`HF_HUB_OFFLINE=1`). hf_ft ships its own modules, `hf_ft/metrics/<name>/<name>.py`, each an
`evaluate.Metric` over scikit-learn with the compute arguments of the Hub metric of the same name, and loads
them by local path: nothing is downloaded, ever.

    >>> from hf_ft import metrics
    >>> metrics.load("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0], average="macro")
    >>> trainer = Trainer(..., compute_metrics=metrics.compute_metrics_for_classification(num_labels))

Macro F1 in `classification_metrics` is the mean F1 over the classes that occur in the labels being scored.
Predicting a class that does not occur is still an error: it lowers the recall of the true class. Averaging
over all `range(num_labels)` instead would add an F1 of 0 for every class absent from the split whatever the
model does (2 TP / (2 TP + FP + FN) has TP = 0), which only rescales the score by (present / num_labels):
the same ranking of models, but a perfect model on a split that lacks a class would score below 1. So the
score is comparable across evaluations and runs on the same split, and 1.0 means perfect.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import evaluate
    from transformers import EvalPrediction

_MODULES_DIR = Path(__file__).resolve().parent
# Top-k accuracy is reported with this k, when there are more classes than k (otherwise it is always 1).
TOP_K = 5


def shipped_names() -> list[str]:
    """Names of the metric modules shipped with hf_ft (a folder `<name>/` holding `<name>.py`)."""
    return sorted(p.name for p in _MODULES_DIR.iterdir() if (p / f"{p.name}.py").is_file())


@functools.cache
def load(name: str) -> evaluate.EvaluationModule:
    """Load a metric module shipped with hf_ft, offline, once per process.

    The module is cached: Trainer calls `compute_metrics` at every evaluation, and loading copies and imports
    a script each time. Use `compute(...)` on it (not `add_batch`), so no state carries over between callers.

    Args:
        name: One of `shipped_names()`, e.g. "accuracy", "f1", "precision", "recall", "top_k_accuracy",
            "confusion_matrix".

    Raises:
        ValueError: `name` is not a shipped module.
    """
    # Imported here: `import evaluate` pulls in transformers' pipelines (seconds), which only a load needs.
    import evaluate

    names = shipped_names()
    if name not in names:
        raise ValueError(f"Unknown metric {name!r}. hf_ft ships these (they work offline): {', '.join(names)}.")
    # keep_in_memory: no cache files or file locks on disk, so processes evaluating side by side (DDP) cannot
    # collide on them, and nothing is left behind.
    # evaluate.load draws from Python's global RNG. The first evaluation of a resumed run loads the modules
    # later than the unbroken run did, so that draw would shift the run's augmentations: keep the state.
    rng_state = random.getstate()
    try:
        return evaluate.load(str(_MODULES_DIR / name), keep_in_memory=True)
    finally:
        random.setstate(rng_state)


def check_classification_inputs(
    logits: np.ndarray, labels: np.ndarray, num_labels: int, *, what: str = "predictions"
) -> tuple[np.ndarray, np.ndarray]:
    """Check that `logits` (N, num_labels) and `labels` (N,) fit together, and return them as numpy arrays.

    Args:
        logits: Per-class scores, one row per sample.
        labels: True class ids in `[0, num_labels)`.
        num_labels: Number of classes of the model.
        what: Names the inputs in error messages, e.g. "split 'test'".

    Returns:
        `(logits, labels)` as a float array and an int64 array.

    Raises:
        ValueError: Shapes do not match, there are no samples, or a label is not a class id.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise ValueError(
            f"{what}: logits must have shape (num_samples, {num_labels}) (one score per class), got "
            f"{logits.shape}. Pass the model's logits, not argmax-ed predictions."
        )
    if labels.ndim != 1 or len(labels) != len(logits):
        raise ValueError(f"{what}: labels must have shape ({len(logits)},) to match the logits, got {labels.shape}.")
    if len(labels) == 0:
        raise ValueError(f"{what}: there are no samples to score.")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError(f"{what}: labels must be integer class ids, got values such as {labels[:3].tolist()}.")
        labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_labels)]
    if bad.size:
        raise ValueError(
            f"{what}: label id {int(bad[0])} is not a class id in [0, {num_labels}) ({bad.size} such labels). "
            "Check that the label column and num_labels / label names match."
        )
    return logits.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, macro F1 and, with more than 5 classes, top-5 accuracy of single-label classification.

    Training-time evaluation and the final report both use this, so their numbers agree.

    Args:
        logits: Per-class scores, shape (N, num_labels).
        labels: True class ids, shape (N,).
        num_labels: Number of classes of the model.

    Returns:
        `{"accuracy", "f1", "top5_accuracy" (only if num_labels > 5)}` as floats. `f1` is the macro F1 over
        the classes present in `labels` (see the module docstring for why).

    Raises:
        ValueError: See `check_classification_inputs`.
    """
    logits, labels = check_classification_inputs(logits, labels, num_labels)
    predictions = logits.argmax(axis=-1)
    results = {
        "accuracy": load("accuracy").compute(predictions=predictions, references=labels)["accuracy"],
        "f1": load("f1").compute(
            predictions=predictions, references=labels, labels=np.unique(labels), average="macro", zero_division=0
        )["f1"],
    }
    if num_labels > TOP_K:
        # labels=range(num_labels): scikit-learn otherwise infers the classes from `labels` and refuses a split
        # in which some class is absent.
        results[f"top{TOP_K}_accuracy"] = load("top_k_accuracy").compute(
            predictions=logits, references=labels, k=TOP_K, labels=list(range(num_labels))
        )["top_k_accuracy"]
    return results


def compute_metrics_for_classification(num_labels: int) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build `Trainer(compute_metrics=...)` for single-label classification (see `classification_metrics`).

    Trainer prefixes the keys with "eval_", so `metric_for_best_model` can be "accuracy", "f1" or
    "top5_accuracy". The model must return logits (no `preprocess_logits_for_metrics` that argmaxes them).

    Args:
        num_labels: Number of classes of the model.
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        # Models asked for hidden states or attentions return a tuple; the logits come first.
        if isinstance(logits, tuple):
            logits = logits[0]
        return classification_metrics(logits, eval_prediction.label_ids, num_labels)

    return compute_metrics
