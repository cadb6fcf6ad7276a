"""hf_ft.bootstrap and the report's intervals and paired comparisons: the resampled statistic is the reported one,
intervals cover it and narrow with more data, pairing needs the same examples, regressions come first."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from hf_ft import bootstrap, classification
from hf_ft import report as report_module
from hf_ft.bootstrap import BootstrapSettings

SETTINGS = BootstrapSettings(num_resamples=400, seed=0)


def _classification(rng, num_examples, num_classes, accuracy):
    labels = rng.integers(0, num_classes, num_examples)
    predicted = np.where(rng.random(num_examples) < accuracy, labels, rng.integers(0, num_classes, num_examples))
    logits = rng.normal(scale=0.3, size=(num_examples, num_classes)).astype(np.float32)
    logits[np.arange(num_examples), predicted] += 3
    return logits, labels


def _records(logits, labels, names, ids=None):
    ids = ids or [bootstrap.example_id(f"example {i}") for i in range(len(labels))]
    return classification.example_records(logits, labels, names, ids, [f"#{i}" for i in range(len(labels))])


@pytest.mark.parametrize("num_classes", [3, 12])
def test_records_scorer_equals_the_reported_metrics(num_classes):
    rng = np.random.default_rng(num_classes)
    logits, labels = _classification(rng, 150, num_classes, accuracy=0.6)
    labels[labels == 1] = 0  # a class absent from the split: macro F1 leaves it out
    names = [f"class {i}" for i in range(num_classes)]
    scores = classification.records_scorer(_records(logits, labels, names))(np.arange(len(labels)))
    expected = classification.classification_metrics(logits, labels, num_classes)
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-12), key


def test_interval_covers_the_score_and_narrows_with_more_examples():
    names = ["a", "b", "c"]
    widths = {}
    for size in (40, 1000):
        logits, labels = _classification(np.random.default_rng(size), size, 3, accuracy=0.7)
        records = _records(logits, labels, names)
        found = bootstrap.intervals(records, classification.records_scorer, ["accuracy", "f1"], SETTINGS)
        accuracy = classification.classification_metrics(logits, labels, 3)["accuracy"]
        low, high = found["accuracy"]
        assert low < accuracy < high
        widths[size] = high - low
        assert bootstrap.intervals(records, classification.records_scorer, ["accuracy"], SETTINGS)["accuracy"] == (low, high)
    # About the normal approximation's width, 2 x 1.96 x sqrt(p (1 - p) / n), and so far narrower with 25x the data.
    assert widths[1000] < widths[40] / 2.5
    assert 0.8 * 2 * 1.96 * np.sqrt(0.8 * 0.2 / 1000) < widths[1000] < 1.25 * 2 * 1.96 * np.sqrt(0.8 * 0.2 / 1000)


def test_paired_difference_is_tighter_than_two_intervals_and_lists_regressions_first():
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "owl"]
    labels = rng.integers(0, 3, 300)
    earlier_guess = np.where(rng.random(300) < 0.7, labels, (labels + 1) % 3)
    better_guess = earlier_guess.copy()
    wrong = np.flatnonzero(earlier_guess != labels)
    better_guess[wrong[:30]] = labels[wrong[:30]]  # 30 fixed
    right = np.flatnonzero(earlier_guess == labels)
    better_guess[right[:6]] = (labels[right[:6]] + 2) % 3  # 6 broken
    ids = [bootstrap.example_id(str(i)) for i in range(300)]

    def as_records(guess):
        return _records(np.eye(3, dtype=np.float32)[guess] * 4, labels, names, ids)

    earlier, this = as_records(earlier_guess), as_records(better_guess)
    shuffled = [earlier[i] for i in rng.permutation(300)]  # pairing is by example, not by row
    assert bootstrap.same_examples(this, shuffled) is None
    found = bootstrap.paired_difference(this, shuffled, classification.records_scorer, ["accuracy"], SETTINGS)
    difference, low, high = found.differences["accuracy"]
    assert difference == pytest.approx(24 / 300)
    assert 0 < low < difference < high
    separate = [bootstrap.intervals(r, classification.records_scorer, ["accuracy"], SETTINGS)["accuracy"] for r in (earlier, this)]
    assert separate[1][0] < separate[0][1]  # the two intervals overlap, yet the paired one excludes 0
    unpaired = np.hypot(*(b - a for a, b in separate))  # the width of the difference of two independent scores
    assert high - low < 0.6 * unpaired
    kinds = [row["kind"] for row in found.changed]
    assert kinds == ["regression"] * 6 + ["fixed"] * 30
    assert {row["id"] for row in found.changed[:6]} == {ids[i] for i in right[:6]}
    assert found.changed[0]["earlier"] == found.changed[0]["reference"] != found.changed[0]["this_run"]


def test_pairing_is_refused_for_other_examples_or_references():
    rng = np.random.default_rng(1)
    logits, labels = _classification(rng, 20, 3, accuracy=0.8)
    names = ["a", "b", "c"]
    records = _records(logits, labels, names)
    assert "not scored on the same examples (20 here, 19 there, 19 in common)" in bootstrap.same_examples(records, records[1:])
    relabelled = [{**record, "reference": "x"} if i < 3 else record for i, record in enumerate(records)]
    assert "3 of the shared examples have other references" in bootstrap.same_examples(records, relabelled)
    repeated = records + records[:1]
    assert "repeated" in bootstrap.same_examples(repeated, repeated)


def test_example_id_follows_content():
    assert bootstrap.example_id("a", "bc") == bootstrap.example_id("a", "bc") != bootstrap.example_id("ab", "c")
    assert bootstrap.example_id(b"\x89PNG") == bootstrap.example_id(b"\x89PNG") != bootstrap.example_id(b"\x89PNH")


def _report(output_dir, labels, guess, names, ids, compare_with=(), settings=SETTINGS):
    logits = np.eye(len(names), dtype=np.float32)[guess] * 4
    inputs = [f"img_{i}.png" for i in range(len(labels))]
    task_report = classification.evaluate(
        output_dir, {"test": (logits, labels)}, names, [10] * len(names), {"test": (ids, inputs)}
    )
    summary = {"model": "m", "config": {"seed": 0}, "run_name": output_dir.name}
    report_module.write_report(output_dir, task_report, summary, [], compare_with, settings)
    return (output_dir / "report.md").read_text()


def test_report_states_intervals_pairs_runs_and_refuses_other_test_sets(tmp_path):
    rng = np.random.default_rng(3)
    names = ["rare", "common"]
    labels = np.array([0] * 20 + [1] * 180)
    ids = [bootstrap.example_id(str(i)) for i in range(200)]
    unweighted = np.where(rng.random(200) < 0.9, labels, 1 - labels)
    unweighted[:14] = 1  # the rare class is mostly missed
    weighted = unweighted.copy()
    weighted[:10] = 0
    weighted[100:104] = 0  # four common examples broken
    text = _report(tmp_path / "a", labels, unweighted, names, ids)
    assert "## How sure these numbers are" in text and "95% percentile bootstrap intervals, 400 resamples" in text
    intervals = json.loads((tmp_path / "a" / report_module.INTERVALS_FILE).read_text())["intervals"]["test"]
    assert intervals.keys() == {"accuracy", "f1"}
    records = [json.loads(line) for line in (tmp_path / "a" / "test_predictions.jsonl").read_text().splitlines()]
    assert len(records) == 200 and records[0]["input"] == "img_0.png" and records[0]["reference"] == "rare"

    text = _report(tmp_path / "b", labels, weighted, names, ids, compare_with=[tmp_path / "a"])
    paired = text.split(f"## Paired with `{tmp_path / 'a'}`", 1)[1]
    assert "| test | Accuracy | +3.00 pp |" in paired
    rare_row = next(line for line in paired.splitlines() if line.startswith("| rare |"))
    assert rare_row.split("|")[2:6] == [" 20 ", f" {np.mean(unweighted[:20] == 0):.2%} ", f" {np.mean(weighted[:20] == 0):.2%} ",
                                        f" +{100 * 10 / 20:.2f} pp "]
    assert "4 regressions (right there, wrong here), 10 fixed" in paired
    rows = list(csv.DictReader(open(tmp_path / "b" / "compared_0_test_changed.csv", encoding="utf-8")))
    assert [row["kind"] for row in rows] == ["regression"] * 4 + ["fixed"] * 10
    assert rows[0]["input"] == "img_100.png"

    other_ids = [bootstrap.example_id(f"other {i}") for i in range(200)]
    text = _report(tmp_path / "c", labels, weighted, names, other_ids, compare_with=[tmp_path / "a"])
    assert "**Not the same test set:** they were not scored on the same examples (200 here, 200 there, 0 in common)" in text
    assert not (tmp_path / "c" / "compared_0_test_changed.csv").exists()


def test_no_resamples_means_no_intervals_but_still_a_paired_difference(tmp_path):
    labels = np.array([0, 1, 1, 0, 1])
    ids = [bootstrap.example_id(str(i)) for i in range(5)]
    off = BootstrapSettings(num_resamples=0)
    text = _report(tmp_path / "a", labels, labels, ["x", "y"], ids, settings=off)
    assert "How sure" not in text and not (tmp_path / "a" / report_module.INTERVALS_FILE).exists()
    text = _report(tmp_path / "b", labels, 1 - labels, ["x", "y"], ids, compare_with=[tmp_path / "a"], settings=off)
    assert "| test | Accuracy | -100.00 pp | — | — |" in text


def test_an_earlier_run_without_records_is_named_not_paired(tmp_path):
    earlier = tmp_path / "old"
    earlier.mkdir()
    (earlier / "eval_results.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    (earlier / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": "old"}))
    labels = np.array([0, 1, 1, 0])
    text = _report(tmp_path / "new", labels, labels, ["x", "y"], [str(i) for i in range(4)], compare_with=[earlier])
    assert "that run holds no `test_predictions.jsonl`" in text


def test_text_scorers_equal_the_reported_multi_label_and_regression_metrics():
    from hf_ft.tasks import text_classification as text

    rng = np.random.default_rng(5)
    names = [f"label {i}" for i in range(6)]
    labels = (rng.random((80, 6)) < 0.3).astype(np.float32)
    labels[:, 5] = 0  # never true: macro F1 leaves it out
    logits = np.where(rng.random((80, 6)) < 0.75, 2 * labels - 1, 1 - 2 * labels) * 2 + rng.normal(scale=0.1, size=(80, 6))
    ids, inputs = [str(i) for i in range(80)], ["t"] * 80
    records = text._multi_label_records(logits, labels, names, ids, inputs)
    resample = rng.integers(0, 80, 80)
    for indices in (np.arange(80), resample):
        assert text._multi_label_scorer(records)(indices) == pytest.approx(
            text.multi_label_metrics(logits[indices], labels[indices]), abs=1e-12
        )
    outputs, targets = rng.normal(size=80), rng.normal(size=80)
    records = text._regression_records(outputs, targets, ids, inputs)
    for indices in (np.arange(80), resample):
        expected = text.regression_metrics(outputs[indices], targets[indices])
        assert text._regression_scorer(records)(indices) == pytest.approx(
            {key: expected[key] for key in ("mse", "pearson")}, abs=1e-12
        )
