"""The text recipe end to end, run the way users run it: `accelerate launch recipes/text_cls.py --config ...`.

A tiny BERT (built from BertConfig, with a WordPiece tokenizer from a vocab written here) on synthetic but
learnable sentences: each holds one keyword of its class (one keyword per label for multi-label; its topic's score
for regression) among filler words. No demo package needed.
"""

from __future__ import annotations

import csv
import json
import random
import runpy
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml

from . import recipe_runs
from .conftest import REPO
from .recipe_runs import TWO_PROCESS_CONFIG, results, same_weights

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "text_cls.py"
launch = partial(recipe_runs.launch, RECIPE)
run_in_process = partial(recipe_runs.run_in_process, RECIPE)
kill_after = partial(recipe_runs.kill_after, RECIPE)
KEYWORDS = {
    "animals": ["cat", "dog", "horse", "mouse"],
    "colors": ["red", "blue", "green", "yellow"],
    "food": ["bread", "apple", "cheese", "soup"],
    "sports": ["tennis", "golf", "soccer", "rugby"],
    "weather": ["rain", "snow", "wind", "sun"],
}
FILLER = ["the", "a", "we", "saw", "some", "very", "today", "and", "it", "was", "there", "again", "near", "old", "new"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *[w for words in KEYWORDS.values() for w in words]]


def sentence(rng: random.Random, label: str, long: bool = False) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8) if not long else 40)]
    words.insert(rng.randint(0, 2), rng.choice(KEYWORDS[label]))  # early: truncation keeps it
    return " ".join(words)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> dict[str, Path]:
    """5 classes, string labels, some long sentences (truncated): train 400 / validation 100 / test 100."""
    root = tmp_path_factory.mktemp("text_data")
    rng = random.Random(0)
    files = {}
    for split, size in (("train", 400), ("validation", 100), ("test", 100)):
        labels = [list(KEYWORDS)[i % 5] for i in range(size)]
        rows = [{"text": sentence(rng, label, long=i % 10 == 0), "label": label} for i, label in enumerate(labels)]
        files[split] = write_csv(root / f"{split}.csv", rows)
    return files


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory) -> dict[str, Path]:
    """Text pairs (`sentence1`, `sentence2`), 2 classes as integers: the class is the second sentence's topic."""
    root = tmp_path_factory.mktemp("pair_data")
    rng = random.Random(1)
    files = {}
    for split, size in (("train", 300), ("validation", 60), ("test", 60)):
        rows = []
        for i in range(size):
            label = i % 2
            rows.append({"sentence1": sentence(rng, rng.choice(list(KEYWORDS))),
                         "sentence2": sentence(rng, "animals" if label else "food"), "label": label})
        files[split] = write_csv(root / f"{split}.csv", rows)
    return files


# Regression targets: each topic's score, plus noise.
SCORES = {"animals": 1.0, "colors": 2.0, "food": 3.0, "sports": 4.0, "weather": 5.0}
# Sigmoid and regression heads leave their first plateau (the label frequencies, the mean score) later than a softmax:
# the tiny BERT needs ~15 epochs (375 steps, ~3 s of training) where 4 leave it there (measured: micro F1 0.72 against
# the most-frequent-set baseline's 0.27; MSE 0.013 against the train mean's 2.0).
LONG_RUN = {"num_train_epochs": 15, "save_strategy": "no"}


