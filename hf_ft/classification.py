"""What the classification tasks (image, text, token tags) share: metrics, per-class tables, confusion matrices,
hardest classes, and the model-card metadata of those metrics.

    trainer = Trainer(..., compute_metrics=classification.compute_metrics_for_classification(num_labels))
    task_report = classification.evaluate(output_dir, predictions, label_names, train_label_counts)

`evaluate` writes into the run's output dir, for each split:

- `<split>_per_class.csv`: precision, recall, F1 and support of every class;
- `<split>_confusion_matrix.csv`: the full confusion matrix, in counts;
- `<split>_confusion_matrix.png`: rows normalized by true class (with many classes, only the classes most involved
  in mistakes, so the picture stays readable);

and returns the `report.TaskReport` (accuracy, macro F1, top-5 accuracy with more than 5 classes, the
majority-class baseline; the hardest classes and the confusion matrices) that `hf_ft.report` lays out.

Macro F1 in `classification_metrics` is the mean F1 over the classes that occur in the labels being scored.
Predicting a class that does not occur is still an error: it lowers the recall of the true class. Averaging
over all `range(num_labels)` instead would add an F1 of 0 for every class absent from the split whatever the
model does (2 TP / (2 TP + FP + FN) has TP = 0), which only rescales the score by (present / num_labels):
the same ranking of models, but a perfect model on a split that lacks a class would score below 1. So the
score is comparable across evaluations and runs on the same split, and 1.0 means perfect.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hf_ft import markdown as md
from hf_ft.errors import InputError
from hf_ft.metrics import load
from hf_ft.report import TaskReport, check_split_name

if TYPE_CHECKING:
    from transformers import EvalPrediction

# Top-k accuracy is reported with this k, when there are more classes than k (otherwise it is always 1).
TOP_K = 5
# Display names of the metrics, the same in reports and cards. "f1" averages only the classes present in the split
# scored (see above), and the name says so: a reader comparing it with a macro F1 over all classes would otherwise
# be misled.
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "majority_baseline_accuracy": "Majority-class baseline",
    "f1": "Macro F1 (classes present in the split)",
    f"top{TOP_K}_accuracy": f"Top-{TOP_K} accuracy",
}
# hf_ft metric -> (model-index `type`, `args`). The spec (hub-docs modelcard.md) wants the metric's id on
# hf.co/metrics as type and the `Metric.compute()` arguments as args; its `config` is a load-time configuration
# name, which none of these metrics has. No Hub metric computes top-k accuracy: the id is that of hf_ft's module
# (and scikit-learn's function) of the same computation.
CARD_METRIC_TYPES = {
    "accuracy": ("accuracy", None),
    "f1": ("f1", {"average": "macro"}),
    f"top{TOP_K}_accuracy": ("top_k_accuracy", {"k": TOP_K}),
}
MACRO_F1_NOTE = (
    "Macro F1 is the unweighted mean of the per-class F1 over the classes present in each split (a class absent "
    "from a split is left out, not counted as 0)."
)
# How many classes the "hardest classes" section lists.
NUM_WORST_CLASSES = 5
# Above this many classes the confusion matrix cells are too small to carry a printed number.
MAX_ANNOTATED_CLASSES = 30
# Above this many classes a full confusion matrix is unreadable: the picture shows the classes most involved in
# mistakes instead (the CSV keeps the whole matrix).
MAX_PLOTTED_CLASSES = 50
# How many classes that picture shows: few enough to carry printed numbers.
NUM_CONFUSED_CLASSES = MAX_ANNOTATED_CLASSES


@dataclass
class _SplitResult:
    """Everything the report shows about one split."""

    metrics: dict[str, float]
    # Per class id: precision, recall, f1 (NaN where undefined: the class is absent and never predicted) and
    # support.
    per_class: dict[str, np.ndarray]
    # Counts: rows are true classes, columns predicted classes.
    confusion: np.ndarray


# --- metrics ---------------------------------------------------------------------------------------------------


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


def evaluate(
    output_dir: str | Path,
    predictions: Mapping[str, Sequence[np.ndarray]],
    label_names: Sequence[str],
    train_label_counts: Sequence[int],
    examples: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
) -> TaskReport:
    """Score each split, write its per-class CSV and confusion matrix (CSV and picture), and return the report.

    All inputs are checked before anything is written, so a bad argument leaves `output_dir` untouched.

    Args:
        output_dir: Where the files go (created if missing).
        predictions: Split name ("validation", "test") -> (logits of shape (N, C), label ids of shape (N,)), e.g.
            the `runs.Prediction`s of `runs.finish`. "test" (or else the last split) is the one the report dwells on.
        label_names: Class names, indexed by class id (C of them).
        train_label_counts: Samples per class id in the training split. The majority-class baseline always
            predicts the most frequent training class (the lowest id on a tie), as a model without inputs would.
        examples: Split -> (each example's `hf_ft.bootstrap.example_id`, a short text naming it): the report then
            keeps one record per example (`example_records`), for intervals and paired comparisons.

    Raises:
        ValueError: A split has a bad name, shapes that do not match, or label ids outside the classes;
            `train_label_counts` does not fit the classes.
    """
    label_names = [str(name) for name in label_names]
    checked = _check_splits(predictions, len(label_names))
    train_counts = _check_train_counts(train_label_counts, len(label_names))
    majority_class = int(np.argmax(train_counts))
    results = {
        name: _evaluate_split(logits, labels, len(label_names), majority_class) for name, (logits, labels) in checked.items()
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        _write_per_class_csv(output_dir / f"{name}_per_class.csv", result, label_names)
        _write_confusion_csv(output_dir / f"{name}_confusion_matrix.csv", result, label_names)
        _plot_confusion_matrix(output_dir / f"{name}_confusion_matrix.png", result, label_names, name)

    focus = "test" if "test" in results else list(results)[-1]
    shown = list(METRIC_NAMES) if len(label_names) > TOP_K else list(METRIC_NAMES)[:-1]  # top-k: always 1 below
    return TaskReport(
        metrics={name: result.metrics for name, result in results.items()},
        headline=_headline(results[focus].metrics, focus),
        columns={key: METRIC_NAMES[key] for key in shown},
        notes=_metrics_notes(label_names, train_counts),
        facts={"Classes": str(len(label_names))},
        sections=[
            _worst_classes_section(results[focus], focus, label_names),
            _confusion_section(results, len(label_names)),
        ],
        compared={"accuracy": "accuracy", "f1": "macro F1"},
        curves={"accuracy": "accuracy", "f1": "macro F1 (classes present)", f"top{TOP_K}_accuracy": f"top-{TOP_K} accuracy"},
        card_metric_types=CARD_METRIC_TYPES,
        card_note=MACRO_F1_NOTE,
        examples={
            name: example_records(checked[name][0], checked[name][1], label_names, *examples[name])
            for name in checked if examples and name in examples
        },
        scorer=records_scorer if examples else None,
        per_class_recall=True,
    )


def example_records(
    logits: np.ndarray, labels: np.ndarray, label_names: Sequence[str], ids: Sequence[str], inputs: Sequence[str]
) -> list[dict[str, Any]]:
    """One record per example (`hf_ft.bootstrap`): its id and name, reference and prediction by class name, the
    predicted class's softmax probability, and, with more than `TOP_K` classes, the top-`TOP_K` classes."""
    if not len(ids) == len(inputs) == len(labels):
        raise ValueError(f"{len(labels)} labels but {len(ids)} example ids and {len(inputs)} inputs.")
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    top = np.argsort(-logits, axis=-1, kind="stable")[:, :TOP_K]
    records = []
    for i, (label, row) in enumerate(zip(labels, top)):
        record = {
            "id": ids[i],
            "input": inputs[i],
            "reference": label_names[label],
            "prediction": label_names[row[0]],
            "correct": bool(row[0] == label),
            "probability": round(float(probabilities[i, row[0]]), 6),
        }
        if len(label_names) > TOP_K:
            record[f"top{TOP_K}"] = [label_names[j] for j in row]
        records.append(record)
    return records


def prediction_rows(
    scores: np.ndarray, label_names: Sequence[str], top_k: int, inputs: Sequence[str],
    references: Sequence[Any] | None = None, *, threshold: float | None = None,
) -> list[dict[str, Any]]:
    """`hf-ft predict`'s rows from class probabilities (N, C): the input's name, the top class and its probability
    (single label), or with a `threshold` every label scoring at least that (multi-label); the top `top_k` classes
    and their scores, best first; and the reference when there is one."""
    top = np.argsort(-scores, axis=-1, kind="stable")[:, : min(top_k, len(label_names))]
    rows = []
    for i, order in enumerate(top):
        if threshold is None:
            row = {"input": inputs[i], "label": label_names[order[0]], "score": round(float(scores[i, order[0]]), 6)}
        else:
            row = {"input": inputs[i], "labels": [label_names[j] for j in np.flatnonzero(scores[i] >= threshold)]}
        row["top_k_labels"] = [label_names[j] for j in order]
        row["top_k_scores"] = [round(float(scores[i, j]), 6) for j in order]
        if references is not None:
            row["reference"] = references[i]
        rows.append(row)
    return rows


def reference_ids(references: Sequence[str], label_names: Sequence[str], column: str) -> np.ndarray:
    """Reference labels by name as the model's class ids.

    Raises:
        InputError: a reference the model has no class for; the message names it and the model's labels.
    """
    ids = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(references) - ids.keys())
    if unknown:
        raise InputError(f"column `{column}` holds {unknown[:5]}, which the model does not predict; its labels are "
                         f"{list(label_names)[:30]}. Pass --label_column_name for another column.")
    return np.array([ids[name] for name in references])


