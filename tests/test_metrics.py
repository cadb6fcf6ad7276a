"""hf_ft.metrics: shipped evaluate modules load offline and agree with scikit-learn and hand-computed values."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from sklearn import metrics as skm
from transformers import EvalPrediction

from hf_ft import classification, metrics

SHIPPED = ["accuracy", "confusion_matrix", "f1", "precision", "recall", "seqeval", "top_k_accuracy"]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test (a Hub lookup would show up here)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    metrics.load.cache_clear()
    yield
    metrics.load.cache_clear()


@pytest.fixture(scope="module")
def random_case():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 4, size=200)
    # Mostly right, so every score is well away from 0 and 1.
    predictions = np.where(rng.random(200) < 0.7, references, rng.integers(0, 4, size=200))
    return predictions, references, rng.random(200)


def test_shipped_names():
    assert metrics.shipped_names() == SHIPPED


def test_every_module_loads_offline_fast_without_network(no_network):
    import evaluate  # the import itself is slow (transformers pipelines); time only the loads

    start = time.perf_counter()
    modules = {name: metrics.load(name) for name in SHIPPED}
    elapsed = time.perf_counter() - start

    assert all(isinstance(module, evaluate.EvaluationModule) for module in modules.values())
    accuracy = modules["accuracy"].compute(predictions=[0, 1, 1], references=[0, 1, 0])
    assert accuracy == {"accuracy": pytest.approx(2 / 3)}
    # Loading from the Hub takes seconds even when it fails; six local loads take well under a second here.
    assert elapsed < 10, f"loading the shipped modules took {elapsed:.1f}s"


def test_load_is_cached():
    assert metrics.load("f1") is metrics.load("f1")


def test_unknown_name_lists_shipped_modules():
    with pytest.raises(ValueError, match="top_k_accuracy") as error:
        metrics.load("bleu")
    assert "'bleu'" in str(error.value)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("name", ["f1", "precision", "recall"])
def test_averaged_scores_match_sklearn(random_case, name, average):
    predictions, references, weights = random_case
    sklearn_fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[name]
    module = metrics.load(name)

    plain = module.compute(predictions=predictions, references=references, average=average)[name]
    weighted = module.compute(predictions=predictions, references=references, average=average, sample_weight=weights)

    assert plain == pytest.approx(sklearn_fn(references, predictions, average=average))
    assert weighted[name] == pytest.approx(sklearn_fn(references, predictions, average=average, sample_weight=weights))
    assert isinstance(plain, float)


def test_per_class_scores_follow_labels_order(random_case):
    predictions, references, _ = random_case
    labels = [3, 0, 5]  # 5 never occurs: undefined, so zero_division decides
    result = metrics.load("recall").compute(
        predictions=predictions, references=references, labels=labels, average=None, zero_division=np.nan
    )["recall"]
    expected = skm.recall_score(references, predictions, labels=labels, average=None, zero_division=np.nan)
    np.testing.assert_allclose(result, expected)
    assert np.isnan(result[2]) and not np.isnan(result[0])


def test_binary_uses_pos_label():
    f1 = metrics.load("f1")
    predictions, references = [1, 1, 0, 0], [1, 0, 0, 0]
    assert f1.compute(predictions=predictions, references=references)["f1"] == pytest.approx(2 / 3)
    assert f1.compute(predictions=predictions, references=references, pos_label=0)["f1"] == pytest.approx(0.8)


def test_accuracy_normalize_and_weights(random_case):
    predictions, references, weights = random_case
    accuracy = metrics.load("accuracy")
    assert accuracy.compute(predictions=predictions, references=references, normalize=False)["accuracy"] == np.sum(
        predictions == references
    )
    assert accuracy.compute(predictions=predictions, references=references, sample_weight=weights)[
        "accuracy"
    ] == pytest.approx(skm.accuracy_score(references, predictions, sample_weight=weights))


def test_confusion_matrix_counts_and_normalize():
    cm = metrics.load("confusion_matrix")
    counts = cm.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 0], labels=[0, 1, 2, 3])["confusion_matrix"]
    np.testing.assert_array_equal(counts, [[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    rows = cm.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 0], normalize="true")["confusion_matrix"]
    np.testing.assert_allclose(rows[0], [1 / 3, 1 / 3, 1 / 3])


def _ranked_logits(true_ranks: list[int], num_labels: int, labels: list[int]) -> np.ndarray:
    """Logits in which sample i's true class has rank true_ranks[i] (1 = highest score)."""
    logits = np.zeros((len(labels), num_labels), dtype=np.float32)
    for row, (rank, label) in enumerate(zip(true_ranks, labels)):
        others = [c for c in range(num_labels) if c != label]
        order = others[: rank - 1] + [label] + others[rank - 1 :]
        logits[row, order] = np.arange(num_labels, 0, -1)
    return logits