def multi_label_rows(rng: random.Random, size: int) -> list[dict]:
    """Texts with the keywords of one or two topics; `labels` lists those topics."""
    rows = []
    for _ in range(size):
        labels = sorted(rng.sample(list(KEYWORDS), rng.choice([1, 1, 2])))
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 6))]
        for label in labels:
            words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def multi_label_data(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """The same multi-label rows twice: `jsonl` with label lists, `csv` with `|`-delimited label strings."""
    root = tmp_path_factory.mktemp("multi_label_data")
    rng = random.Random(4)
    files = {"jsonl": {}, "csv": {}}
    for split, size in (("train", 400), ("validation", 100), ("test", 100)):
        rows = multi_label_rows(rng, size)
        files["jsonl"][split] = write_jsonl(root / f"{split}.jsonl", rows)
        files["csv"][split] = write_csv(root / f"{split}.csv", [{**r, "labels": "|".join(r["labels"])} for r in rows])
    return files


@pytest.fixture(scope="module")
def regression_data(tmp_path_factory) -> dict[str, Path]:
    """A float `score` per text: its topic's score in SCORES plus N(0, 0.1) noise."""
    root = tmp_path_factory.mktemp("regression_data")
    rng = random.Random(5)
    files = {}
    for split, size in (("train", 400), ("validation", 100), ("test", 100)):
        topics = [list(KEYWORDS)[i % 5] for i in range(size)]
        rows = [{"text": sentence(rng, t), "score": round(SCORES[t] + rng.gauss(0, 0.1), 3)} for t in topics]
        files[split] = write_csv(root / f"{split}.csv", rows)
    return files


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ckpt"))


def build_tiny_bert(root: Path) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer over the test vocabulary, saved like a Hub checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    path = root / "tiny-bert"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    # `vocab_file=` is silently ignored in transformers 5 (a 5-token vocabulary: every word [UNK]); `vocab=` reads the file
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    assert len(tokenizer) == len(VOCAB)
    tokenizer.save_pretrained(path)
    return path


def write_config(tmp_path: Path, data: dict[str, Path], checkpoint: Path, output_dir: Path, **overrides) -> Path:
    config = {
        "model_name_or_path": str(checkpoint),
        **{f"{split}_file": str(data[split]) for split in ("train", "validation", "test") if data.get(split)},
        "max_seq_length": 24,
        "output_dir": str(output_dir),
        "num_train_epochs": 4,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": 3.0e-3,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_steps": 5,
        "seed": 7,
        "dataloader_num_workers": 0,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
    }
    config.update(overrides)
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pipeline_outputs(model_dir: Path, data_file: Path, columns: tuple[str, ...] = ("text",), **kwargs) -> list:
    """`pipeline("text-classification")` on every row of `data_file`, truncating as the card tells users to."""
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(model_dir), device="cpu")
    rows = read_rows(data_file)
    inputs = ([row["text"] for row in rows] if len(columns) == 1
              else [{"text": row[columns[0]], "text_pair": row[columns[1]]} for row in rows])
    return classifier(inputs, truncation=True, batch_size=32, **kwargs)


def pipeline_accuracy(model_dir: Path, data_file: Path, columns: tuple[str, ...] = ("text",)) -> float:
    predictions = pipeline_outputs(model_dir, data_file, columns)
    return float(np.mean([p["label"] == row["label"] for p, row in zip(predictions, read_rows(data_file))]))


def card_result(output_dir: Path, split: str, metric_name: str) -> float:
    """The value the model card's metadata (model-index) gives for `metric_name` on `split`."""
    from huggingface_hub import ModelCard

    results = ModelCard.load(output_dir / "README.md").data.eval_results
    values = [r.metric_value for r in results if r.dataset_split == split and r.metric_name == metric_name]
    assert len(values) == 1, f"{metric_name} on {split}: {values} in the card"
    return values[0]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, text_data, tiny_bert_dir):
    """The end-to-end run: `accelerate launch recipes/text_cls.py --config ...` on single-label data."""
    tmp = tmp_path_factory.mktemp("text_run")
    output_dir = tmp / "out"
    result = launch(write_config(tmp, text_data, tiny_bert_dir, output_dir))
    return output_dir, result


