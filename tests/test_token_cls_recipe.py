"""The token recipe end to end, run the way users run it: `accelerate launch recipes/token_cls.py --config ...`.

A tiny BERT (hidden 32, 2 layers, built from BertConfig) with a WordPiece tokenizer over the test vocabulary, on
CoNLL-style files whose sentences hold person, location and organisation names (3 entity types, IOB2) among filler
words. Some names are split into several sub-tokens (`mart ##ina`), some span two words (`new york`).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml

from . import recipe_runs
from .conftest import REPO
from .recipe_runs import TWO_PROCESS_CONFIG, offline_env, results, same_weights

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "token_cls.py"
launch = partial(recipe_runs.launch, RECIPE)
run_in_process = partial(recipe_runs.run_in_process, RECIPE)
kill_after = partial(recipe_runs.kill_after, RECIPE)
ENTITIES = {  # type -> names; a name is one or more words
    "PER": [["anna"], ["martina"], ["paul"], ["jonas"], ["ada", "lovelace"]],
    "LOC": [["paris"], ["berlin"], ["new", "york"], ["lima"], ["oslo"]],
    "ORG": [["acme"], ["unesco"], ["red", "cross"], ["fifa"], ["nasa"]],
}
# `new`, `red` and `cross` are also filler words: only the context tells `new york` or `red cross` apart.
FILLER = ["the", "a", "we", "saw", "met", "in", "at", "from", "with", "visited", "today", "and", "near", "for", "said",
          "new", "red", "cross"]
# `martina`, `unesco` and `lovelace` are not in the vocabulary: they split into sub-tokens.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, "anna", "paul", "jonas", "ada", "paris", "berlin",
         "york", "lima", "oslo", "acme", "fifa", "nasa", "mart", "##ina", "un", "##esco", "love", "##lace"]


def sentence(rng: random.Random, length: int = 0) -> tuple[list[str], list[str]]:
    """Filler words with one to three names, tagged IOB2."""
    words, tags = [], []
    for _ in range(rng.randint(1, 3)):
        for _ in range(rng.randint(1, 3)):
            words.append(rng.choice(FILLER))
            tags.append("O")
        kind = rng.choice(list(ENTITIES))
        name = rng.choice(ENTITIES[kind])
        words += name
        tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
    while len(words) < length:
        words.append(rng.choice(FILLER))
        tags.append("O")
    return words, tags


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]], docstart: bool = True) -> Path:
    """CoNLL-2003's layout: word POS chunk tag, -DOCSTART- lines, a blank line between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines += [f"{word} NN I-NP {tag}" for word, tag in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def conll_splits(root: Path, sizes=(("train", 300), ("validation", 60), ("test", 60)), seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    return {split: write_conll(root / f"{split}.conll", [sentence(rng) for _ in range(size)]) for split, size in sizes}


def sentences(conll_file: Path) -> list[tuple[list[str], list[str]]]:
    from hf_ft.tasks.token_classification import read_conll

    data = read_conll(conll_file)
    return list(zip(data["tokens"], data["tags"]))


def write_tiny_bert(path: Path) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer over VOCAB, saved like a Hub checkpoint (no head)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    # `vocab_file=` is silently ignored in transformers 5 (a 5-token vocabulary: every word [UNK]); `vocab=` reads it
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    assert len(tokenizer) == len(VOCAB)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("ckpt") / "tiny-bert")


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> dict[str, Path]:
    return conll_splits(tmp_path_factory.mktemp("ner_data"))


def write_config(tmp_path: Path, data: dict[str, Path], checkpoint: Path, output_dir: Path, **overrides) -> Path:
    config = {
        "model_name_or_path": str(checkpoint),
        **{f"{split}_file": str(path) for split, path in data.items() if path},
        "max_seq_length": 32,
        "output_dir": str(output_dir),
        "num_train_epochs": 4,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": 5.0e-3,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_steps": 5,
        "seed": 7,
        "drop_rate": 0.1,  # dropout draws from the training process's generator, so a shifted resume would show
        "dataloader_num_workers": 0,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
    }
    config.update(overrides)
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def word_tags_from_pipeline(model_dir: Path, conll_file: Path, aggregation_strategy: str) -> tuple[list, list]:
    """(gold, predicted) IOB2 tags per word of `conll_file`, the prediction from `pipeline("token-classification")`."""
    from transformers import pipeline

    from hf_ft.tasks.token_classification import read_conll

    data = read_conll(conll_file)
    tagger = pipeline("token-classification", model=str(model_dir), aggregation_strategy=aggregation_strategy,
                      device="cpu")
    outputs = tagger(list(data["tokens"]), is_split_into_words=True, batch_size=32)
    predicted = []
    for words, entities in zip(data["tokens"], outputs):
        starts = np.cumsum([0] + [len(word) + 1 for word in words[:-1]])  # the pipeline joins words with " "
        tags = ["O"] * len(words)
        for entity in entities:
            inside = [i for i, start in enumerate(starts) if entity["start"] <= start < entity["end"]]
            for position, i in enumerate(inside):
                tags[i] = ("B-" if position == 0 else "I-") + entity["entity_group"]
        predicted.append(tags)
    return list(data["tags"]), predicted


