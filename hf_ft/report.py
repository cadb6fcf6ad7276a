"""The evaluation report of a run: the first thing a person opens after training.

The task scores its splits and writes its own files (`hf_ft.classification.evaluate` for the classification
tasks), and hands back a `TaskReport`; `write_report` lays it out the same way for every task and writes into the
run's output dir:

- `eval_results.json`: the task's metrics per split;
- `training_curves.png`: losses and eval metrics against the step, from `trainer.state.log_history`;
- `<split>_predictions.jsonl`: one record per example (what it is, its reference, the prediction), when the task
  gives them: what later runs pair with (`compare_with`);
- `confidence_intervals.json`: the bootstrap interval of each headline metric (`hf_ft.bootstrap`);
- `report.md`: the title (the run's name), the task's headline, a summary of the run, the metrics of every split
  with their intervals, the task's sections, the curves, a comparison with earlier runs if asked (paired
  differences on the same test set, and the examples whose prediction changed), and the resolved configuration.

Call it on the main process only (it writes files).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from matplotlib.figure import Figure

from hf_ft import bootstrap
from hf_ft import markdown as md
from hf_ft.args import ARGS_FILE
from hf_ft.bootstrap import BootstrapSettings, Record, Scorer
from hf_ft.errors import InputError

logger = logging.getLogger("hf_ft")

EVAL_RESULTS_FILE = "eval_results.json"
REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
PREDICTIONS_FILE = "{split}_predictions.jsonl"
INTERVALS_FILE = "confidence_intervals.json"
# How many changed examples report.md lists per earlier run (the CSV has them all).
NUM_CHANGED_SHOWN = 10
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class About:
    """What the report says about a run that its Trainer does not know."""

    dataset: str | None  # as the user named it: Hub id or local path
    num_samples: dict[str, int]  # split -> samples
    parameters: tuple[int, int]  # (trainable, total), counted when the model was built
    teacher: str | None = None  # the teacher checkpoint, when distilled


@dataclass
class TaskReport:
    """What a task found on its splits, for `write_report` (and the model card) to lay out."""

    # Split -> metric -> value: eval_results.json and the card's results. "num_samples" is the split's size.
    metrics: dict[str, dict[str, float]]
    # One Markdown paragraph under the title: the result that matters and what it compares with.
    headline: str
    # Metric key -> column title of the metrics table, in order (the card names the metrics the same way).
    columns: dict[str, str]
    # Markdown under the metrics table: how to read them (baselines, averaging).
    notes: str = ""
    # Extra rows of the summary table, e.g. {"Classes": "10"}.
    facts: dict[str, str] = field(default_factory=dict)
    # Markdown sections (each starting with "## ") after the metrics: per-class tables, mistakes, pictures.
    sections: list[str] = field(default_factory=list)
    # Metric key -> short name, for the metrics side by side with earlier runs (`compare_with`).
    compared: dict[str, str] = field(default_factory=dict)
    # Metric key -> curve label, for the metrics the Trainer logged as "eval_<key>" during training.
    curves: dict[str, str] = field(default_factory=dict)
    # Metric key -> (model-index `type`, `args`) for the card; a metric not listed keeps its key as its type.
    card_metric_types: dict[str, tuple[str, dict | None]] = field(default_factory=dict)
    # Appended under the card's results table.
    card_note: str = ""
    # Split -> one record per example (`hf_ft.bootstrap`), and the scorer that recomputes the `compared` metrics on
    # a resample of them: the intervals, and the paired differences with earlier runs.
    examples: dict[str, list[Record]] = field(default_factory=dict)
    scorer: Scorer | None = None
    # The references are classes: a comparison shows each class's recall in both runs.
    per_class_recall: bool = False


def write_report(
    output_dir: str | Path,
    task_report: TaskReport,
    summary: dict,
    log_history: list[dict],
    compare_with: Iterable[str | Path] = (),
    bootstrap_settings: BootstrapSettings | None = BootstrapSettings(),
) -> dict[str, dict[str, float]]:
    """Write `eval_results.json`, `training_curves.png`, the per-example predictions, the confidence intervals and
    `report.md` of a run into `output_dir`.

    Args:
        output_dir: Where the files go (created if missing).
        task_report: The task's results and sections.
        summary: `{"run_name" (names the report; default: `output_dir`'s name), "model" (the base checkpoint),
            "dataset", "task", "config" (resolved arguments, plain values), "num_samples" ({"train", "validation",
            "test"}), "trainable_parameters", "total_parameters", "train_runtime_s", "adapter" ({"method",
            "size_bytes"}, PEFT runs only), "teacher" (distilled runs only)}`. Missing entries show as "—".
        log_history: `trainer.state.log_history`, for the training curves (may be empty).
        compare_with: Output dirs of earlier runs; their `eval_results.json` (and the model name from their
            `args.yaml`) go side by side with this run, and where both runs hold per-example predictions of the
            same examples, the paired differences and the examples whose prediction changed.
        bootstrap_settings: How the intervals are computed; None computes none.

    Returns:
        `task_report.metrics`, as written to `eval_results.json`.

    Raises:
        ValueError: `summary["config"]` is not plain YAML data; a `compare_with` dir is missing or holds no
            readable results. Nothing is written then.
    """
    if not task_report.metrics:
        raise ValueError("task_report.metrics is empty: a report needs at least one evaluated split.")
    config_yaml = md.config_yaml(summary.get("config") or {})
    earlier_runs = [_read_earlier_run(Path(path)) for path in compare_with]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    has_curves = _plot_training_curves(output_dir / CURVES_FILE, log_history, task_report.curves)
    with open(output_dir / EVAL_RESULTS_FILE, "w", encoding="utf-8") as f:
        json.dump(task_report.metrics, f, indent=2)
    for split, records in task_report.examples.items():
        _write_records(output_dir / PREDICTIONS_FILE.format(split=split), records)
    intervals = _intervals(task_report, bootstrap_settings)
    if intervals:
        payload = {"method": bootstrap_settings.describe(), "intervals": intervals}
        (output_dir / INTERVALS_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    run_name = summary.get("run_name") or output_dir.absolute().name  # absolute: "." has no name
    sections = [
        f"# Evaluation report: {md.cell(run_name)}\n\n{task_report.headline}",
        _summary_section(summary, task_report.facts),
        _metrics_section(task_report),
        *([_intervals_section(task_report, intervals, bootstrap_settings)] if intervals else []),
        *task_report.sections,
        _curves_section(has_curves),
    ]
    if earlier_runs:
        sections.append(_comparison_section(task_report, earlier_runs, summary, run_name))
        sections += [
            _paired_section(output_dir, task_report, earlier, index, bootstrap_settings)
            for index, earlier in enumerate(earlier_runs)
        ]
    sections.append(md.config_section(config_yaml))
    (output_dir / REPORT_FILE).write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return task_report.metrics


def forgetting_section(
    forgetting: TaskReport, earlier_dir: Path, subdir: str, settings: BootstrapSettings | None
) -> str:
    """"## Forgetting": a continued run's model on the test split of the run it continues (`forgetting`, its report
    in `subdir`), against that run's own scores on the same examples, with the paired interval of each change."""
    earlier = _read_earlier_run(Path(earlier_dir))
    records = forgetting.examples.get("test")
    recall = "each class's recall in both runs " if forgetting.per_class_recall else ""
    intro = (
        f"This run continues {md.code(str(earlier_dir))}. Its model is scored on that run's test split "
        f"({forgetting.metrics['test'].get('num_samples', len(records or ())):,} examples, loaded as that run's "
        f"args.yaml says) and paired with that run's own predictions: what the continued training kept and lost. "
        f"`{subdir}/report.md` has that split's full report, {recall}and the examples whose prediction changed."
    )
    table = _paired_table(
        forgetting, earlier.results.get("test", {}), earlier.records.get("test"), "test", settings,
        ["Before (that run)", "After (this model)", "Change"],
    )
    return f"## Forgetting: the earlier run's test set\n\n{intro}\n\n{table}"