def test_run_learns_reports_and_card_matches_pipeline(text_run, text_data):
    output_dir, result = text_run
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.3
    assert "train: 40 of 400 examples truncated to 24 tokens (10.0%)" in result.stdout
    for name in ("report.md", "README.md", "mistakes.md", "args.yaml", "test_per_class.csv", "test_confusion_matrix.png",
                 "model.safetensors", "config.json", "tokenizer.json"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / "mistakes.md").read_text().startswith("# Most confident mistakes (test split)")
    report_md = (output_dir / "report.md").read_text()
    assert "## Hardest classes (test)" in report_md and "## Most confident mistakes (test)" in report_md
    assert "max_seq_length" in (output_dir / "README.md").read_text()
    config = json.loads((output_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(5)] == sorted(KEYWORDS)
    assert config["problem_type"] == "single_label_classification"
    # What the card promises is what pipeline() gives: same tokenizer, same truncation, same model.
    assert card_result(output_dir, "test", "Accuracy") == pytest.approx(test["accuracy"], abs=1e-9)
    assert pipeline_accuracy(output_dir, text_data["test"]) == pytest.approx(test["accuracy"], abs=1e-9)


def test_predict_gives_the_reports_metrics_and_pipelines_labels(text_run, text_data, tmp_path):
    output_dir, _ = text_run
    predicted = recipe_runs.predict(output_dir, text_data["test"], tmp_path / "p.csv", top_k=2, batch_size=7)
    test = results(output_dir)["test"]
    assert predicted.metrics["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert predicted.metrics["f1"] == pytest.approx(test["f1"], abs=1e-9)
    rows = read_rows(tmp_path / "p.csv")
    assert [row["label"] for row in rows] == [p["label"] for p in pipeline_outputs(output_dir, text_data["test"])]
    assert [row["input"] for row in rows] == [row["text"] for row in read_rows(text_data["test"])]
    assert all(len(row["top_k_labels"].split("|")) == 2 for row in rows)


def test_killed_run_resumes_to_the_same_bits(tmp_path, text_data, tiny_bert_dir, text_run):
    unbroken, _ = text_run
    output_dir = tmp_path / "out"
    config = write_config(tmp_path, text_data, tiny_bert_dir, output_dir)
    kill_after(config, output_dir / "checkpoint-25")  # 400 / 16 = 25 steps an epoch
    result = launch(config)
    assert "Resuming the run" in result.stdout
    assert results(output_dir) == results(unbroken)
    assert same_weights(output_dir / "model.safetensors", unbroken / "model.safetensors")


def test_text_pairs_with_integer_labels(tmp_path, pair_data, tiny_bert_dir, caplog):
    output_dir = tmp_path / "pairs"
    caplog.set_level("INFO")
    run_in_process(write_config(tmp_path, pair_data, tiny_bert_dir, output_dir, max_seq_length=48, save_strategy="no"))
    assert "text columns ['sentence1', 'sentence2']" in caplog.text
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.2
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"}
    assert pipeline_accuracy(output_dir, pair_data["test"], ("sentence1", "sentence2")) == pytest.approx(
        test["accuracy"], abs=1e-9
    )
    predicted = recipe_runs.predict(output_dir, pair_data["test"], tmp_path / "pairs.jsonl")  # both columns found
    assert predicted.metrics["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert " ‖ " in predicted.rows[0]["input"]


def test_multi_label_run_learns_and_card_matches_pipeline(tmp_path, multi_label_data, tiny_bert_dir):
    from sklearn.metrics import f1_score

    output_dir = tmp_path / "multi"
    run_in_process(write_config(tmp_path, multi_label_data["jsonl"], tiny_bert_dir, output_dir, **LONG_RUN))
    test = results(output_dir)["test"]
    assert test["micro_f1"] > test["most_frequent_set_baseline_micro_f1"] + 0.2
    config = json.loads((output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(5)] == sorted(KEYWORDS)
    report_md = (output_dir / "report.md").read_text()
    assert "## Per-label scores (test)" in report_md and "## Most confident mistakes (test)" in report_md
    assert (output_dir / "test_per_label.csv").read_text().startswith("label,precision,recall,f1,support,train_support")
    assert (output_dir / "mistakes.md").read_text().startswith("# Most confident mistakes (test split)")
    # pipeline(top_k=None) scores every label with a sigmoid; >= 0.5 is the card's decision rule
    scores = pipeline_outputs(output_dir, multi_label_data["jsonl"]["test"], top_k=None)
    names = sorted(KEYWORDS)
    predicted = [[any(s["label"] == n and s["score"] >= 0.5 for s in row) for n in names] for row in scores]
    truth = [[n in row["labels"] for n in names] for row in read_rows(multi_label_data["jsonl"]["test"])]
    micro_f1 = f1_score(truth, predicted, average="micro")
    assert card_result(output_dir, "test", "Micro F1") == pytest.approx(test["micro_f1"], abs=1e-9)
    assert micro_f1 == pytest.approx(test["micro_f1"], abs=1e-9)
    from_predict = recipe_runs.predict(output_dir, multi_label_data["jsonl"]["test"], tmp_path / "multi.jsonl", top_k=2)
    assert from_predict.metrics["micro_f1"] == pytest.approx(test["micro_f1"], abs=1e-9)
    assert [[name in row["labels"] for name in names] for row in from_predict.rows] == predicted  # pipeline's sets
    assert [sorted(row["reference"]) for row in from_predict.rows] == [
        sorted(row["labels"]) for row in read_rows(multi_label_data["jsonl"]["test"])]


def test_multi_label_search_scores_trials_by_micro_f1_and_reruns_the_best(tmp_path, multi_label_data, tiny_bert_dir):
    """A search over a model argument (trainable_blocks: freezing) and the learning rate, scored by the multi-label
    headline metric; best.yaml reruns to the best trial's score."""
    output_dir = tmp_path / "search"
    space = {"learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
             "trainable_blocks": {"type": "categorical", "choices": [0, 1, 2]}}
    config = write_config(tmp_path, multi_label_data["jsonl"], tiny_bert_dir, output_dir, num_train_epochs=3,
                          n_trials=2, search_space=space)
    best = run_in_process(config)
    trials = recipe_runs.check_search_reruns(RECIPE, output_dir, best, "micro_f1")
    assert len(trials) == 2 and "Optuna's TPE sampler has seed 7" in (output_dir / "search.md").read_text()


def test_delimited_label_strings_read_as_the_same_label_lists(multi_label_data):
    from hf_ft.tasks.text_classification import MULTI_LABEL, TextDataArguments, load_data

    def loaded(files: dict[str, Path], **kwargs):
        data = load_data(TextDataArguments(**{f"{s}_file": str(p) for s, p in files.items()}, **kwargs), seed=0)
        return data, {name: split["label"][:] for name, split in data.splits.items()}

    lists, list_labels = loaded(multi_label_data["jsonl"])
    delimited, delimited_labels = loaded(multi_label_data["csv"], label_delimiter="|")
    assert lists.problem_type == delimited.problem_type == MULTI_LABEL
    assert lists.label_names == delimited.label_names == sorted(KEYWORDS)
    assert list_labels == delimited_labels


def test_multi_hot_columns_follow_the_checkpoints_label_order(multi_label_data):
    from hf_ft.tasks.text_classification import TextDataArguments, load_data, reorder_labels

    files = {f"{split}_file": str(path) for split, path in multi_label_data["jsonl"].items()}
    data = load_data(TextDataArguments(**files), seed=0)
    reordered = reorder_labels(data, data.label_names[::-1])  # a checkpoint trained on the names, other way round
    assert reordered.label_names == sorted(KEYWORDS, reverse=True)
    for row, labels in zip(read_rows(multi_label_data["jsonl"]["test"]), reordered.splits["test"]["label"]):
        assert [name for name, on in zip(reordered.label_names, labels) if on] == sorted(row["labels"], reverse=True)


def test_problem_type_overrides_what_the_labels_suggest(pair_data):
    """Integer classes read as scores (`label` stays the column's name), or as one-label sets."""
    from hf_ft.tasks.text_classification import TextDataArguments, load_data

    files = {f"{split}_file": str(path) for split, path in pair_data.items()}
    scores = load_data(TextDataArguments(**files, problem_type="regression"), seed=0)
    assert scores.label_names == ["label"] and scores.splits["train"].features["label"].dtype == "float32"
    sets = load_data(TextDataArguments(**files, problem_type="multi_label_classification"), seed=0)
    assert sets.label_names == ["0", "1"]
    assert {tuple(row) for row in sets.splits["test"]["label"][:]} == {(1.0, 0.0), (0.0, 1.0)}


def test_regression_run_learns_and_card_matches_pipeline(tmp_path, regression_data, tiny_bert_dir):
    output_dir = tmp_path / "regression"
    run_in_process(write_config(tmp_path, regression_data, tiny_bert_dir, output_dir, label_column_name="score",
                                **LONG_RUN))
    test = results(output_dir)["test"]
    assert test["mse"] < 0.5 * test["mean_baseline_mse"] and test["pearson"] > 0.7
    config = json.loads((output_dir / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    report_md = (output_dir / "report.md").read_text()
    assert "## Largest errors (test)" in report_md and (output_dir / "test_predictions.png").is_file()
    # The pipeline applies no activation to a regression model: its score is the prediction.
    outputs = pipeline_outputs(output_dir, regression_data["test"])
    truth = [float(row["score"]) for row in read_rows(regression_data["test"])]
    mse = np.mean([(p["score"] - score) ** 2 for p, score in zip(outputs, truth)])
    assert {p["label"] for p in outputs} == {"score"}
    assert card_result(output_dir, "test", "MSE") == pytest.approx(test["mse"], rel=1e-6)
    assert mse == pytest.approx(test["mse"], rel=1e-4)
    predicted = recipe_runs.predict(output_dir, regression_data["test"], tmp_path / "scores.jsonl")
    assert predicted.metrics["mse"] == pytest.approx(test["mse"], rel=1e-6)
    assert [row["score"] for row in predicted.rows] == pytest.approx([p["score"] for p in outputs], abs=1e-5)


def test_continued_fine_tune_keeps_the_checkpoints_label_order(tmp_path, tiny_bert_dir):
    """A checkpoint trained on labels [b, a], fine-tuned on data whose sorted labels are [a, b], keeps its head rows."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    checkpoint = tmp_path / "ba"
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label={0: "b", 1: "a"}, label2id={"b": 0, "a": 1}
    )
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(checkpoint)
    rng = random.Random(2)
    data = {split: write_csv(tmp_path / f"{split}.csv", [
        {"text": sentence(rng, "food" if i % 2 else "animals"), "label": "a" if i % 2 else "b"} for i in range(40)
    ]) for split in ("train", "validation", "test")}
    output_dir = tmp_path / "continued"
    # a step too small to move the weights: what is left to see is whether the rows were permuted
    run_in_process(write_config(tmp_path, data, checkpoint, output_dir, max_steps=1, learning_rate=1.0e-12,
                                weight_decay=0.0, save_strategy="no", eval_strategy="no"))
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "b", "1": "a"}
    before, after = load_file(checkpoint / "model.safetensors"), load_file(output_dir / "model.safetensors")
    for key in ("classifier.weight", "classifier.bias"):
        torch.testing.assert_close(after[key], before[key])


def test_continuing_on_an_added_label_keeps_the_old_ones_and_measures_forgetting(tmp_path, text_run, text_data):
    """The 5-topic run continued on data with a sixth label: the old labels keep their ids, and the report scores the
    new model on the first run's test split against that run's own scores."""
    trained, _ = text_run
    rng = random.Random(5)
    data = {}
    for split in ("train", "validation", "test"):
        rows = [{"text": sentence(rng, label), "label": label} for label in list(KEYWORDS) * 8]
        rows += [{"text": " ".join(rng.choice(FILLER) for _ in range(6)), "label": "misc"} for _ in range(8)]
        data[split] = write_csv(tmp_path / f"{split}.csv", rows)
    output_dir = tmp_path / "six"
    run_in_process(write_config(tmp_path, data, trained, output_dir, num_train_epochs=1, save_strategy="no"))
    assert list(json.loads((output_dir / "config.json").read_text())["id2label"].values()) == [*sorted(KEYWORDS), "misc"]
    before, after = results(trained)["test"], results(output_dir / "forgetting")["test"]
    assert after["num_samples"] == before["num_samples"] == 100
    predicted = recipe_runs.predict(output_dir, text_data["test"], tmp_path / "old.csv").metrics
    assert predicted["accuracy"] == pytest.approx(after["accuracy"], abs=1e-9)
    section = (output_dir / "report.md").read_text().split("## Forgetting: the earlier run's test set")[1]
    assert f"| Accuracy | {100 * before['accuracy']:.2f}% | {100 * after['accuracy']:.2f}% |" in section


def test_lora_run_trains_the_adapter_and_compares_with_the_earlier_run(tmp_path, text_data, text_run, caplog):
    """LoRA on the encoder the first run trained, for the same topics under other names: the same-shape head must be
    re-initialised (its rows meant other classes), then adapters and head train; `merged/` loads with pipeline();
    the report puts the earlier run beside this one."""
    base, _ = text_run
    renamed = {}
    for split, path in text_data.items():
        rows = [{"text": row["text"], "label": f"topic_{row['label']}"} for row in read_rows(path)]
        renamed[split] = write_csv(tmp_path / f"{split}.csv", rows)
    output_dir = tmp_path / "lora"
    caplog.set_level("INFO")
    run_in_process(write_config(tmp_path, renamed, base, output_dir, peft_method="lora", lora_r=4, merge_adapter=True,
                                learning_rate=1.0e-2, num_train_epochs=2, save_strategy="no", compare_with=[str(base)],
                                linear_probe_baseline=True))
    assert "re-initialising `classifier`" in caplog.text
    # the new head's rows mean other classes: the first run's test split cannot be scored by it
    assert "Forgetting is not measured" in caplog.text and not (output_dir / "forgetting").exists()
    assert "PEFT lora on intermediate.dense, key, output.dense, query, value; also trained in full: classifier" in caplog.text
    assert (output_dir / "adapter_model.safetensors").is_file() and not (output_dir / "model.safetensors").exists()
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.3
    assert pipeline_accuracy(output_dir / "merged", renamed["test"]) == pytest.approx(test["accuracy"], abs=0.02)
    adapter = recipe_runs.predict(output_dir, renamed["test"], tmp_path / "adapter.jsonl")  # base + adapter
    assert adapter.metrics["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    comparison = (output_dir / "report.md").read_text().split("## Compared with earlier runs", 1)[1]
    earlier = f"{results(base)['test']['accuracy']:.2%}".replace("%", "")
    assert "**this run**" in comparison and f"`{base}`" in comparison and earlier in comparison
    # the linear probe baseline, on the features of the encoder the adapters start from (the first run's)
    probe = results(output_dir / "linear_probe")["test"]
    assert probe["num_samples"] == test["num_samples"] and probe["accuracy"] > probe["majority_baseline_accuracy"] + 0.3
    assert "## What fine-tuning added: a linear probe baseline" in (output_dir / "report.md").read_text()


def test_linear_probe_trains_the_head_only(tmp_path, text_data, tiny_bert_dir):
    from safetensors.torch import load_file

    output_dir = tmp_path / "probe"
    run_in_process(write_config(tmp_path, text_data, tiny_bert_dir, output_dir, trainable_blocks=0, max_steps=3,
                                save_strategy="no", eval_strategy="no"))
    base, after = load_file(tiny_bert_dir / "model.safetensors"), load_file(output_dir / "model.safetensors")
    encoder = [key for key in after if key.startswith("bert.")]
    assert encoder and all((after[key] == base[key.removeprefix("bert.")]).all() for key in encoder)
    assert "classifier.weight" in after


def test_two_real_cpu_processes(tmp_path, text_data, tiny_bert_dir):
    output_dir = tmp_path / "ddp"
    result = launch(write_config(tmp_path, text_data, tiny_bert_dir, output_dir, num_train_epochs=1),
                    accelerate_config=TWO_PROCESS_CONFIG)
    assert "Effective global batch size: 32 (2 processes)" in result.stdout
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == int(np.ceil(400 / 32))
    assert results(output_dir)["test"]["num_samples"] == 100


# --- push: checked before any work, uploaded once at the end ---------------------------------------------------


def test_push_to_hub_uploads_the_finished_run(tmp_path, text_data, tiny_bert_dir, fake_hub):
    events = fake_hub
    output_dir = tmp_path / "topics-bert"
    run_in_process(write_config(tmp_path, text_data, tiny_bert_dir, output_dir, max_steps=2, save_strategy="no",
                                eval_strategy="no"), "--push_to_hub", "true")
    assert events[:2] == ["whoami", ("create_repo", "alice/topics-bert")]
    _, repo_id, files = events[2]
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "report.md", "mistakes.md"} <= set(files)
    assert "alice/topics-bert" in (output_dir / "README.md").read_text()  # the card's usage names the repo


def test_push_to_hub_offline_fails_before_any_work(tmp_path, text_data, tiny_bert_dir, monkeypatch):
    from hf_ft.hub import HubPushError

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    output_dir = tmp_path / "never"
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE=1"):
        run_in_process(write_config(tmp_path, text_data, tiny_bert_dir, output_dir), "--push_to_hub", "true")
    assert not output_dir.exists()


# --- bad input: one line, before any model is loaded ---------------------------------------------------------


def _bad_rows(case: str) -> tuple[dict[str, list[dict]], dict, str]:
    good = [{"text": f"the {w} was there", "label": lab} for lab in ("x", "y") for w in ("cat", "dog", "sun")]
    if case == "missing_text_column":
        return {"train": good}, {"text_column_names": "body"}, (
            "--text_column_names: no column ['body']; the data has columns ['text', 'label']")
    if case == "undetectable_text_column":
        rows = [{"a": r["text"], "b": r["text"], "label": r["label"]} for r in good]
        return {"train": rows}, {}, "Cannot tell which column holds the text; set --text_column_names to one of ['a', 'b', 'label']"
    if case == "empty_texts":
        rows = [dict(r) for r in good]
        rows[2]["text"], rows[4]["text"] = "", "   "
        return {"train": rows}, {}, "2 rows of the train split have an empty text in column `text` (the first is row 2)"
    if case == "unseen_label":
        return {"train": good, "validation": good + [{"text": "a cat", "label": "zebra"}]}, {}, (
            "Labels ['zebra'] appear in the validation split but never in train")
    if case == "mixed_multi_label":  # json: a list in some rows, a single label in others
        rows = [{"text": r["text"], "label": [r["label"]] if i % 2 else r["label"]} for i, r in enumerate(good)]
        return {"train": rows}, {}, (
            "Column `label` of the train split mixes lists of labels and single labels (row 1: ['x'], row 0: 'x')")
    if case == "mixed_types_in_lists":
        rows = [{"text": r["text"], "label": [r["label"], 1] if i == 3 else [r["label"]]} for i, r in enumerate(good)]
        return {"train": rows}, {}, "Column `label` of the train split mixes label types in its lists (row 3: ['y', 1])"
    if case == "text_labels_as_regression":
        return {"train": good}, {"problem_type": "regression"}, (
            "--problem_type regression needs one number per text, but column `label` holds")
    if case == "class_weight_for_multi_label":
        return {"train": good}, {"problem_type": "multi_label_classification", "class_weight": "balanced"}, (
            "--class_weight needs one class per text; column `label` makes this a multi_label_classification task")
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing_text_column", "undetectable_text_column", "empty_texts", "unseen_label",
                                  "mixed_multi_label", "mixed_types_in_lists", "text_labels_as_regression",
                                  "class_weight_for_multi_label"])
def test_bad_input_fails_before_the_model_with_one_message(tmp_path, tiny_bert_dir, case):
    from hf_ft.errors import InputError

    splits, overrides, message = _bad_rows(case)
    write = write_jsonl if case.startswith("mixed") else write_csv
    files = {split: write(tmp_path / f"{split}.{'jsonl' if case.startswith('mixed') else 'csv'}", rows)
             for split, rows in splits.items()}
    config = write_config(tmp_path, {"train": files["train"], "validation": files.get("validation"), "test": None},
                          tiny_bert_dir, tmp_path / "out", **overrides)
    with pytest.raises(InputError) as error:
        run_in_process(config)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_label_names_differing_between_parquet_splits_are_refused(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """datasets would silently give validation train's names; the recipe's command line refuses, in one line."""
    from datasets import ClassLabel, Dataset, Features, Value

    for split, names in (("train", ["a", "b"]), ("validation", ["b", "c"])):
        features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
        Dataset.from_dict({"text": ["a cat", "a dog", "the sun", "some rain"], "label": [0, 1, 0, 1]},
                          features=features).to_parquet(tmp_path / f"{split}.parquet")
    data = {"train": tmp_path / "train.parquet", "validation": tmp_path / "validation.parquet", "test": None}
    config = write_config(tmp_path, data, tiny_bert_dir, tmp_path / "out")
    monkeypatch.setattr(sys, "argv", [str(RECIPE), "--config", str(config)])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(RECIPE), run_name="__main__")
    stderr = capsys.readouterr().err
    assert exit_status.value.code == 2
    assert "error: The validation split's label names differ from train's in column `label`" in stderr
    assert "['b', 'c']" in stderr and "Traceback" not in stderr
