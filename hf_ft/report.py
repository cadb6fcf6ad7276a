"""The evaluation report of a classification run: the first thing a person opens after training.

`write_report` writes into the run's output dir:

- `eval_results.json`: per split accuracy, macro F1, top-5 accuracy (more than 5 classes), the majority-class
  baseline and the number of samples (the same metric code as training-time evaluation: `hf_ft.metrics`);
- `<split>_per_class.csv`: precision, recall, F1 and support of every class;
- `<split>_confusion_matrix.csv`: the full confusion matrix, in counts;
- `<split>_confusion_matrix.png`: rows normalized by true class (with many classes, only the classes most involved
  in mistakes, so the picture stays readable);
- `training_curves.png`: losses and eval metrics against the step, from `trainer.state.log_history`;
- `report.md`: all of it in words, tables and pictures, side by side with earlier runs if asked.

Call it on the main process only (it writes files).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from matplotlib.figure import Figure

from hf_ft import markdown as md
from hf_ft.metrics import TOP_K, check_classification_inputs, classification_metrics, load
from hf_ft.errors import InputError
from hf_ft.runs import ARGS_FILE

EVAL_RESULTS_FILE = "eval_results.json"
REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
# How many classes the "hardest classes" section lists.
NUM_WORST_CLASSES = 5
# Above this many classes the confusion matrix cells are too small to carry a printed number.
MAX_ANNOTATED_CLASSES = 30
# Above this many classes a full confusion matrix is unreadable: the picture shows the classes most involved in
# mistakes instead (the CSV keeps the whole matrix).
MAX_PLOTTED_CLASSES = 50
# How many classes that picture shows: few enough to carry printed numbers.
NUM_CONFUSED_CLASSES = MAX_ANNOTATED_CLASSES
# Metrics plotted against the step when the evaluation logged them (Trainer prefixes them with "eval_").
_CURVE_METRICS = {
    "eval_accuracy": "accuracy",
    "eval_f1": "macro F1 (classes present)",
    f"eval_top{TOP_K}_accuracy": f"top-{TOP_K} accuracy",
}
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class _SplitResult:
    """Everything the report shows about one split."""

    metrics: dict[str, float]
    # Per class id: precision, recall, f1 (NaN where undefined: the class is absent and never predicted) and
    # support.
    per_class: dict[str, np.ndarray]
    # Counts: rows are true classes, columns predicted classes.
    confusion: np.ndarray


@dataclass
class _EarlierRun:
    """An earlier run named in `compare_with`."""

    path: Path
    model: str | None
    results: dict[str, dict[str, float]]


def write_report(
    output_dir: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    label_names: list[str],
    train_label_counts: list[int],
    log_history: list[dict],
    summary: dict,
    compare_with: Iterable[str | Path] = (),
) -> dict[str, dict[str, float]]:
    """Write the evaluation report of a single-label classification run into `output_dir`.

    All inputs are checked before anything is written, so a bad argument leaves `output_dir` untouched.

    Args:
        output_dir: Where the files go (created if missing).
        splits: Split name ("validation", "test") -> (logits of shape (N, C), label ids of shape (N,)).
            "test" (or else the last split) is the one the report dwells on.
        label_names: Class names, indexed by class id (C of them).
        train_label_counts: Samples per class id in the training split. The majority-class baseline always
            predicts the most frequent training class (the lowest id on a tie), as a model without inputs would.
        log_history: `trainer.state.log_history`, for the training curves (may be empty).
        summary: `{"run_name" (names the report; default: `output_dir`'s name), "model" (the base checkpoint),
            "dataset", "task", "config" (resolved arguments, plain values), "num_samples" ({"train", "validation",
            "test"}), "trainable_parameters", "total_parameters", "train_runtime_s", "adapter" ({"method",
            "size_bytes"}, PEFT runs only), "teacher" (distilled runs only)}`. Missing entries show as "—".
        compare_with: Output dirs of earlier runs; their `eval_results.json` (and the model name from their
            `args.yaml`) go side by side with this run.

    Returns:
        Per split metrics, as written to `eval_results.json`.

    Raises:
        ValueError: A split has a bad name, shapes that do not match, or label ids outside the classes;
            `train_label_counts` does not fit the classes; `summary["config"]` is not plain YAML data; a
            `compare_with` dir is missing or holds no readable results.
    """
    label_names = [str(name) for name in label_names]
    splits = _check_splits(splits, len(label_names))
    train_counts = _check_train_counts(train_label_counts, len(label_names))
    config_yaml = md.config_yaml(summary.get("config") or {})
    earlier_runs = [_read_earlier_run(Path(path)) for path in compare_with]

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    majority_class = int(np.argmax(train_counts))
    results = {
        name: _evaluate_split(logits, labels, len(label_names), majority_class)
        for name, (logits, labels) in splits.items()
    }
    for name, result in results.items():
        _write_per_class_csv(output_dir / f"{name}_per_class.csv", result, label_names)
        _write_confusion_csv(output_dir / f"{name}_confusion_matrix.csv", result, label_names)
        _plot_confusion_matrix(output_dir / f"{name}_confusion_matrix.png", result, label_names, name)
    has_curves = _plot_training_curves(output_dir / CURVES_FILE, log_history)
    metrics = {name: result.metrics for name, result in results.items()}
    with open(output_dir / EVAL_RESULTS_FILE, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    markdown = _render_markdown(
        results, label_names, train_counts, summary, config_yaml, earlier_runs, has_curves, output_dir
    )
    (output_dir / REPORT_FILE).write_text(markdown, encoding="utf-8")
    return metrics


# --- checking the inputs ---------------------------------------------------------------------------------------


def check_compare_with(paths: Iterable[str | Path]) -> None:
    """Fail before training, not after it, when a `compare_with` dir cannot be compared.

    Raises:
        InputError: a dir is missing or holds no readable results (`write_report` reads them again at the end).
    """
    for path in paths:
        try:
            _read_earlier_run(Path(path))
        except ValueError as err:
            raise InputError(str(err)) from None


def _check_splits(
    splits: dict[str, tuple[np.ndarray, np.ndarray]], num_labels: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the splits as checked numpy arrays (see `check_classification_inputs`)."""
    if not splits:
        raise ValueError("splits is empty: pass at least one split, e.g. {'validation': (logits, label_ids)}.")
    checked = {}
    for name, arrays in splits.items():
        # Split names become file names.
        if not _SPLIT_NAME.match(str(name)):
            raise ValueError(f"Split name {name!r} must be letters, digits, '_', '-' or '.' (it names files).")
        if not isinstance(arrays, (tuple, list)) or len(arrays) != 2:
            raise ValueError(f"splits[{name!r}] must be a (logits, label_ids) pair.")
        what = f"split {name!r} ({num_labels} label names)"
        checked[name] = check_classification_inputs(*arrays, num_labels, what=what)
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