def linear_probe_section(
    task_report: TaskReport, probe: TaskReport, subdir: str, settings: BootstrapSettings | None, fitted: str
) -> str:
    """"## What fine-tuning added": this run against the frozen-backbone linear probe (`hf_ft.probe`, its report
    in `subdir`) on the same examples, with the paired interval of each difference."""
    split = "test" if "test" in probe.metrics else next(iter(probe.metrics))
    intro = (
        "The baseline: a logistic regression (scikit-learn, L2, on standardised features; "
        f"{fitted}) fitted before training on the pretrained model's own features, the input of its head, "
        "computed with the backbone frozen. What fine-tuning added beyond them is the difference, paired on the "
        f"same {split} examples. `{subdir}/report.md` has the probe's full report."
    )
    table = _paired_table(
        task_report, probe.metrics[split], probe.examples.get(split), split, settings,
        ["Linear probe", "Fine-tuned", "Difference"],
    )
    return f"## What fine-tuning added: a linear probe baseline\n\n{intro}\n\n{table}"


def _paired_table(
    scored: TaskReport, other: dict[str, float], other_records: list[Record] | None, split: str,
    settings: BootstrapSettings | None, headers: list[str],
) -> str:
    """`scored`'s `split` minus another scoring of the same examples (`other`'s metrics and records): a table of
    the other's value, this one's, the paired difference and its interval; or why there is none."""
    records = scored.examples.get(split)
    reason = (bootstrap.same_examples(records, other_records) if records and other_records
              else "no per-example predictions")
    if reason or scored.scorer is None:
        return f"**Not the same examples:** {reason}; no difference is computed."
    mine = scored.metrics[split]
    keys = [key for key in scored.compared if key in other and key in mine]
    found = bootstrap.paired_difference(records, other_records, scored.scorer, keys, settings)
    names = {**scored.compared, **scored.columns}
    rows = [
        [md.cell(names.get(key, key)), md.metric_value(key, other[key]), md.metric_value(key, mine[key]),
         md.difference(key, change), _difference_interval(key, low, high)]
        for key, (change, low, high) in found.differences.items()
    ]
    how = settings.describe() if _resamples(settings) else "no intervals"
    table = md.table(["Metric", *headers, "Interval"], rows)
    return f"{table}\n\nThe intervals: {how}, the same resamples for both."