def test_top5_accuracy_on_crafted_logits():
    labels = [0, 3, 6, 2]
    logits = _ranked_logits([1, 5, 6, 7], num_labels=7, labels=labels)
    assert logits[1].argsort()[::-1].tolist().index(3) == 4  # rank 5, as crafted

    top_k = metrics.load("top_k_accuracy")
    assert top_k.compute(predictions=logits, references=labels, k=5, labels=list(range(7)))["top_k_accuracy"] == 0.5
    assert top_k.compute(predictions=logits, references=labels, k=6, labels=list(range(7)))["top_k_accuracy"] == 0.75
    assert classification.classification_metrics(logits, np.array(labels), 7)["top5_accuracy"] == 0.5


def test_macro_f1_averages_over_classes_present_in_labels():
    # 4 classes; class 2 is predicted once but never occurs, class 3 never occurs at all.
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 0, 1, 2])
    logits = np.eye(4)[predictions]

    result = classification.classification_metrics(logits, labels, num_labels=4)

    # By hand: class 0 F1 = 1; class 1 precision 1, recall 1/2, F1 = 2/3; mean over the present classes.
    assert result["f1"] == pytest.approx((1 + 2 / 3) / 2)
    # Averaging over range(4) would add two zeros: the same information, scaled by 2/4.
    assert skm.f1_score(labels, predictions, labels=range(4), average="macro", zero_division=0) == pytest.approx(
        result["f1"] * 2 / 4
    )
    assert result["accuracy"] == 0.75
    assert "top5_accuracy" not in result  # 4 classes: top-5 would always be 1


def test_perfect_predictions_score_one_when_a_class_is_absent():
    labels = np.array([0, 1, 2, 4, 5, 6, 6])  # class 3 absent
    result = classification.classification_metrics(np.eye(7)[labels], labels, num_labels=7)
    assert result == {"accuracy": 1.0, "f1": 1.0, "top5_accuracy": 1.0}


def test_compute_metrics_takes_logits_from_tuple_predictions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, 8)).astype(np.float32)
    labels = rng.integers(0, 8, size=30)
    compute = classification.compute_metrics_for_classification(num_labels=8)

    from_tuple = compute(EvalPrediction(predictions=(logits, rng.normal(size=(30, 4, 2))), label_ids=labels))
    from_array = compute(EvalPrediction(predictions=logits, label_ids=labels))

    assert from_tuple == from_array == classification.classification_metrics(logits, labels, 8)
    assert from_array["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))
    assert set(from_array) == {"accuracy", "f1", "top5_accuracy"}


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((3, 4)), np.array([0, 1, 2]), r"shape \(num_samples, 5\)"),
        (np.zeros(3), np.array([0, 1, 2]), "argmax"),
        (np.zeros((3, 5)), np.array([0, 1]), r"shape \(3,\)"),
        (np.zeros((3, 5)), np.array([0, 5, 1]), r"label id 5 is not a class id in \[0, 5\)"),
        (np.zeros((3, 5)), np.array([0, -1, 1]), "label id -1"),
        (np.zeros((3, 5)), np.array([0.5, 1, 2]), "integer class ids"),
        (np.zeros((0, 5)), np.array([], dtype=int), "no samples"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        classification.classification_metrics(logits, labels, num_labels=5)


def test_loading_a_metric_leaves_the_global_rng_alone():
    """evaluate.load draws from Python's RNG; a resumed run loads metrics later than an unbroken one, so a
    draw there would shift its augmentations and break 'resume ends with the same metrics'."""
    import random

    from hf_ft import metrics

    metrics.load.cache_clear()
    random.seed(1234)
    expected = random.getstate()
    metrics.load("accuracy")
    assert random.getstate() == expected
