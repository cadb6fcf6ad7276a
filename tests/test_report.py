"""hf_ft.report with hf_ft.classification (the report of the classification tasks): the files hold the right numbers,
the pictures are real images, bad inputs fail before writing."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn import metrics as skm

from hf_ft import classification
from hf_ft import report as report_module

NAMES = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape"]
# Training split counts per class: "cherry" (id 2) is the majority class.
TRAIN_COUNTS = [50, 40, 90, 30, 45, 35, 20]
CONFIG = {"model_name_or_path": "tiny-vit", "learning_rate": 0.001, "num_train_epochs": 3, "seed": 42}
LOG_HISTORY = [
    {"loss": 1.9, "learning_rate": 0.001, "epoch": 0.5, "step": 5},
    {"loss": 1.4, "learning_rate": 0.0008, "epoch": 1.0, "step": 10},
    {"eval_loss": 1.2, "eval_accuracy": 0.55, "eval_f1": 0.5, "eval_top5_accuracy": 0.9, "epoch": 1.0, "step": 10},
    {"loss": 0.9, "learning_rate": 0.0005, "epoch": 1.5, "step": 15},
    {"eval_loss": 0.8, "eval_accuracy": 0.75, "eval_f1": 0.7, "eval_top5_accuracy": 0.95, "epoch": 2.0, "step": 20},
    {"train_runtime": 12.5, "train_loss": 1.3, "epoch": 2.0, "step": 20},
]


def write_report(output_dir, splits, names, train_counts, log_history, summary, compare_with=()):
    """The report as `runs.finish` writes it for a classification task (the recipes check compare_with first)."""
    report_module.check_compare_with(compare_with)
    task_report = classification.evaluate(output_dir, splits, names, train_counts)
    return report_module.write_report(output_dir, task_report, summary, log_history, compare_with)


def _split(rng: np.random.Generator, per_class: int, worst_misses: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose argmax is right except: one miss per class, and `worst_misses` of "elderberry" as "fig".

    "date" (id 3) is left out of the split entirely, to exercise an absent class; "apple" has 5 extra samples,
    so the split's own majority class is not the training split's ("cherry").
    """
    labels, predictions = [], []
    for class_id in (0, 1, 2, 4, 5, 6):
        truth = [class_id] * (per_class + 5 * (class_id == 0))
        guess = list(truth)
        guess[0] = (class_id + 1) % len(NAMES)
        if class_id == 4:
            guess[:worst_misses] = [5] * worst_misses
        labels += truth
        predictions += guess
    logits = rng.normal(scale=0.1, size=(len(labels), len(NAMES)))
    logits[np.arange(len(labels)), predictions] += 5
    return logits.astype(np.float32), np.array(labels)