def _read_earlier_run(path: Path) -> _EarlierRun:
    """Read an earlier run's results (and model name), or say clearly why that dir cannot be compared."""
    results_file = path / EVAL_RESULTS_FILE
    if not path.is_dir():
        raise ValueError(f"compare_with: {path} is not a directory. Pass the output_dir of an earlier hf_ft run.")
    if not results_file.is_file():
        raise ValueError(
            f"compare_with: {path} holds no {EVAL_RESULTS_FILE}. Pass the output_dir of an earlier hf_ft run "
            "that finished its evaluation."
        )
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"compare_with: cannot read {results_file}: {error}") from error
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise ValueError(f"compare_with: {results_file} is not a {{split: {{metric: value}}}} mapping.")
    model = None
    args_file = path / ARGS_FILE
    if args_file.is_file():
        try:
            args = yaml.safe_load(args_file.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ValueError(f"compare_with: cannot read {args_file}: {error}") from error
        model = args.get("model_name_or_path") if isinstance(args, dict) else None
    return _EarlierRun(path=path, model=model, results=results)


# --- computing -------------------------------------------------------------------------------------------------


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


# --- files -----------------------------------------------------------------------------------------------------


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


def _plot_training_curves(path: Path, log_history: list[dict]) -> bool:
    """Plot losses and eval metrics against the step; return False (no file) when nothing was logged."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [entry for entry in log_history if "step" in entry and any(k.startswith("eval_") for k in entry)]
    eval_loss = [(entry["step"], entry["eval_loss"]) for entry in evals if "eval_loss" in entry]
    metric_keys = [key for key in _CURVE_METRICS if any(key in entry for entry in evals)]
    if not train and not eval_loss and not metric_keys:
        return False

    has_loss = bool(train or eval_loss)
    num_panels = has_loss + bool(metric_keys)
    figure = Figure(figsize=(6.5 * num_panels, 4.5), layout="constrained")
    panels = figure.subplots(1, num_panels, squeeze=False)[0]
    if has_loss:
        _plot_series(panels[0], [("training loss", train), ("eval loss", eval_loss)], "loss", "Loss")
    if metric_keys:
        series = [(_CURVE_METRICS[key], [(e["step"], e[key]) for e in evals if key in e]) for key in metric_keys]
        _plot_series(panels[-1], series, "score", "Evaluation metrics")
    figure.savefig(path, dpi=100)
    return True


def _plot_series(axes: Any, series: list[tuple[str, list[tuple[float, float]]]], ylabel: str, title: str) -> None:
    for label, points in series:
        if points:
            steps, values = zip(*points)
            # Markers: with a handful of evaluations a bare line hides where the measurements are.
            axes.plot(steps, values, label=label, marker="o" if len(points) <= 30 else None, markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()


# --- report.md -------------------------------------------------------------------------------------------------


def _render_markdown(
    results: dict[str, _SplitResult],
    label_names: list[str],
    train_counts: np.ndarray,
    summary: dict,
    config_yaml: str,
    earlier_runs: list[_EarlierRun],
    has_curves: bool,
    output_dir: Path,
) -> str:
    focus = "test" if "test" in results else list(results)[-1]
    run_name = summary.get("run_name") or output_dir.absolute().name  # absolute: "." has no name
    sections = [
        _title_section(results[focus], focus, run_name),
        _summary_section(summary, len(label_names)),
        _metrics_section(results, label_names, train_counts),
        _worst_classes_section(results[focus], focus, label_names),
        _figures_section(results, len(label_names), has_curves),
    ]
    if earlier_runs:
        sections.append(_comparison_section(results, earlier_runs, summary, run_name))
    sections.append(md.config_section(config_yaml))
    return "\n\n".join(sections) + "\n"


def _title_section(result: _SplitResult, split: str, run_name: str) -> str:
    metrics = result.metrics
    headline = (
        f"**{split.capitalize()} accuracy {md.pct(metrics['accuracy'])}**, macro F1 {metrics['f1']:.4f} (over the "
        f"classes present in the split), on {metrics['num_samples']:,} samples. Always predicting the most frequent "
        f"training class would score {md.pct(metrics['majority_baseline_accuracy'])}."
    )
    return f"# Evaluation report: {md.cell(run_name)}\n\n{headline}"


def _summary_section(summary: dict, num_labels: int) -> str:
    sizes = summary.get("num_samples") or {}
    samples = " · ".join(f"{name} {count:,}" for name, count in sizes.items() if count is not None)
    rows = [
        ("Base model", md.code(summary.get("model"))),
        ("Dataset", md.code(summary.get("dataset"))),
        ("Task", md.cell(summary.get("task", "—"))),
        ("Classes", str(num_labels)),
        ("Samples", samples or "—"),
        ("Trainable parameters", _parameters(summary.get("trainable_parameters"), summary.get("total_parameters"))),
        ("Training time", _duration(summary.get("train_runtime_s"))),
    ]
    if summary.get("adapter"):
        adapter = summary["adapter"]
        rows.insert(6, ("Adapter", f"{md.cell(adapter['method'])}, {adapter['size_bytes'] / 1e6:.2f} MB on disk"))
    if summary.get("teacher"):
        rows.insert(1, ("Distilled from", md.code(summary["teacher"])))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"## Summary\n\n| | |\n|---|---|\n{table}"


def _metrics_section(results: dict[str, _SplitResult], label_names: list[str], train_counts: np.ndarray) -> str:
    # classification_metrics reports top-k accuracy only above TOP_K classes (below, it is always 1).
    top_k = f"top{TOP_K}_accuracy"
    with_top_k = len(label_names) > TOP_K
    header = f"| Split | Samples | Accuracy | Majority-class baseline | {md.metric_name('f1')} |"
    align = "|---|---:|---:|---:|---:|"
    if with_top_k:
        header += f" {md.metric_name(top_k)} |"
        align += "---:|"
    rows = []
    for name, result in results.items():
        m = result.metrics
        cells = [f"{m['num_samples']:,}", md.pct(m["accuracy"]), md.pct(m["majority_baseline_accuracy"]), f"{m['f1']:.4f}"]
        if with_top_k:
            cells.append(md.pct(m[top_k]))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    majority = int(np.argmax(train_counts))
    notes = (
        f"The majority-class baseline always predicts {md.cell(label_names[majority])}, the most frequent class of the "
        f"training split ({int(train_counts[majority]):,} of {int(train_counts.sum()):,} samples): a model that "
        "does not clearly beat it has learned little. Macro F1 is the unweighted mean of the per-class F1 over "
        "the classes present in the split (not over all classes), so rare classes count as much as common ones, "
        "a class absent from the split is left out rather than counted as 0, and 1.0 means no mistakes. Compare it "
        "across runs on the same split only."
    )
    return "## Metrics\n\n" + "\n".join([header, align, *rows]) + "\n\n" + notes


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


def _figures_section(results: dict[str, _SplitResult], num_labels: int, has_curves: bool) -> str:
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
    parts.append("## Training curves")
    if has_curves:
        parts.append(f"![Training loss, eval loss and eval metrics against the step]({CURVES_FILE})")
    else:
        parts.append("_No losses or evaluation metrics were logged during training._")
    return "\n\n".join(parts)


def _comparison_section(
    results: dict[str, _SplitResult], earlier_runs: list[_EarlierRun], summary: dict, run_name: str
) -> str:
    splits = list(results)
    header = "| Run | Model | " + " | ".join(f"{s} accuracy | {s} macro F1" for s in splits) + " |"
    align = "|---|---|" + "---:|---:|" * len(splits)
    this_run = {name: result.metrics for name, result in results.items()}
    rows = [_comparison_row(f"**this run** ({md.code(run_name)})", summary.get("model"), this_run, splits)]
    rows += [_comparison_row(md.code(str(run.path)), run.model, run.results, splits) for run in earlier_runs]
    return (
        "## Compared with earlier runs\n\n"
        "The same splits side by side; \"—\" where a run has no such result. Macro F1 is over the classes present "
        "in each split.\n\n" + "\n".join([header, align, *rows])
    )


def _comparison_row(label: str, model: str | None, results: dict[str, dict], splits: list[str]) -> str:
    cells = []
    for split in splits:
        metrics = results.get(split, {})
        accuracy, f1 = metrics.get("accuracy"), metrics.get("f1")
        cells += [md.pct(accuracy) if md.is_number(accuracy) else "—", f"{f1:.4f}" if md.is_number(f1) else "—"]
    return f"| {label} | {md.code(model)} | " + " | ".join(cells) + " |"


# --- formatting ------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def _parameters(trainable: int | None, total: int | None) -> str:
    if trainable is None:
        return "—"
    if not total:
        return f"{trainable:,}"
    return f"{trainable:,} of {total:,} ({100 * trainable / total:.3g}%)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"