def seqeval_f1(gold: list, predicted: list) -> float:
    from seqeval.metrics import f1_score

    return f1_score(gold, predicted, zero_division=0)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, ner_data, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("ner_run")
    output_dir = tmp / "out"
    result = launch(write_config(tmp, ner_data, tiny_bert_dir, output_dir))
    return output_dir, result


def test_run_learns_reports_and_its_card_matches_the_pipeline(ner_run, ner_data):
    from huggingface_hub import ModelCard

    output_dir, result = ner_run
    test = results(output_dir)["test"]
    assert test["f1"] > test["majority_baseline_f1"] + 0.5 and test["majority_baseline_f1"] == 0.0
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.2
    assert "train: 0 of 300 sentences truncated to 32 tokens" in result.stdout
    words = sum(len(words) for words, _ in sentences(ner_data["test"]))
    assert test["num_words"] == words and test["num_samples"] == 60  # scored per word, not per sub-token
    for name in ("report.md", "README.md", "args.yaml", "test_per_entity.csv", "test_per_class.csv",
                 "test_confusion_matrix.csv", "test_confusion_matrix.png", "training_curves.png", "model.safetensors",
                 "tokenizer.json"):
        assert (output_dir / name).is_file(), name
    report = (output_dir / "report.md").read_text()
    assert f"**Test entity F1 {test['f1']:.4f}**" in report and "## Entity types (test)" in report
    config = json.loads((output_dir / "config.json").read_text())
    assert list(config["id2label"].values()) == ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"]

    card = {(r.dataset_split, r.metric_type): r.metric_value for r in ModelCard.load(output_dir / "README.md").data.eval_results}
    # The card's test F1 is what pipeline() gives, word by word (`first`: each word's first sub-token, as scored).
    gold, predicted = word_tags_from_pipeline(output_dir, ner_data["test"], "first")
    assert seqeval_f1(gold, predicted) == pytest.approx(card[("test", "f1")], abs=1e-12) == test["f1"]
    # `simple` also tags continuation sub-tokens, which training never labelled: a working tagger still
    _, simple = word_tags_from_pipeline(output_dir, ner_data["test"], "simple")
    assert seqeval_f1(gold, simple) > 0.5


def test_predict_tags_words_as_the_report_scored_them(ner_run, ner_data, tmp_path):
    """`hf-ft predict` on the test CoNLL file: the report's entity F1 and tag accuracy, and pipeline()'s entities
    (`first`: each word's first sub-token). On raw text (a JSONL `text` column, split at spaces), the same tags for the same words."""
    output_dir, _ = ner_run
    test = results(output_dir)["test"]
    labelled = recipe_runs.predict(output_dir, ner_data["test"], tmp_path / "tags.jsonl", batch_size=9)
    for key in ("precision", "recall", "f1", "accuracy"):
        assert labelled.metrics[key] == pytest.approx(test[key], abs=1e-12), key
    gold, predicted = word_tags_from_pipeline(output_dir, ner_data["test"], "first")
    tags = [row["tags"] for row in labelled.rows]  # the model's own tags (the pipeline renames a leading I- to B-)
    assert [row["reference"] for row in labelled.rows] == gold
    assert seqeval_f1(gold, tags) == seqeval_f1(gold, predicted) == test["f1"]
    tagged = next(row for row in labelled.rows if "B-PER" in row["tags"])
    person = tagged["tags"].index("B-PER")
    assert any(entity.startswith(f"PER: {tagged['tokens'][person]}") for entity in tagged["entities"])

    raw = tmp_path / "tweets.jsonl"
    raw.write_text("".join(json.dumps({"text": " ".join(words)}) + "\n" for words, _ in sentences(ner_data["test"])[:12]))
    unlabelled = recipe_runs.predict(output_dir, raw, tmp_path / "raw.csv")
    assert unlabelled.metrics is None
    assert [row["tags"] for row in unlabelled.rows] == tags[:12]


def test_killed_run_resumes_to_the_same_bits(tmp_path, ner_data, tiny_bert_dir, ner_run):
    unbroken, _ = ner_run
    output_dir = tmp_path / "out"
    config = write_config(tmp_path, ner_data, tiny_bert_dir, output_dir)
    kill_after(config, output_dir / "checkpoint-19")  # 300 / 16 = 19 steps an epoch
    result = launch(config)
    assert "Resuming the run" in result.stdout
    assert results(output_dir) == results(unbroken)
    assert same_weights(output_dir / "model.safetensors", unbroken / "model.safetensors")