def records_scorer(records: Sequence[dict[str, Any]]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of `example_records`: accuracy, macro F1 (classes present in the resample) and
    top-k accuracy, equal to `classification_metrics` on the same examples, counted with `np.bincount` so a
    thousand resamples take milliseconds."""
    names = {name: i for i, name in enumerate(dict.fromkeys(n for r in records for n in (r["reference"], r["prediction"])))}
    references = np.array([names[r["reference"]] for r in records])
    predicted = np.array([names[r["prediction"]] for r in records])
    in_top_k = np.array([r["reference"] in r[f"top{TOP_K}"] for r in records]) if f"top{TOP_K}" in records[0] else None
    num_classes = len(names)

    def statistic(indices: np.ndarray) -> dict[str, float]:
        truth, guess = references[indices], predicted[indices]
        hits = truth == guess
        true_counts = np.bincount(truth, minlength=num_classes)
        both = true_counts + np.bincount(guess, minlength=num_classes)
        f1 = np.divide(2 * np.bincount(truth[hits], minlength=num_classes), both, out=np.zeros(num_classes), where=both > 0)
        scores = {"accuracy": float(hits.mean()), "f1": float(f1[true_counts > 0].mean())}
        if in_top_k is not None:
            scores[f"top{TOP_K}_accuracy"] = float(in_top_k[indices].mean())
        return scores

    return statistic


def _check_splits(
    splits: Mapping[str, Sequence[np.ndarray]], num_labels: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the splits as checked numpy arrays (see `check_classification_inputs`)."""
    if not splits:
        raise ValueError("splits is empty: pass at least one split, e.g. {'validation': (logits, label_ids)}.")
    checked = {}
    for name, arrays in splits.items():
        check_split_name(name)
        if not isinstance(arrays, (tuple, list)) or len(arrays) not in (2, 3):  # 3: a runs.Prediction
            raise ValueError(f"splits[{name!r}] must be a (logits, label_ids) pair.")
        what = f"split {name!r} ({num_labels} label names)"
        checked[name] = check_classification_inputs(*arrays[:2], num_labels, what=what)
    return checked


def _check_train_counts(train_label_counts: list[int], num_labels: int) -> np.ndarray:
    counts = np.asarray(train_label_counts)
    if counts.shape != (num_labels,):
        raise ValueError(
            f"train_label_counts must have one count per class ({num_labels} label names), got shape {counts.shape}."
        )
    if np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(f"train_label_counts must be non-negative with a positive total, got {counts.tolist()}.")
    return counts


def _evaluate_split(logits: np.ndarray, labels: np.ndarray, num_labels: int, majority_class: int) -> _SplitResult:
    predictions = logits.argmax(axis=-1)
    metrics = classification_metrics(logits, labels, num_labels)
    metrics["majority_baseline_accuracy"] = float(np.mean(labels == majority_class))
    metrics["num_samples"] = len(labels)
    # Every class id, present or not, so the rows line up with label_names. NaN marks "undefined" (e.g. the
    # precision of a class never predicted) instead of a 0 that reads like a failure.
    class_ids = list(range(num_labels))
    per_class = {
        name: load(name).compute(
            predictions=predictions, references=labels, labels=class_ids, average=None, zero_division=np.nan
        )[name]
        for name in ("precision", "recall", "f1")
    }
    per_class["support"] = np.bincount(labels, minlength=num_labels)
    confusion = load("confusion_matrix").compute(predictions=predictions, references=labels, labels=class_ids)
    return _SplitResult(metrics=metrics, per_class=per_class, confusion=confusion["confusion_matrix"])


def _worst_classes(result: _SplitResult, count: int) -> list[int]:
    """Class ids with the lowest F1, among the classes that occur in the split (ties: lower id first)."""
    present = np.flatnonzero(result.per_class["support"] > 0)
    return sorted(present.tolist(), key=lambda i: (result.per_class["f1"][i], i))[:count]


def _most_confused_with(result: _SplitResult, class_id: int) -> tuple[int, int] | None:
    """(class most often predicted instead of `class_id`, how often), or None if it is never missed."""
    return _largest_other(result.confusion[class_id], class_id)


def _false_positive_source(result: _SplitResult, class_id: int) -> tuple[int, int, int] | None:
    """(its false positives, the true class most often predicted as `class_id`, how often); None without any."""
    column = result.confusion[:, class_id]
    largest = _largest_other(column, class_id)
    if largest is None:
        return None
    return int(column.sum() - column[class_id]), *largest


def _largest_other(counts: np.ndarray, class_id: int) -> tuple[int, int] | None:
    """(the class with the largest count other than `class_id`, its count); lowest id on a tie; None if all 0."""
    others = counts.copy()
    others[class_id] = 0
    if others.max() == 0:
        return None
    other = int(np.argmax(others))
    return other, int(others[other])


def _classes_to_plot(result: _SplitResult) -> np.ndarray:
    """Class ids the confusion matrix picture shows: all of them, or, above `MAX_PLOTTED_CLASSES`, the
    `NUM_CONFUSED_CLASSES` most involved in mistakes (missed plus wrongly predicted; ties: larger support, then
    lower id), most involved first."""
    num_labels = len(result.confusion)
    if num_labels <= MAX_PLOTTED_CLASSES:
        return np.arange(num_labels)
    correct = np.diag(result.confusion)
    involvement = result.confusion.sum(axis=1) + result.confusion.sum(axis=0) - 2 * correct
    order = np.lexsort((np.arange(num_labels), -result.per_class["support"], -involvement))
    return order[:NUM_CONFUSED_CLASSES]


# --- files ---------------------------------------------------------------------------------------------------------


def _write_per_class_csv(path: Path, result: _SplitResult, label_names: list[str]) -> None:
    columns = ("precision", "recall", "f1")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_id", "class_name", *columns, "support"])
        for class_id, name in enumerate(label_names):
            # An empty cell is an undefined value (NaN), which spreadsheets and pandas read as missing.
            values = [_csv_float(result.per_class[column][class_id]) for column in columns]
            writer.writerow([class_id, name, *values, int(result.per_class["support"][class_id])])


def _csv_float(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def _write_confusion_csv(path: Path, result: _SplitResult, label_names: list[str]) -> None:
    """Write the whole confusion matrix in counts: a row per true class (named in the first column), a column
    per predicted class (named in the header), in class id order."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true_class", *label_names])
        for name, row in zip(label_names, result.confusion):
            writer.writerow([name, *(int(count) for count in row)])


def _plot_confusion_matrix(path: Path, result: _SplitResult, label_names: list[str], split: str) -> None:
    """Save the confusion matrix normalized by true class (rows sum to 1; rows of absent classes stay 0).

    Above `MAX_PLOTTED_CLASSES` classes only those of `_classes_to_plot` are drawn; each row stays a fraction of
    all samples of its true class, so it sums to less than 1 where that class went to classes not drawn.
    """
    shown = _classes_to_plot(result)
    num_labels = len(shown)
    row_sums = result.confusion.sum(axis=1, keepdims=True)
    normalized = np.divide(result.confusion, row_sums, out=np.zeros(result.confusion.shape), where=row_sums > 0)
    normalized = normalized[np.ix_(shown, shown)]

    # Figure (not pyplot) renders with Agg: no display, no GUI backend, no global state to disturb.
    side = 7 + 0.25 * max(num_labels - 10, 0)
    figure = Figure(figsize=(side, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class")
    fontsize = _tick_fontsize(num_labels)
    names = [_shorten(label_names[class_id]) for class_id in shown]
    ticks = np.arange(num_labels)
    if num_labels <= 10:
        axes.set_xticks(ticks, names, fontsize=fontsize, rotation=45, ha="right", rotation_mode="anchor")
    else:
        axes.set_xticks(ticks, names, fontsize=fontsize, rotation=90)
    axes.set_yticks(ticks, names, fontsize=fontsize)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    accuracy = result.metrics["accuracy"]
    if num_labels < len(label_names):
        detail = (
            f"the {num_labels} of {len(label_names)} classes most involved in mistakes; "
            "rows: fraction of the true class"
        )
    else:
        detail = "rows normalized by true class"
    axes.set_title(f"Confusion matrix, {split} split: accuracy {accuracy:.2%}\n({detail})")
    if num_labels <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(axes, normalized, fontsize)
    figure.savefig(path, dpi=100)


def _annotate_cells(axes: Any, normalized: np.ndarray, fontsize: float) -> None:
    # Empty cells stay blank so the mistakes that did happen stand out.
    for (row, column), value in np.ndenumerate(normalized):
        if value > 0:
            color = "white" if value > 0.5 else "black"
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=fontsize, color=color)


def _tick_fontsize(num_labels: int) -> float:
    if num_labels <= 10:
        return 10
    if num_labels <= 30:
        return 8
    return 6


def _shorten(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


# --- report sections -------------------------------------------------------------------------------------------


def _headline(metrics: dict[str, float], split: str) -> str:
    return (
        f"**{split.capitalize()} accuracy {md.pct(metrics['accuracy'])}**, macro F1 {metrics['f1']:.4f} (over the "
        f"classes present in the split), on {metrics['num_samples']:,} samples. Always predicting the most frequent "
        f"training class would score {md.pct(metrics['majority_baseline_accuracy'])}."
    )


def _metrics_notes(label_names: list[str], train_counts: np.ndarray) -> str:
    majority = int(np.argmax(train_counts))
    return (
        f"The majority-class baseline always predicts {md.cell(label_names[majority])}, the most frequent class of the "
        f"training split ({int(train_counts[majority]):,} of {int(train_counts.sum()):,} samples): a model that "
        "does not clearly beat it has learned little. Macro F1 is the unweighted mean of the per-class F1 over "
        "the classes present in the split (not over all classes), so rare classes count as much as common ones, "
        "a class absent from the split is left out rather than counted as 0, and 1.0 means no mistakes. Compare it "
        "across runs on the same split only."
    )


def _worst_classes_section(result: _SplitResult, split: str, label_names: list[str]) -> str:
    worst = _worst_classes(result, NUM_WORST_CLASSES)
    rows = []
    for class_id in worst:
        support = int(result.per_class["support"][class_id])
        values = " | ".join(_fmt(result.per_class[column][class_id]) for column in ("f1", "precision", "recall"))
        often = _mistakes_cell(result, class_id, label_names)
        rows.append(f"| {md.cell(label_names[class_id])} | {values} | {support:,} | {often} |")
    return (
        f"## Hardest classes ({split})\n\n"
        f"The {len(worst)} classes with the lowest F1 on the {split} split, and the class each is most often "
        "predicted as instead; for a class never missed, how many samples of other classes were predicted as it, "
        f"and from which class most. Every class is in [`{split}_per_class.csv`]({split}_per_class.csv).\n\n"
        "| Class | F1 | Precision | Recall | Support | Most confused with |\n"
        "|---|---:|---:|---:|---:|---|\n" + "\n".join(rows)
    )


def _mistakes_cell(result: _SplitResult, class_id: int, label_names: list[str]) -> str:
    """What a hard class goes wrong with: the class it is most often predicted as, or, when it is never missed,
    where its false positives come from (a precision below 1 has a cause too)."""
    confused = _most_confused_with(result, class_id)
    if confused:
        support = int(result.per_class["support"][class_id])
        return f"{md.cell(label_names[confused[0]])} ({confused[1]:,} of {support:,})"
    false_positives = _false_positive_source(result, class_id)
    if false_positives:
        total, source, count = false_positives
        plural = "s" if total != 1 else ""
        return f"none missed; {total:,} false positive{plural}, most from {md.cell(label_names[source])} ({count:,})"
    return "— (no mistakes)"


def _confusion_section(results: dict[str, _SplitResult], num_labels: int) -> str:
    intro = "Rows are the true classes, normalized so each row sums to 1."
    if num_labels > MAX_PLOTTED_CLASSES:
        intro = (
            f"With {num_labels} classes a full matrix is unreadable, so each picture shows the "
            f"{NUM_CONFUSED_CLASSES} classes most involved in mistakes (samples missed plus samples of other classes "
            "predicted as them), most involved first. Rows are the true classes, each cell a fraction of all the "
            "true class's samples, so a row sums to less than 1 where samples went to classes not shown."
        )
    parts = ["## Confusion matrices", f"{intro} The full matrix, in counts, is in `<split>_confusion_matrix.csv`."]
    for name in results:
        parts.append(
            f"### {name}\n\n![Confusion matrix, {name} split]({name}_confusion_matrix.png)\n\n"
            f"All {num_labels} classes, in counts: [`{name}_confusion_matrix.csv`]({name}_confusion_matrix.csv)."
        )
    return "\n\n".join(parts)


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"