def check_split_name(name: str) -> None:
    """Split names become file names: letters, digits, '_', '-' or '.' only."""
    if not _SPLIT_NAME.match(str(name)):
        raise ValueError(f"Split name {name!r} must be letters, digits, '_', '-' or '.' (it names files).")


@dataclass
class _EarlierRun:
    """An earlier run named in `compare_with`."""

    path: Path
    model: str | None
    results: dict[str, dict[str, float]]
    records: dict[str, list[Record]]  # split -> per-example predictions, where the run wrote them


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
    records = {}
    for split in results:
        file = path / PREDICTIONS_FILE.format(split=split)
        if file.is_file():
            try:
                records[split] = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"compare_with: cannot read {file}: {error}") from error
    return _EarlierRun(path=path, model=model, results=results, records=records)


# --- per-example predictions and intervals ------------------------------------------------------------------


def _write_records(path: Path, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _difference_interval(key: str, low: float | None, high: float | None) -> str:
    """A paired difference's interval as a table cell ("—" without resamples)."""
    return "—" if low is None else f"{md.difference(key, low)} – {md.difference(key, high)}"


def _scored_keys(task_report: TaskReport, scores: dict[str, float]) -> list[str]:
    """The headline metrics (`compared`, else the table's) that the task's scorer recomputes."""
    return [key for key in (task_report.compared or task_report.columns) if key in scores]


def _resamples(settings: BootstrapSettings | None) -> bool:
    return settings is not None and settings.num_resamples > 0


def _intervals(task_report: TaskReport, settings: BootstrapSettings | None) -> dict[str, dict[str, list[float]]]:
    """Split -> metric -> [low, high], for the `compared` metrics the task's scorer recomputes."""
    if not _resamples(settings) or task_report.scorer is None:
        return {}
    intervals = {}
    for split, records in task_report.examples.items():
        if len(records) < 2:
            continue
        whole = task_report.scorer(records)(np.arange(len(records)))
        keys = _scored_keys(task_report, whole)
        reported = task_report.metrics.get(split, {})
        for key in keys:  # the resampled statistic must be the reported one, or its interval means nothing
            if md.is_number(reported.get(key)) and not math.isclose(whole[key], reported[key], rel_tol=1e-6, abs_tol=1e-9):
                logger.warning("%s %s: rescored %.6g from the records, reported %.6g", split, key, whole[key], reported[key])
        found = bootstrap.intervals(records, task_report.scorer, keys, settings)
        intervals[split] = {key: [low, high] for key, (low, high) in found.items()}
    return intervals


def _intervals_section(
    task_report: TaskReport, intervals: dict[str, dict[str, list[float]]], settings: BootstrapSettings
) -> str:
    names = {**task_report.compared, **task_report.columns}
    rows = [
        f"| {split} | {md.cell(names.get(key, key))} | {md.metric_value(key, task_report.metrics[split].get(key))} | "
        f"{md.metric_value(key, low)} – {md.metric_value(key, high)} |"
        for split, found in intervals.items()
        for key, (low, high) in found.items()
    ]
    return (
        f"## How sure these numbers are\n\n{settings.describe().capitalize()}: the range the score would likely take "
        "on another test set drawn like this one. Two runs whose intervals overlap may still differ: "
        "`compare_with` gives the paired difference, which is much tighter. Also in "
        f"[`{INTERVALS_FILE}`]({INTERVALS_FILE}).\n\n"
        "| Split | Metric | Value | Interval |\n|---|---|---:|---:|\n" + "\n".join(rows)
    )


# --- curves ----------------------------------------------------------------------------------------------------


def _plot_training_curves(path: Path, log_history: list[dict], curves: dict[str, str]) -> bool:
    """Plot losses and eval metrics against the step; return False (no file) when nothing was logged."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [entry for entry in log_history if "step" in entry and any(k.startswith("eval_") for k in entry)]
    eval_loss = [(entry["step"], entry["eval_loss"]) for entry in evals if "eval_loss" in entry]
    labels = {f"eval_{key}": label for key, label in curves.items()}
    metric_keys = [key for key in labels if any(key in entry for entry in evals)]
    if not train and not eval_loss and not metric_keys:
        return False

    has_loss = bool(train or eval_loss)
    num_panels = has_loss + bool(metric_keys)
    figure = Figure(figsize=(6.5 * num_panels, 4.5), layout="constrained")
    panels = figure.subplots(1, num_panels, squeeze=False)[0]
    if has_loss:
        _plot_series(panels[0], [("training loss", train), ("eval loss", eval_loss)], "loss", "Loss")
    if metric_keys:
        series = [(labels[key], [(e["step"], e[key]) for e in evals if key in e]) for key in metric_keys]
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


def _summary_section(summary: dict, facts: dict[str, str]) -> str:
    sizes = summary.get("num_samples") or {}
    samples = " · ".join(f"{name} {count:,}" for name, count in sizes.items() if count is not None)
    rows = [
        ("Base model", md.code(summary.get("model"))),
        ("Dataset", md.code(summary.get("dataset"))),
        ("Task", md.cell(summary.get("task", "—"))),
        *((name, md.cell(value)) for name, value in facts.items()),
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


def _metrics_section(task_report: TaskReport) -> str:
    columns = task_report.columns
    header = "| Split | Samples | " + " | ".join(columns.values()) + " |"
    align = "|---|---:|" + "---:|" * len(columns)
    rows = []
    for name, metrics in task_report.metrics.items():
        samples = metrics.get("num_samples")
        cells = [f"{int(samples):,}" if md.is_number(samples) else "—"]
        cells += [md.metric_value(key, metrics.get(key)) for key in columns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join([header, align, *rows])
    return "## Metrics\n\n" + table + (f"\n\n{task_report.notes}" if task_report.notes else "")


def _curves_section(has_curves: bool) -> str:
    if has_curves:
        return f"## Training curves\n\n![Training loss, eval loss and eval metrics against the step]({CURVES_FILE})"
    return "## Training curves\n\n_No losses or evaluation metrics were logged during training._"


def _comparison_section(
    task_report: TaskReport, earlier_runs: list[_EarlierRun], summary: dict, run_name: str
) -> str:
    splits = list(task_report.metrics)
    compared = task_report.compared or task_report.columns
    keys = tuple(compared)
    header = "| Run | Model | " + " | ".join(f"{split} {compared[key]}" for split in splits for key in keys) + " |"
    align = "|---|---|" + "---:|" * (len(splits) * len(keys))
    rows = [_comparison_row(f"**this run** ({md.code(run_name)})", summary.get("model"), task_report.metrics, splits, keys)]
    rows += [_comparison_row(md.code(str(run.path)), run.model, run.results, splits, keys) for run in earlier_runs]
    return (
        "## Compared with earlier runs\n\n"
        "The same splits side by side; \"—\" where a run has no such result.\n\n" + "\n".join([header, align, *rows])
    )


def _comparison_row(label: str, model: str | None, results: dict[str, dict], splits: list[str], keys: tuple[str, ...]) -> str:
    cells = [md.metric_value(key, results.get(split, {}).get(key)) for split in splits for key in keys]
    return f"| {label} | {md.code(model)} | " + " | ".join(cells) + " |"


def _paired_section(
    output_dir: Path, task_report: TaskReport, earlier: _EarlierRun, index: int, settings: BootstrapSettings | None
) -> str:
    """This run against one earlier run on each split both scored: the paired differences with their intervals, or
    why there are none; the examples whose prediction changed (focus split), and per-class recall for classes."""
    title = f"## Paired with {md.code(str(earlier.path))}"
    if task_report.scorer is None:
        return f"{title}\n\n_This task keeps no per-example predictions: no paired difference._"
    names = {**task_report.compared, **task_report.columns}
    paragraphs, rows, focus_changed, recall_rows = [], [], None, []
    shared = [split for split in task_report.examples if split in earlier.results]
    focus = "test" if "test" in shared else (shared[-1] if shared else None)
    for split in shared:
        records, theirs = task_report.examples[split], earlier.records.get(split)
        if theirs is None:
            paragraphs.append(
                f"The {split} split: that run holds no `{PREDICTIONS_FILE.format(split=split)}` (written by hf_ft "
                "runs since per-example predictions were added), so no paired difference."
            )
            continue
        reason = bootstrap.same_examples(records, theirs)
        if reason:
            paragraphs.append(
                f"**Not the same {split} set:** {reason}. Their scores are not comparable, and no paired difference "
                "is computed."
            )
            continue
        keys = _scored_keys(task_report, task_report.scorer(records)(np.arange(len(records))))
        found = bootstrap.paired_difference(records, theirs, task_report.scorer, keys, settings)
        for key, (difference, low, high) in found.differences.items():
            interval = _difference_interval(key, low, high)
            clear = "—" if low is None else "yes" if low > 0 or high < 0 else "no"
            rows.append(
                f"| {split} | {md.cell(names.get(key, key))} | {md.difference(key, difference)} | {interval} | {clear} |"
            )
        if split == focus:
            focus_changed = found.changed
            if task_report.per_class_recall:
                recall_rows = _recall_rows(records, theirs)
    parts = [title]
    if rows:
        how = f"{settings.describe()}, the same resamples for both runs" if _resamples(settings) else "no intervals"
        parts.append(
            f"This run minus that one, on the same examples ({how}). "
            "\"Clear\": the interval excludes 0.\n\n| Split | Metric | Difference | Interval | Clear |\n"
            "|---|---|---:|---:|---|\n" + "\n".join(rows)
        )
    parts += paragraphs
    if recall_rows:
        parts.append(
            f"Recall of each class on the {focus} split (the fraction of its examples predicted as it):\n\n"
            "| Class | Support | That run | This run | Difference |\n|---|---:|---:|---:|---:|\n" + "\n".join(recall_rows)
        )
    if focus_changed is not None:
        parts.append(_changed_section(output_dir, focus_changed, index, focus))
    return "\n\n".join(parts)


def _recall_rows(records: list[Record], earlier: list[Record]) -> list[str]:
    theirs = {record["id"]: record["correct"] for record in earlier}
    by_class: dict[str, list[tuple[bool, bool]]] = {}
    for record in records:
        by_class.setdefault(str(record["reference"]), []).append((bool(theirs[record["id"]]), bool(record["correct"])))
    rows = []
    for name in sorted(by_class):
        pairs = np.asarray(by_class[name], dtype=float)
        that, this = pairs.mean(axis=0)
        rows.append(
            f"| {md.cell(name)} | {len(pairs):,} | {md.pct(that)} | {md.pct(this)} | {md.difference('accuracy', this - that)} |"
        )
    return rows


def _changed_section(output_dir: Path, changed: list[dict[str, Any]], index: int, split: str) -> str:
    file = f"compared_{index}_{split}_changed.csv"
    with open(output_dir / file, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["kind", "id", "input", "reference", "earlier", "this_run"])
        writer.writeheader()
        writer.writerows(changed)
    counts = {kind: sum(row["kind"] == kind for row in changed) for kind in ("regression", "fixed", "changed")}
    if not changed:
        return f"No {split} example is predicted differently."
    rows = [
        f"| {row['kind']} | {md.cell(md.shorten(str(row['input']) or row['id']))} | {md.cell(md.shorten(str(row['reference'])))} | "
        f"{md.cell(md.shorten(str(row['earlier'])))} | {md.cell(md.shorten(str(row['this_run'])))} |"
        for row in changed[:NUM_CHANGED_SHOWN]
    ]
    return (
        f"{len(changed):,} {split} examples are predicted differently: {counts['regression']:,} regressions (right "
        f"there, wrong here), {counts['fixed']:,} fixed, {counts['changed']:,} otherwise changed. The first "
        f"{len(rows)}, regressions first (all in [`{file}`]({file})):\n\n"
        "| Kind | Example | Reference | That run | This run |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )


# --- formatting ------------------------------------------------------------------------------------------------


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