def test_lora_adapter_reloads_and_its_merged_model_tags_with_pipeline(tmp_path, ner_data, tiny_bert_dir):
    import torch
    from transformers import AutoTokenizer

    from hf_ft.peft import load_adapter_model

    output_dir = tmp_path / "lora"
    run_in_process(write_config(tmp_path, ner_data, tiny_bert_dir, output_dir, peft_method="lora", lora_r=4,
                                merge_adapter=True, learning_rate=1.0e-2, num_train_epochs=3, save_strategy="no"))
    assert (output_dir / "adapter_model.safetensors").is_file() and not (output_dir / "model.safetensors").exists()
    assert json.loads((output_dir / "adapter_config.json").read_text())["task_type"] == "TOKEN_CLS"
    test = results(output_dir)["test"]
    assert test["f1"] > test["majority_baseline_f1"] + 0.3
    gold, predicted = word_tags_from_pipeline(output_dir / "merged", ner_data["test"], "first")
    assert seqeval_f1(gold, predicted) == pytest.approx(test["f1"], abs=0.02)
    from_adapter = recipe_runs.predict(output_dir, ner_data["test"], tmp_path / "adapter.jsonl")  # base + adapter
    assert from_adapter.metrics["f1"] == pytest.approx(test["f1"], abs=1e-12)

    adapter = load_adapter_model(None, output_dir).eval()  # base and tags from the folder
    from transformers import AutoModelForTokenClassification

    merged = AutoModelForTokenClassification.from_pretrained(output_dir / "merged").eval()
    batch = AutoTokenizer.from_pretrained(output_dir)([["anna", "met", "martina", "in", "new", "york"]],
                                                      is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(adapter(**batch).logits, merged(**batch).logits, atol=1e-4, rtol=1e-4)


def test_lora_search_scores_trials_by_entity_f1_and_reruns_the_best(tmp_path, ner_data, tiny_bert_dir):
    """A search over a PEFT argument (lora_r) and the learning rate, scored by seqeval's entity F1."""
    output_dir = tmp_path / "search"
    space = {"learning_rate": {"type": "float", "low": 3.0e-3, "high": 2.0e-2, "log": True},
             "lora_r": {"type": "int", "low": 2, "high": 8, "step": 2}}
    config = write_config(tmp_path, ner_data, tiny_bert_dir, output_dir, peft_method="lora", num_train_epochs=3,
                          n_trials=2, search_space=space)
    best = run_in_process(config)
    recipe_runs.check_search_reruns(RECIPE, output_dir, best, "f1")
    assert json.loads((output_dir / "best" / "adapter_config.json").read_text())["r"] == best["params"]["lora_r"]


def test_continuing_with_a_new_entity_type_keeps_the_old_tags_and_measures_forgetting(tmp_path, ner_data,
                                                                                      tiny_bert_dir):
    """A tagger of PER and LOC continued on data that also tags ORG: the old tags keep their ids, and the report
    scores the new model on the first run's test sentences, as predict scores them."""
    without_org = {split: write_conll(tmp_path / f"{split}_per_loc.conll", [
        (words, ["O" if tag.endswith("ORG") else tag for tag in tags]) for words, tags in sentences(path)
    ]) for split, path in ner_data.items()}
    first = tmp_path / "per_loc"
    run_in_process(write_config(tmp_path, without_org, tiny_bert_dir, first, save_strategy="no"))
    second = tmp_path / "with_org"
    run_in_process(write_config(tmp_path, ner_data, first, second, num_train_epochs=1, save_strategy="no"))
    old_tags = list(json.loads((first / "config.json").read_text())["id2label"].values())
    tags = list(json.loads((second / "config.json").read_text())["id2label"].values())
    assert tags[:len(old_tags)] == old_tags and sorted(tags[len(old_tags):]) == ["B-ORG", "I-ORG"]
    before, after = results(first)["test"], results(second / "forgetting")["test"]
    predicted = recipe_runs.predict(second, without_org["test"], tmp_path / "old.jsonl").metrics
    assert predicted["f1"] == pytest.approx(after["f1"], abs=1e-9)
    section = (second / "report.md").read_text().split("## Forgetting: the earlier run's test set")[1]
    assert f"| {before['f1']:.4f} | {after['f1']:.4f} |" in section


def test_a_checkpoint_tagging_the_same_names_in_another_order_keeps_its_rows(tmp_path, ner_data, ner_run):
    """The trained run's model with its tags (and head rows) permuted: fine-tuning it on the same data keeps its
    order and scores as before. A positional mapping would have scrambled every tag."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    trained, _ = ner_run
    model = AutoModelForTokenClassification.from_pretrained(trained)
    order = [6, 5, 4, 3, 2, 1, 0]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order])
        model.classifier.bias.copy_(model.classifier.bias[order])
    names = [model.config.id2label[i] for i in order]
    model.config.id2label, model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    checkpoint = tmp_path / "permuted"
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(trained).save_pretrained(checkpoint)

    output_dir = tmp_path / "continued"
    run_in_process(write_config(tmp_path, ner_data, checkpoint, output_dir, max_steps=1, learning_rate=1.0e-12,
                                weight_decay=0.0, drop_rate=None, save_strategy="no", eval_strategy="no"))
    assert list(json.loads((output_dir / "config.json").read_text())["id2label"].values()) == names
    assert results(output_dir)["test"]["f1"] == pytest.approx(results(trained)["test"]["f1"])


def test_linear_probe_trains_the_head_only(tmp_path, ner_data, tiny_bert_dir):
    from safetensors.torch import load_file

    output_dir = tmp_path / "probe"
    run_in_process(write_config(tmp_path, ner_data, tiny_bert_dir, output_dir, trainable_blocks=0, max_steps=3,
                                save_strategy="no", eval_strategy="no"))
    base, after = load_file(tiny_bert_dir / "model.safetensors"), load_file(output_dir / "model.safetensors")
    encoder = [key for key in after if key.startswith("bert.")]
    assert encoder and all((after[key] == base[key.removeprefix("bert.")]).all() for key in encoder)
    assert "classifier.weight" in after


def test_push_uploads_the_finished_run_compared_with_an_earlier_one(tmp_path, ner_data, tiny_bert_dir, ner_run,
                                                                   fake_hub):
    earlier, _ = ner_run
    output_dir = tmp_path / "tweets-bert"
    run_in_process(write_config(tmp_path, ner_data, tiny_bert_dir, output_dir, max_steps=2, save_strategy="no",
                                eval_strategy="no", compare_with=[str(earlier)]), "--push_to_hub", "true")
    assert fake_hub[:2] == ["whoami", ("create_repo", "alice/tweets-bert")]
    _, repo_id, files = fake_hub[2]
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "report.md"} <= set(files)
    assert "alice/tweets-bert" in (output_dir / "README.md").read_text()  # the card's usage names the repo
    comparison = (output_dir / "report.md").read_text().split("## Compared with earlier runs", 1)[1]
    assert "**this run**" in comparison and f"`{earlier}`" in comparison


def test_two_real_cpu_processes_and_a_linear_probe_baseline_per_token(tmp_path, ner_data, tiny_bert_dir):
    """Two processes, each computing its share of the frozen token features (padded to one width, gathered once
    each) for the linear probe, which the main one fits and scores per word like the model."""
    output_dir = tmp_path / "ddp"
    result = launch(write_config(tmp_path, ner_data, tiny_bert_dir, output_dir, num_train_epochs=1,
                                 linear_probe_baseline=True), accelerate_config=TWO_PROCESS_CONFIG)
    assert "Effective global batch size: 32 (2 processes)" in result.stdout
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == int(np.ceil(300 / 32))
    assert results(output_dir)["test"]["num_samples"] == 60  # every sentence once, none padded in by DDP
    probe = results(output_dir / "linear_probe")["test"]
    assert probe["num_samples"] == 60 and probe["accuracy"] > probe["majority_baseline_accuracy"]
    probed = [json.loads(line) for line in (output_dir / "linear_probe" / "test_predictions.jsonl").open()]
    tuned = [json.loads(line) for line in (output_dir / "test_predictions.jsonl").open()]
    assert [r["id"] for r in probed] == [r["id"] for r in tuned]
    assert [len(r["prediction"].split()) for r in probed] == [len(r["reference"].split()) for r in probed]  # per word
    section = (output_dir / "report.md").read_text().split("## What fine-tuning added: a linear probe baseline")[1]
    assert "| Entity F1 |" in section.split("## ")[0]


def test_a_slow_only_tokenizer_is_one_line_before_any_model_loads(tmp_path, ner_data):
    from transformers import CanineConfig, CanineTokenizer

    checkpoint = tmp_path / "canine"
    CanineConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(checkpoint)
    CanineTokenizer().save_pretrained(checkpoint)  # no weights: the run must stop before it needs them
    config = write_config(tmp_path, ner_data, checkpoint, tmp_path / "out")
    result = subprocess.run([sys.executable, str(RECIPE), "--config", str(config)], capture_output=True, text=True,
                            cwd=REPO, env=offline_env(), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {checkpoint} has only a slow tokenizer (CanineTokenizer); token classification needs a fast one")
    assert "Traceback" not in result.stderr