def _summary(model: str = "tiny-vit") -> dict:
    return {
        "model": model,
        "dataset": "fruits",
        "task": "image-classification",
        "config": {**CONFIG, "model_name_or_path": model},
        "num_samples": {"train": sum(TRAIN_COUNTS), "validation": 65, "test": 65},
        "trainable_parameters": 1234,
        "total_parameters": 567890,
        "train_runtime_s": 12.5,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One report written for a validation and a test split; returns (output_dir, splits, returned metrics)."""
    rng = np.random.default_rng(0)
    splits = {"validation": _split(rng, 10, worst_misses=3), "test": _split(rng, 10, worst_misses=8)}
    output_dir = tmp_path_factory.mktemp("run") / "out"
    returned = write_report(output_dir, splits, NAMES, TRAIN_COUNTS, LOG_HISTORY, _summary())
    return output_dir, splits, returned


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_eval_results_hold_the_metrics_and_the_train_majority_baseline(run):
    output_dir, splits, returned = run
    results = json.loads((output_dir / "eval_results.json").read_text())

    assert results == returned
    assert list(results) == ["validation", "test"]
    logits, labels = splits["test"]
    test = results["test"]
    assert set(test) == {"accuracy", "f1", "top5_accuracy", "majority_baseline_accuracy", "num_samples"}
    # 6 classes x 10 samples + 5 apples; 1 miss per class, "elderberry" misses 8 (its first miss included).
    assert test["num_samples"] == 65
    assert test["accuracy"] == pytest.approx((65 - 5 - 8) / 65)
    # Macro F1 over the 6 classes in the split; "date" is predicted once but absent, so it is not averaged in.
    present = np.unique(labels)
    assert test["f1"] == pytest.approx(skm.f1_score(labels, logits.argmax(-1), labels=present, average="macro"))
    # Always "cherry", the train majority (10 of 65 here), not this split's majority "apple" (15 of 65).
    assert test["majority_baseline_accuracy"] == pytest.approx(np.mean(labels == 2)) == pytest.approx(10 / 65)
    assert results["validation"]["accuracy"] == pytest.approx((65 - 5 - 3) / 65)


def test_per_class_csv_matches_sklearn(run):
    output_dir, splits, _ = run
    logits, labels = splits["test"]
    predictions = logits.argmax(-1)
    rows = _read_csv(output_dir / "test_per_class.csv")

    assert [row["class_name"] for row in rows] == NAMES
    assert [int(row["class_id"]) for row in rows] == list(range(len(NAMES)))
    for name, sklearn_fn in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)]:
        expected = sklearn_fn(labels, predictions, labels=range(len(NAMES)), average=None, zero_division=0)
        present = [row for row in rows if int(row["support"]) > 0]
        assert [float(row[name]) for row in present] == pytest.approx(expected[[int(r["class_id"]) for r in present]])
    assert [int(row["support"]) for row in rows] == [15, 10, 10, 0, 10, 10, 10]
    # "date" never occurs: its recall is undefined (empty), not a misleading 0. It is predicted once ("cherry"'s
    # miss), so its precision is a real 0.
    date = rows[3]
    assert date["recall"] == "" and float(date["precision"]) == 0.0


def _check_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_pictures_are_real_images_of_sensible_size(run):
    output_dir, _, _ = run
    for split in ("validation", "test"):
        width, height = _check_png(output_dir / f"{split}_confusion_matrix.png")
        assert 400 <= width <= 4000 and 400 <= height <= 4000
    width, height = _check_png(output_dir / "training_curves.png")
    assert width > height >= 300  # two panels side by side


def test_report_md_reads_right(run):
    output_dir, _, returned = run
    report = (output_dir / "report.md").read_text()

    # Named after the run (output_dir's name, as no run_name is given); the base model is in the summary.
    assert report.startswith("# Evaluation report: out\n")
    assert "| Base model | `tiny-vit` |" in report
    test = returned["test"]
    assert f"**Test accuracy {100 * test['accuracy']:.2f}%**" in report
    test_row = next(line for line in report.splitlines() if line.startswith("| test |"))
    assert f"{100 * test['majority_baseline_accuracy']:.2f}%" in test_row
    assert f"{test['f1']:.4f}" in test_row
    # Macro F1 averages the classes present in the split only (hf_ft.metrics), and the report says so.
    assert "| Macro F1 (classes present in the split) |" in report
    assert f"macro F1 {test['f1']:.4f} (over the classes present in the split)" in report
    assert "always predicts cherry" in report
    assert "| Trainable parameters | 1,234 of 567,890" in report
    # Every linked file exists, and the links are relative.
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert {"test_confusion_matrix.png", "test_confusion_matrix.csv", "training_curves.png"} <= set(links)
    assert all((output_dir / link).is_file() for link in links)
    # The resolved config, as YAML, folded away.
    details = report[report.index("<details>") : report.index("</details>")]
    assert yaml.safe_load(details.split("```yaml")[1].split("```")[0]) == CONFIG


def test_worst_classes_name_the_truly_worst_class_and_its_confusion(run):
    output_dir, _, _ = run
    report = (output_dir / "report.md").read_text()
    section = report[report.index("## Hardest classes (test)") :].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Class")]

    assert len(rows) == 5
    assert rows[0].startswith("| elderberry |")
    assert rows[0].endswith("| fig (8 of 10) |")
    for row in rows[1:]:  # every other class has one miss, predicted as the next class id
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        name, often = cells[0], cells[-1]
        assert often == f"{NAMES[(NAMES.index(name) + 1) % len(NAMES)]} (1 of {15 if name == 'apple' else 10})"
    assert "| date |" not in section  # absent from the split: not a "hard" class


def test_curves_are_skipped_without_logs_and_drawn_from_training_loss_alone(tmp_path):
    rng = np.random.default_rng(1)
    splits = {"test": _split(rng, 4, worst_misses=2)}

    write_report(tmp_path / "none", splits, NAMES, TRAIN_COUNTS, [], _summary())
    assert not (tmp_path / "none" / "training_curves.png").exists()
    assert "No losses or evaluation metrics were logged" in (tmp_path / "none" / "report.md").read_text()

    train_only = [entry for entry in LOG_HISTORY if "loss" in entry]
    write_report(tmp_path / "train", splits, NAMES, TRAIN_COUNTS, train_only, _summary())
    width, height = _check_png(tmp_path / "train" / "training_curves.png")
    assert width < 2 * height  # a single panel


def test_compare_with_puts_earlier_runs_side_by_side(run, tmp_path):
    earlier_dir, _, earlier = run
    # The earlier run's model name comes from its args.yaml, as hf_ft.runs writes it.
    (earlier_dir / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": "tiny-vit"}))
    rng = np.random.default_rng(2)
    splits = {"validation": _split(rng, 10, worst_misses=1), "test": _split(rng, 10, worst_misses=1)}

    current = write_report(
        tmp_path / "new", splits, NAMES, TRAIN_COUNTS, LOG_HISTORY, _summary("tiny-resnet"), compare_with=[earlier_dir]
    )

    report = (tmp_path / "new" / "report.md").read_text()
    table = report[report.index("## Compared with earlier runs") :].split("\n## ")[0]
    assert "| Run | Model | validation accuracy | validation macro F1 | test accuracy | test macro F1 |" in table
    this_row = next(line for line in table.splitlines() if "this run" in line)
    earlier_row = next(line for line in table.splitlines() if str(earlier_dir) in line)
    assert "`tiny-resnet`" in this_row and f"{100 * current['test']['accuracy']:.2f}%" in this_row
    assert "`tiny-vit`" in earlier_row
    for split in ("validation", "test"):
        assert f"{100 * earlier[split]['accuracy']:.2f}%" in earlier_row
        assert f"{earlier[split]['f1']:.4f}" in earlier_row


@pytest.mark.parametrize("problem", ["missing", "no_results", "broken_json"])
def test_bad_compare_with_dir_raises_before_writing_anything(tmp_path, problem):
    bad = tmp_path / "earlier"
    if problem != "missing":
        bad.mkdir()
    if problem == "broken_json":
        (bad / "eval_results.json").write_text("{not json")
    output_dir = tmp_path / "out"
    rng = np.random.default_rng(3)

    with pytest.raises(ValueError, match=re.escape(str(bad))):
        write_report(
            output_dir, {"test": _split(rng, 3, 1)}, NAMES, TRAIN_COUNTS, LOG_HISTORY, _summary(), compare_with=[bad]
        )
    assert not output_dir.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels_offset": 7}, r"split 'test' \(7 label names\): label id \d+ is not a class id in \[0, 7\)"),
        ({"names": NAMES[:6]}, r"split 'test' \(6 label names\): logits must have shape \(num_samples, 6\)"),
        ({"train_counts": TRAIN_COUNTS[:6]}, "train_label_counts must have one count per class"),
        ({"split_name": "../test"}, "it names files"),
    ],
)
def test_bad_inputs_raise_before_writing_anything(tmp_path, change, message):
    logits, labels = _split(np.random.default_rng(4), 3, 1)
    labels = labels + change.get("labels_offset", 0)
    output_dir = tmp_path / "out"

    with pytest.raises(ValueError, match=message):
        write_report(
            output_dir,
            {change.get("split_name", "test"): (logits, labels)},
            change.get("names", NAMES),
            change.get("train_counts", TRAIN_COUNTS),
            LOG_HISTORY,
            _summary(),
        )
    assert not output_dir.exists()


# ---------------------------------------------------------------------------------------------------------------
# Class counts, large label sets, hard classes, naming
# ---------------------------------------------------------------------------------------------------------------


def _logits_for(predictions: np.ndarray, num_labels: int, seed: int = 0) -> np.ndarray:
    """Logits whose argmax is `predictions`, with small noise elsewhere."""
    logits = np.random.default_rng(seed).normal(scale=0.1, size=(len(predictions), num_labels))
    logits[np.arange(len(predictions)), predictions] += 5
    return logits.astype(np.float32)


def _many_class_split(num_labels: int, per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Every class `per_class` times; one sample of every third class is predicted as the next class."""
    labels = np.repeat(np.arange(num_labels), per_class)
    predictions = labels.copy()
    predictions[::3 * per_class] = (labels[::3 * per_class] + 1) % num_labels
    return _logits_for(predictions, num_labels), labels


def _section(report: str, title: str) -> str:
    return report[report.index(title) :].split("\n## ")[0]


@pytest.mark.parametrize("num_labels", [2, 3, 5, 6, 10, 300])
def test_report_is_written_for_any_number_of_classes(tmp_path, num_labels):
    names = [f"class_{i}" for i in range(num_labels)]
    splits = {"validation": _many_class_split(num_labels), "test": _many_class_split(num_labels, per_class=4)}
    train_counts = [10] * num_labels

    results = write_report(tmp_path, splits, names, train_counts, LOG_HISTORY, {"model": "tiny-vit"})

    # Top-5 accuracy is only computed (and shown) above 5 classes: with fewer it is always 1.
    with_top_k = num_labels > 5
    assert ("top5_accuracy" in results["test"]) is with_top_k
    assert json.loads((tmp_path / "eval_results.json").read_text()) == results
    report = (tmp_path / "report.md").read_text()
    table = [line for line in _section(report, "## Metrics").splitlines() if line.startswith("|")]
    assert ("Top-5 accuracy" in table[0]) is with_top_k
    assert len({line.count("|") for line in table}) == 1  # header, alignment and rows have the same columns
    for split, (logits, labels) in splits.items():
        assert len(_read_csv(tmp_path / f"{split}_per_class.csv")) == num_labels
        with open(tmp_path / f"{split}_confusion_matrix.csv", newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        assert header == ["true_class", *names] and [row[0] for row in rows] == names
        counts = np.array([[int(value) for value in row[1:]] for row in rows])
        expected = skm.confusion_matrix(labels, logits.argmax(-1), labels=range(num_labels))
        np.testing.assert_array_equal(counts, expected)
        # Readable at any class count: no 40-inch (4000 px) picture of 300 x 300 unreadable cells.
        width, height = _check_png(tmp_path / f"{split}_confusion_matrix.png")
        assert 400 <= width <= 2000 and 400 <= height <= 2000
    figures = _section(report, "## Confusion matrices")
    assert ("30 classes most involved in mistakes" in figures) is (num_labels > 50)
    assert "[`test_confusion_matrix.csv`](test_confusion_matrix.csv)" in figures


def test_many_classes_plot_the_classes_most_involved_in_mistakes():
    num_labels = 300
    labels = np.repeat(np.arange(num_labels), 3)
    predictions = labels.copy()
    # Classes 100-104 are always predicted as 105-109 (3 misses each; 3 false positives each for 105-109) ...
    for class_id in range(100, 105):
        predictions[labels == class_id] = class_id + 5
    # ... and one sample of each class 0-39 as the next class (2 mistakes for 1-39: a miss, a false positive).
    for class_id in range(40):
        predictions[3 * class_id] = class_id + 1
    result = classification._evaluate_split(_logits_for(predictions, num_labels), labels, num_labels, 0)

    shown = classification._classes_to_plot(result)

    # Most involved first; ties (equal support here) by class id. Class 0 has a miss only, class 40 a false
    # positive only: 1 each, below the cut.
    assert shown.tolist() == [*range(100, 110), *range(1, 21)]
    few = classification._evaluate_split(_logits_for(labels[:150], 50), labels[:150], 50, 0)
    assert classification._classes_to_plot(few).tolist() == list(range(50))  # up to 50 classes: all of them


def test_hardest_classes_explain_a_class_that_is_never_missed_but_wrongly_predicted(tmp_path):
    names = ["ant", "bee", "cat", "dog"]
    # "ant" is never missed, but 4 "bee"s and 1 "cat" are predicted as "ant": recall 1, precision 10/15.
    labels = np.repeat(np.arange(4), 10)
    predictions = labels.copy()
    predictions[10:14] = 0
    predictions[20] = 0
    write_report(tmp_path, {"test": (_logits_for(predictions, 4), labels)}, names, [5] * 4, [], {})

    section = _section((tmp_path / "report.md").read_text(), "## Hardest classes (test)")
    rows = {
        cells[0]: cells
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| Class")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert [cells[0] for cells in rows.values()] == ["bee", "ant", "cat", "dog"]  # by F1: 0.75, 0.8, 0.947, 1
    assert rows["bee"][-1] == "ant (4 of 10)"
    assert rows["ant"][2] == "0.6667" and rows["ant"][-1] == "none missed; 5 false positives, most from bee (4)"
    assert rows["cat"][-1] == "ant (1 of 10)"
    assert rows["dog"][-1] == "— (no mistakes)"


def test_report_is_named_after_the_run_name_when_one_is_given(tmp_path):
    splits = {"test": _split(np.random.default_rng(5), 4, worst_misses=2)}
    summary = {**_summary("google/vit-base"), "run_name": "vit-fruits-lr3e-4"}
    write_report(tmp_path / "out", splits, NAMES, TRAIN_COUNTS, [], summary)

    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# Evaluation report: vit-fruits-lr3e-4\n")
    assert "| Base model | `google/vit-base` |" in report
