"""Token classification (NER, chunking, POS and other word tagging): data arguments and data, model + fast tokenizer,
sub-word alignment, Trainer, and the seqeval report.

    data = load_data(data_args, seed=..., token=..., cache_dir=...)           # words and tags, checked; tag names
    model, tokenizer, label_names = load_model(model_args, data.label_names)   # tag order matched by name
    max_seq_length = set_max_seq_length(data_args.max_seq_length, tokenizer, model.config)
    splits = tokenize(data, tokenizer, label_names, max_seq_length, ...)      # sub-words aligned with word_ids()
    trainer = token_trainer(model, tokenizer, splits, training_args, label_names, ...)
    task_report = evaluate(output_dir, predictions, data, label_names, ...)   # for runs.finish

Argument names are those of transformers' `run_ner.py` (`text_column_name`, `label_column_name`, `task_name`,
`max_seq_length`, `label_all_tokens`, `return_entity_level_metrics`, `pad_to_max_length`).

Evaluation is always per word: only the first sub-token of each word carries a label in the validation and test
splits, whatever `label_all_tokens` does for training. Scoring every sub-token would count a long word's entity
several times and inflate seqeval's numbers (transformers#14043). Words the model never sees (cut off by
`max_seq_length`) are not scored; their number is logged and reported.

Tags with a scheme prefix (`B-PER`, `I-PER`, `E-PER`, `S-PER`, `O`: IOB1, IOB2, IOE, BIOES) are scored by seqeval per
entity; plain tags (`NOUN`, `VERB`: POS tags) are scored as one-word entities, so their F1 is the micro F1 over the
tags other than `O`.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import seqeval.scheme
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from seqeval.metrics.sequence_labeling import get_entities
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)

from .. import classification, runs
from ..bootstrap import example_id
from .. import markdown as md
from ..args import ConfigError, ModelArguments
from ..checkpoints import StrictResumeTrainer
from ..data import sources
from ..errors import InputError
from ..imbalance import class_weighted_loss
from ..text import TokenizedDataArguments
from ..hub import CardFacts
from ..metrics import load as load_metric
from ..models import load_for_labels, offline_hint
from ..peft import load_trained
from ..predict import Inputs, PredictArguments, Predictions, Predictor, load_input, outputs_of
from ..report import TaskReport

logger = logging.getLogger("hf_ft")

# The `pipeline()` task name, the model card's `pipeline_tag`; PEFT's task type for this head.
TASK = "token-classification"
SEARCH_METRIC = "f1"  # entity micro F1 (seqeval's), what a hyperparameter search scores trials by
PEFT_TASK_TYPE = "TOKEN_CLS"
# Tried in order when --text_column_name / --label_column_name are unset (`<task_name>_tags` first, as run_ner.py).
TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("tags", "labels")
CONLL_SUFFIXES = (".conll", ".txt")
TABLE_SUFFIXES = (".json", ".jsonl", ".parquet")
IGNORE_INDEX = -100  # the label of special tokens, padding and unscored sub-tokens: the loss and metrics skip it
# seqeval's strict schemes. Default (unset) scoring follows conlleval: an I-X after O still starts an entity.
SEQEVAL_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")
# run_ner.py's list: byte-level BPE tokenizers need add_prefix_space=True to take words (is_split_into_words).
ADD_PREFIX_SPACE_MODEL_TYPES = ("bloom", "gpt2", "roberta", "deberta")
_PREFIXES = {"B", "I", "E", "S", "L", "U"}
_BILOU_AS_BIOES = {"L": "E", "U": "S"}  # seqeval's default rules know B/I/E/S; BILOU is the same scheme renamed
_STRING_TAGS = Features({"tokens": List(Value("string")), "tags": List(Value("string"))})
PER_ENTITY_FILE = "{split}_per_entity.csv"


@dataclass
class TokenDataArguments(TokenizedDataArguments):
    """Word-level tagging data: one row per sentence, a list of words and a list of tags (one per word). Words cut off
    by `max_seq_length` are counted in the log and the report, and not scored."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "A training file: CoNLL-style text (.conll/.txt: `word ... tag` per line, tag last, a blank line "
            "between sentences, -DOCSTART- lines skipped) or json/jsonl/parquet with a words and a tags column."
        },
    )
    task_name: str = field(
        default="ner",
        metadata={"help": "The tagging task (ner, pos, chunk): picks the `<task_name>_tags` column when it exists."},
    )
    text_column_name: str | None = field(
        default=None,
        metadata={"help": f"The column of each sentence's words (a list of str); found automatically: {TOKEN_COLUMNS}"},
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The column of each sentence's tags, one per word (List(ClassLabel), or strings); found "
            f"automatically: `<task_name>_tags`, then {TAG_COLUMNS}."
        },
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Train on every sub-token of a word (continuations of B-X are labelled I-X) instead of the first "
            "only. Evaluation always scores the first sub-token of each word."
        },
    )
    return_entity_level_metrics: bool = field(
        default=False,
        metadata={"help": "Also return each entity type's precision/recall/F1 as metrics (`PER_f1`, ...)."},
    )
    seqeval_scheme: str | None = field(
        default=None,
        metadata={
            "help": f"Score strictly under this tag scheme ({', '.join(SEQEVAL_SCHEMES)}; seqeval mode='strict'): "
            "only well-formed entities count. Unset: conlleval's rules (an I-X after O starts an entity)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.class_balanced_sampling:
            raise ConfigError(
                "--class_balanced_sampling draws sentences, and a sentence holds many tags: it cannot balance tags. "
                "Use --class_weight balanced, which weighs each tag in the loss."
            )
        files = {split: getattr(self, f"{split}_file") for split in ("train", "validation", "test")}
        files = {split: path for split, path in files.items() if path}
        for split, path in files.items():
            if not path.lower().endswith(CONLL_SUFFIXES + TABLE_SUFFIXES):
                raise ConfigError(
                    f"--{split}_file {path}: tagging data is .conll/.txt (CoNLL columns) or json/jsonl/parquet with "
                    "a list of words and a list of tags per row (csv cannot hold lists)."
                )
        if len({path.lower().endswith(CONLL_SUFFIXES) for path in files.values()}) > 1:
            raise ConfigError(f"Give every split in one format (all CoNLL text, or all tables), got {files}.")
        if self.max_seq_length is not None and self.max_seq_length <= 2:
            raise ConfigError(f"--max_seq_length must be > 2 (room for the special tokens), got {self.max_seq_length}")
        if self.seqeval_scheme is not None and self.seqeval_scheme not in SEQEVAL_SCHEMES:
            raise ConfigError(f"--seqeval_scheme must be one of {list(SEQEVAL_SCHEMES)}, got {self.seqeval_scheme!r}")


@dataclass
class TokenData:
    """Checked splits with columns `tokens` and `tags` (lists of str, one tag per word), and the tag names."""

    splits: DatasetDict
    label_names: list[str]


# --- data ---------------------------------------------------------------------------------------------------


def read_conll(path: str | Path) -> Dataset:
    """Read a CoNLL-style file into a Dataset with `tokens` and `tags` (lists of str).

    One word per line, whitespace-separated columns, the word first and its tag last (CoNLL-2003's POS and chunk
    columns in between are ignored); a blank line ends a sentence; `-DOCSTART-` lines are skipped.

    Raises:
        InputError: a line with one column (no tag), by file and line number; a file that is not UTF-8 or holds no
            sentence.
    """
    rows, words, tags = {"tokens": [], "tags": []}, [], []

    def end_sentence():
        if words:
            rows["tokens"].append(list(words))
            rows["tags"].append(list(tags))
            words.clear()
            tags.clear()

    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                columns = line.split()
                if not columns or columns[0] == "-DOCSTART-":
                    end_sentence()
                elif len(columns) == 1:
                    raise InputError(f"{path} line {number}: {line.strip()!r} has no tag; lines are `word ... tag`.")
                else:
                    words.append(columns[0])
                    tags.append(columns[-1])
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8.") from None
    end_sentence()
    if not rows["tokens"]:
        raise InputError(f"{path} holds no sentence (`word ... tag` lines, a blank line between sentences).")
    return Dataset.from_dict(rows, features=_STRING_TAGS)


def load_data(
    data_args: TokenDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> TokenData:
    """Load the splits, check every row, hold out validation if there is none, subsample; nothing tokenized yet.

    Tag names are those of a `List(ClassLabel)` feature (its order), else the tags seen in train, `O` first.

    Raises:
        InputError: a missing column (the real ones are listed); a row whose words and tags differ in length, that
            has no words or an empty word, or integer tags without names (by split and row); ClassLabel names that
            differ between splits; tags of validation/test never seen in train; a train split with one tag only.
    """
    raw = _load_raw(data_args, token=token, cache_dir=cache_dir)
    words_column = _find_column(raw["train"], data_args.text_column_name, TOKEN_COLUMNS, "text_column_name")
    candidates = (f"{data_args.task_name}_tags", *TAG_COLUMNS)
    tags_column = _find_column(raw["train"], data_args.label_column_name, candidates, "label_column_name")
    if words_column == tags_column:
        raise InputError(f"Column `{words_column}` cannot be both words and tags; set --text_column_name and "
                         f"--label_column_name to two of {raw['train'].column_names}.")
    class_names = _class_label_names(raw, tags_column, data_args)
    splits = {}
    for name, split in raw.items():
        missing = [c for c in (words_column, tags_column) if c not in split.column_names]
        if missing:
            raise InputError(f"The {name} split has no column {missing}; it has {split.column_names}.")
        words, tags = list(split[words_column]), list(split[tags_column])
        splits[name] = Dataset.from_dict(
            {"tokens": words, "tags": _checked_tags(name, words, tags, class_names)}, features=_STRING_TAGS
        )
    if "validation" not in splits:
        held_out = splits["train"].train_test_split(test_size=data_args.train_val_split, seed=seed)
        splits["train"], splits["validation"] = held_out["train"], held_out["test"]
        logger.info("No validation split: held out %.0f%% of train (seed %d)", 100 * data_args.train_val_split, seed)
    splits = sources.cap_samples(splits, data_args, seed)
    seen = Counter(tag for row in splits["train"]["tags"] for tag in row)
    label_names = class_names or sorted(seen, key=lambda tag: (tag != "O", tag))
    _check_tag_coverage(splits, seen, subsampled=data_args.max_train_samples is not None)
    return TokenData(DatasetDict(splits), label_names)


def _load_raw(data_args: TokenDataArguments, *, token: str | None, cache_dir: str | None) -> DatasetDict:
    if data_args.train_file and data_args.train_file.lower().endswith(CONLL_SUFFIXES):
        paths = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
        paths = {split: path for split, path in paths.items() if path}
        for split, path in paths.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"--{split}_file {path} does not exist (as a file).")
        return DatasetDict({split: read_conll(path) for split, path in paths.items()})
    return sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir)


def _find_column(train: Dataset, requested: str | None, candidates: Sequence[str], flag: str) -> str:
    columns = train.column_names
    if requested is not None:
        if requested not in columns:
            raise InputError(f"--{flag} {requested}: no such column; the data has columns {columns}.")
        return requested
    found = next((name for name in candidates if name in columns), None)
    if found is None:
        what = "words" if flag == "text_column_name" else "tags"
        raise InputError(f"No column of {what} ({', '.join(candidates)}); the data has columns {columns}. Set --{flag}")
    return found


def _class_label_names(raw: DatasetDict, column: str, data_args: TokenDataArguments) -> list[str] | None:
    """The names of a `List(ClassLabel)` tag column, the same in every split (and every parquet file) or refused.

    datasets 5.2 gives every split the first parquet file's ClassLabel, so the files' own names are read too: a
    validation file saved with other names would otherwise be read with train's, its ids meaning other tags.
    """
    names = {}
    for split, dataset in raw.items():
        inner = getattr(dataset.features.get(column), "feature", None)
        names[split] = list(inner.names) if isinstance(inner, ClassLabel) else None
        path = getattr(data_args, f"{split}_file", None)
        if path and path.lower().endswith(".parquet"):
            inner = (sources.saved_parquet_feature(path, column) or {}).get("feature") or {}
            names[split] = inner.get("names") if inner.get("_type") == "ClassLabel" else None
    train = names.get("train")
    for split, found in names.items():
        if found != train:
            raise InputError(
                f"The tag names of the {split} split differ from train's in column `{column}`: {found} vs {train}. "
                "Save every split with the same ClassLabel names (or plain string tags)."
            )
    return train


def _checked_tags(split: str, words: list, tags: list, class_names: list[str] | None) -> list[list[str]]:
    """Each row's tags as names, after checking the row: lists, words, one tag per word."""
    named = []
    empty_rows = [index for index, row in enumerate(words) if isinstance(row, list) and not row]
    if empty_rows:
        raise InputError(
            f"{len(empty_rows)} rows of the {split} split have no words (the first is row {empty_rows[0]}); drop them."
        )
    for index, (row_words, row_tags) in enumerate(zip(words, tags)):
        if not isinstance(row_words, list) or not isinstance(row_tags, list):
            raise InputError(
                f"The {split} split, row {index}: words and tags must be lists (one tag per word), got "
                f"{type(row_words).__name__} and {type(row_tags).__name__}."
            )
        if len(row_words) != len(row_tags):
            raise InputError(
                f"The {split} split, row {index}: {len(row_words)} words but {len(row_tags)} tags; give every word "
                "one tag."
            )
        if not all(isinstance(word, str) and word.strip() for word in row_words):
            raise InputError(f"The {split} split, row {index}: every word must be a non-empty string: {row_words[:8]}")
        if any(tag is None for tag in row_tags):
            raise InputError(f"The {split} split, row {index}: a word has no tag (null); tag every word.")
        if row_tags and isinstance(row_tags[0], (int, np.integer)) and not isinstance(row_tags[0], bool):
            if class_names is None:
                raise InputError(
                    f"The {split} split holds integer tags without names (row {index}: {row_tags[:8]}). Use string "
                    "tags, or a List(ClassLabel(names=[...])) feature."
                )
            if not all(0 <= tag < len(class_names) for tag in row_tags):
                raise InputError(
                    f"The {split} split, row {index}: tag ids {row_tags[:8]} are not all ids of its {len(class_names)} "
                    "tag names (-1 marks hidden labels); use a split with labels."
                )
            row_tags = [class_names[tag] for tag in row_tags]
        named.append([str(tag) for tag in row_tags])
    return named


def _check_tag_coverage(splits: dict[str, Dataset], train_tags: Counter, *, subsampled: bool) -> None:
    if len(train_tags) < 2:
        raise InputError(f"The train split has only one tag ({list(train_tags)}); a tagger needs at least two.")
    for name, split in splits.items():
        unseen = sorted({tag for row in split["tags"] for tag in row} - set(train_tags))
        if unseen:
            hint = " (raise --max_train_samples)" if subsampled else ""
            raise InputError(
                f"Tags {unseen[:5]} appear in the {name} split but never in train{hint}, so the model cannot learn "
                f"them. Train tags are {sorted(train_tags)[:20]}."
            )


def is_plain(label_names: Sequence[str]) -> bool:
    """Tags without a scheme prefix (POS-style `NOUN`), scored as one-word entities; False for `B-X`/`I-X`/`O` tags."""
    return not all(tag == "O" or (tag[:1] in _PREFIXES and tag[1:2] == "-" and len(tag) > 2) for tag in label_names)


# --- model --------------------------------------------------------------------------------------------------


def load_model(
    model_args: ModelArguments, label_names: list[str], *, quantization_config=None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[str]]:
    """The checkpoint with a token-classification head for `label_names`, its fast tokenizer, and the tag order.

    Tags are matched with the checkpoint's BY NAME: a checkpoint already trained on the same tag names keeps its
    head and its order, which is returned (tokenize with it); other names get a new head, freshly initialised even
    when its shape happens to fit (its rows meant other tags).

    Raises:
        InputError: the checkpoint cannot be found offline, or has only a slow (Python) tokenizer: aligning tags to
            sub-words needs a fast tokenizer's `word_ids()`.
    """
    source = model_args.model_name_or_path
    hub_kwargs = model_args.hub_kwargs()
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        prefix_space = {"add_prefix_space": True} if config.model_type in ADD_PREFIX_SPACE_MODEL_TYPES else {}
        tokenizer = AutoTokenizer.from_pretrained(source, **prefix_space, **hub_kwargs)
    if not tokenizer.is_fast:
        raise InputError(
            f"{source} has only a slow tokenizer ({type(tokenizer).__name__}); token classification needs a fast one "
            "(word_ids() aligns the tags with sub-words). Pick a checkpoint whose tokenizer has a tokenizer.json."
        )
    model, label_names = load_for_labels(
        AutoModelForTokenClassification, config, label_names, model_args, quantization_config=quantization_config
    )
    return model, tokenizer, list(label_names)


# --- sub-word alignment -------------------------------------------------------------------------------------


def align_labels(
    word_ids: Sequence[int | None], word_labels: Sequence[int], *, label_all_tokens: bool, b_to_i: Mapping[int, int]
) -> list[int]:
    """Sub-token labels from word labels: a word's first sub-token gets its label, the others -100, or, with
    `label_all_tokens`, the word's label again (B-X as I-X, `b_to_i`); special and padding tokens -100."""
    labels, previous = [], None
    for word_id in word_ids:
        if word_id is None:
            labels.append(IGNORE_INDEX)
        elif word_id != previous:
            labels.append(word_labels[word_id])
        elif label_all_tokens:
            labels.append(b_to_i.get(word_labels[word_id], word_labels[word_id]))
        else:
            labels.append(IGNORE_INDEX)
        previous = word_id
    return labels


def tokenize(
    data: TokenData,
    tokenizer: PreTrainedTokenizerBase,
    label_names: list[str],
    max_seq_length: int,
    *,
    label_all_tokens: bool = False,
    pad_to_max_length: bool = False,
) -> DatasetDict:
    """Tokenized splits (`input_ids`, `attention_mask`[, `token_type_ids`], `labels` as ids of `label_names`).

    Training follows `label_all_tokens`; validation and test label each word's first sub-token only, so they are
    scored per word. Truncated sentences are counted in the log, per split, with the words cut off.
    """
    label2id = {name: i for i, name in enumerate(label_names)}
    b_to_i = {label2id[n]: label2id[f"I-{n[2:]}"] for n in label_names if n[:2] == "B-" and f"I-{n[2:]}" in label2id}
    splits = {}
    for name, split in data.splits.items():
        all_tokens = label_all_tokens and name == "train"

        def encode(batch, all_tokens=all_tokens):
            encoded = tokenizer(
                batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_seq_length,
                padding="max_length" if pad_to_max_length else False,
            )
            word_ids = [encoded.word_ids(i) for i in range(len(batch["tags"]))]
            encoded["labels"] = [
                align_labels(ids, [label2id[t] for t in tags], label_all_tokens=all_tokens, b_to_i=b_to_i)
                for ids, tags in zip(word_ids, batch["tags"])
            ]
            encoded["truncated"] = [bool(encoding.overflowing) for encoding in encoded.encodings]
            encoded["words_seen"] = [len(set(ids) - {None}) for ids in word_ids]
            return encoded

        tokenized = split.map(encode, batched=True, remove_columns=split.column_names, desc=f"tokenizing {name}")
        truncated = int(np.sum(tokenized["truncated"]))
        cut = sum(len(row) for row in split["tokens"]) - int(np.sum(tokenized["words_seen"]))
        logger.info(
            "%s: %d of %d sentences truncated to %d tokens (%.1f%%), %d words cut off%s",
            name, truncated, len(tokenized), max_seq_length, 100 * truncated / len(tokenized), cut,
            "" if name == "train" or not cut else " (not scored)",
        )
        splits[name] = tokenized.remove_columns(["truncated", "words_seen"])
    return DatasetDict(splits)


# --- metrics and trainer ------------------------------------------------------------------------------------


def word_predictions(
    logits: np.ndarray, label_ids: np.ndarray, num_labels: int, *, what: str = "predictions"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits of the scored words (W, C), their label ids (W,), each sentence's number of scored words (N,)).

    Scored words are the positions whose label is not -100: each word's first sub-token in validation and test.

    Raises:
        ValueError: the shapes do not fit (N, T, C) logits and (N, T) labels.
    """
    logits, label_ids = np.asarray(logits), np.asarray(label_ids)
    if logits.ndim != 3 or logits.shape[-1] != num_labels or label_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"{what}: token logits must have shape (sentences, tokens, {num_labels}) and labels (sentences, tokens), "
            f"got {logits.shape} and {label_ids.shape}."
        )
    scored = label_ids != IGNORE_INDEX
    return logits[scored], label_ids[scored], scored.sum(axis=1)


def seqeval_scores(
    predicted: np.ndarray,
    gold: np.ndarray,
    words_per_sentence: np.ndarray,
    label_names: Sequence[str],
    *,
    seqeval_scheme: str | None = None,
) -> dict:
    """seqeval's result (per entity type, and `overall_precision/recall/f1/accuracy`) on word-level tag ids.

    Plain tags are scored as one-word entities (`NOUN` as `B-NOUN`); BILOU tags under conlleval's rules as BIOES.
    """
    predictions, references = _seqeval_sentences(predicted, gold, words_per_sentence, label_names, seqeval_scheme)
    with warnings.catch_warnings():  # numpy's "mean of empty slice" for splits without entities
        warnings.simplefilter("ignore", RuntimeWarning)
        return load_metric("seqeval").compute(
            predictions=predictions, references=references, scheme=seqeval_scheme,
            mode="strict" if seqeval_scheme else None, zero_division=0,
        )


def _seqeval_sentences(
    predicted: np.ndarray, gold: np.ndarray, words_per_sentence: np.ndarray, label_names: Sequence[str],
    seqeval_scheme: str | None,
) -> tuple[list[list[str]], list[list[str]]]:
    """Word-level tag ids as seqeval's tag names, one list per sentence: (predictions, references)."""
    names = np.array([_as_seqeval_tag(name, label_names, seqeval_scheme) for name in label_names], dtype=object)
    bounds = np.cumsum(words_per_sentence)[:-1]
    return ([row.tolist() for row in np.split(names[ids], bounds)] for ids in (predicted, gold))


def sentence_records(
    predicted: np.ndarray,
    gold: np.ndarray,
    words_per_sentence: np.ndarray,
    label_names: Sequence[str],
    examples: tuple[Sequence[str], Sequence[str]],
    *,
    seqeval_scheme: str | None = None,
) -> list[dict]:
    """One record per sentence (`hf_ft.bootstrap`): its tags as seqeval reads them, and the counts its entity scores
    and tag accuracy add up from. seqeval scores a corpus from entities that never cross a sentence, so sums of
    these counts over any resample of sentences give exactly its micro precision, recall and F1."""
    predictions, references = _seqeval_sentences(predicted, gold, words_per_sentence, label_names, seqeval_scheme)
    scheme = getattr(seqeval.scheme, seqeval_scheme) if seqeval_scheme else None
    records = []
    for id_, text, guess, truth in zip(*examples, predictions, references):
        found, true = _entities(guess, scheme), _entities(truth, scheme)
        records.append(
            {
                "id": id_,
                "input": text,
                "reference": " ".join(truth),
                "prediction": " ".join(guess),
                "correct": guess == truth,
                "entities": [len(found & true), len(found), len(true)],
                "words": [sum(a == b for a, b in zip(guess, truth)), len(truth)],
            }
        )
    return records


def _entities(tags: list[str], scheme: type | None) -> set[tuple]:
    if scheme is None:
        return set(get_entities(tags))
    return {entity.to_tuple() for entity in seqeval.scheme.Entities([tags], scheme).entities[0]}


def sentence_scorer(records: Sequence[dict]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of `sentence_records`: seqeval's overall precision, recall, F1 (0 where undefined,
    as `zero_division=0`) and accuracy of a resample of sentences."""
    entities = np.array([record["entities"] for record in records], dtype=np.int64).reshape(-1, 3)
    words = np.array([record["words"] for record in records], dtype=np.int64).reshape(-1, 2)

    def statistic(indices: np.ndarray) -> dict[str, float]:
        matched, found, true = entities[indices].sum(axis=0)
        correct, total = words[indices].sum(axis=0)
        precision, recall = (matched / found if found else 0.0), (matched / true if true else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "accuracy": correct / total if total else 0.0}

    return statistic


def _as_seqeval_tag(name: str, label_names: Sequence[str], seqeval_scheme: str | None) -> str:
    if is_plain(label_names):
        return name if name == "O" else f"B-{name}"
    if seqeval_scheme is None and name[:1] in _BILOU_AS_BIOES:
        return _BILOU_AS_BIOES[name[:1]] + name[1:]
    return name


def tagging_metrics(scores: dict, *, entity_level: bool = False) -> dict[str, float]:
    """run_ner.py's metric names: `precision`, `recall`, `f1` (entities) and `accuracy` (words), plus
    `<type>_precision/recall/f1/number` with `entity_level`."""
    metrics = {key: float(scores[f"overall_{key}"]) for key in ("precision", "recall", "f1", "accuracy")}
    if entity_level:
        for entity_type, values in scores.items():
            if isinstance(values, dict):
                metrics.update({f"{entity_type}_{key}": value for key, value in values.items()})
    return metrics


def compute_metrics_for_tagging(
    label_names: list[str], *, seqeval_scheme: str | None = None, entity_level: bool = False
) -> Callable:
    """`Trainer(compute_metrics=...)`: entity precision/recall/F1 and tag accuracy over the scored words."""

    def compute_metrics(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        word_logits, word_labels, counts = word_predictions(logits, eval_prediction.label_ids, len(label_names))
        scores = seqeval_scores(word_logits.argmax(-1), word_labels, counts, label_names, seqeval_scheme=seqeval_scheme)
        return tagging_metrics(scores, entity_level=entity_level)

    return compute_metrics


def token_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: DatasetDict,
    training_args: TrainingArguments,
    label_names: list[str],
    *,
    seqeval_scheme: str | None = None,
    entity_level: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    class_weight: str | None = None,
) -> StrictResumeTrainer:
    """A `StrictResumeTrainer` with dynamic padding (labels padded with -100) and per-word entity metrics;
    `class_weight` weighs the loss by tag, from the trained sub-tokens' tags (`hf_ft.imbalance`)."""
    mixed = training_args.bf16 or training_args.fp16
    train_labels = np.concatenate([np.asarray(labels) for labels in splits["train"]["labels"]]) if class_weight else []
    return StrictResumeTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if mixed else None),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_for_tagging(label_names, seqeval_scheme=seqeval_scheme,
                                                    entity_level=entity_level),
        callbacks=list(callbacks),
        compute_loss_func=class_weighted_loss(
            class_weight, train_labels, len(label_names), label_smoothing=training_args.label_smoothing_factor
        ),
    )


def earlier_test(
    model_args: ModelArguments,
    data_args: TokenDataArguments,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
) -> runs.EarlierTest | None:
    """When the checkpoint is an hf_ft tagging run, its test split (loaded as its args.yaml says, tags as this model's
    ids, tokenized as this run's) to measure forgetting on, scored as this run scores; None for other checkpoints."""
    earlier = runs.load_earlier_data(model_args, TokenDataArguments, load_data, label_names)
    if earlier is None:
        return None
    test = TokenData(DatasetDict(test=earlier.splits["test"]), earlier.label_names)
    return runs.EarlierTest(
        Path(model_args.model_name_or_path),
        tokenize(test, tokenizer, label_names, max_seq_length, pad_to_max_length=data_args.pad_to_max_length)["test"],
        evaluate=lambda output_dir, predictions: evaluate(
            output_dir, predictions, earlier, label_names, seqeval_scheme=data_args.seqeval_scheme,
            entity_level=data_args.return_entity_level_metrics,
        ),
    )


def card_facts(
    model_args: ModelArguments, data_args: TokenDataArguments, label_names: list[str], max_seq_length: int
) -> CardFacts:
    """What the model card says: the pipeline task, base model, data, tags, and how the model was scored."""
    strict = f"strict {data_args.seqeval_scheme}" if data_args.seqeval_scheme else "conlleval rules"
    return CardFacts(
        task=TASK,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        label_names=label_names,
        facts={
            "max_seq_length": max_seq_length,
            "tags": "plain (one word each)" if is_plain(label_names) else "B-/I-/E-/S- prefixed entity tags",
            "scoring": f"seqeval per word (first sub-token), {strict}",
            "label_all_tokens": data_args.label_all_tokens,
        },
    )


# --- report -------------------------------------------------------------------------------------------------


def evaluate(
    output_dir: str | Path,
    predictions: Mapping[str, Sequence[np.ndarray]],
    data: TokenData,
    label_names: list[str],
    *,
    seqeval_scheme: str | None = None,
    entity_level: bool = False,
) -> TaskReport:
    """Score each split per word and write `<split>_per_entity.csv`, plus the per-tag table and the tag confusion
    matrix (CSV and picture) of `hf_ft.classification`; return the report.

    Args:
        output_dir: Where the files go.
        predictions: Split -> (token logits (N, T, C), token label ids (N, T), -100 where unscored), e.g. the
            `runs.Prediction`s of `runs.finish`. "test" (or else the last split) is the one the report dwells on.
        data: The checked data (train's tag counts give the majority-tag baseline; each split's word count the
            words that went unscored).
        label_names: Tag names by id, the model's order.
        seqeval_scheme: Strict scoring under this scheme, else conlleval's rules.
        entity_level: Put each entity type's scores in the metrics too.

    Raises:
        ValueError: a split's shapes do not fit, or its label ids are not tags.
    """
    label_index = {name: i for i, name in enumerate(label_names)}
    train_tags = [label_index[tag] for row in data.splits["train"]["tags"] for tag in row]
    train_counts = np.bincount(train_tags, minlength=len(label_names))
    majority = int(np.argmax(train_counts))
    metrics, per_type, words, records = {}, {}, {}, {}
    for split, (logits, label_ids, *_) in predictions.items():
        word_logits, word_labels, counts = word_predictions(logits, label_ids, len(label_names), what=split)
        if split in data.splits:
            sentences = data.splits[split]["tokens"]
            examples = ([example_id(*row) for row in sentences], [md.shorten(" ".join(row), 120) for row in sentences])
            records[split] = sentence_records(
                word_logits.argmax(-1), word_labels, counts, label_names, examples, seqeval_scheme=seqeval_scheme
            )
        scores, baseline = (
            seqeval_scores(predicted, word_labels, counts, label_names, seqeval_scheme=seqeval_scheme)
            for predicted in (word_logits.argmax(-1), np.full_like(word_labels, majority))
        )
        per_type[split] = {name: values for name, values in scores.items() if isinstance(values, dict)}
        metrics[split] = {
            **tagging_metrics(scores, entity_level=entity_level),
            "majority_baseline_f1": float(baseline["overall_f1"]),
            "majority_baseline_accuracy": float(baseline["overall_accuracy"]),
            "num_samples": int(len(counts)),
            "num_words": int(counts.sum()),
            "num_entities": int(sum(values["number"] for values in per_type[split].values())),
        }
        words[split] = (word_logits, word_labels)
    tags_report = classification.evaluate(output_dir, words, label_names, train_counts)  # checks before it writes
    for split, scores in per_type.items():
        _write_per_entity_csv(Path(output_dir) / PER_ENTITY_FILE.format(split=split), scores)
    focus = "test" if "test" in metrics else list(metrics)[-1]
    unscored = {
        split: sum(len(row) for row in data.splits[split]["tokens"]) - metrics[split]["num_words"]
        for split in metrics if split in data.splits
    }
    plain = is_plain(label_names)
    return TaskReport(
        metrics=metrics,
        headline=_headline(metrics[focus], focus, label_names[majority], plain),
        columns={
            "f1": "F1 (one-word entities)" if plain else "Entity F1",
            "precision": "Precision" if plain else "Entity precision",
            "recall": "Recall" if plain else "Entity recall",
            "accuracy": "Tag accuracy (words)",
            "majority_baseline_f1": "Majority-tag F1",
            "majority_baseline_accuracy": "Majority-tag accuracy",
        },
        notes=_notes(label_names[majority], seqeval_scheme, plain, unscored),
        facts={"Tags": f"{len(label_names)}{'' if plain else f' ({len(_entity_types(label_names))} entity types)'}"},
        sections=[_entity_types_section(per_type[focus], focus, list(metrics)), *tags_report.sections],
        compared={"f1": "F1", "accuracy": "tag accuracy"},
        curves={"f1": "entity F1", "precision": "precision", "recall": "recall", "accuracy": "tag accuracy"},
        card_note="Scored per word (each word's first sub-token) with seqeval: precision, recall and F1 are micro "
        "averages over entities (type and exact span), accuracy is over words.",
        examples=records,
        scorer=sentence_scorer,
    )



def _entity_types(label_names: Sequence[str]) -> list[str]:
    return sorted({name[2:] for name in label_names if name != "O"})


def _write_per_entity_csv(path: Path, per_type: dict[str, dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["entity_type", "precision", "recall", "f1", "support"])
        for name, values in sorted(per_type.items()):
            writer.writerow([name, *(f"{values[key]:.6f}" for key in ("precision", "recall", "f1")), values["number"]])


def _headline(metrics: dict, split: str, majority: str, plain: bool) -> str:
    if plain:
        return (
            f"**{split.capitalize()} tag accuracy {md.pct(metrics['accuracy'])}** on {metrics['num_words']:,} words "
            f"({metrics['num_samples']:,} sentences). Tagging every word `{md.cell(majority)}`, the most frequent "
            f"training tag, scores {md.pct(metrics['majority_baseline_accuracy'])}."
        )
    return (
        f"**{split.capitalize()} entity F1 {metrics['f1']:.4f}** (precision {metrics['precision']:.4f}, recall "
        f"{metrics['recall']:.4f}) on {metrics['num_entities']:,} entities in {metrics['num_samples']:,} sentences; "
        f"tag accuracy {md.pct(metrics['accuracy'])} over {metrics['num_words']:,} words. Tagging every word "
        f"`{md.cell(majority)}`, the most frequent training tag, scores entity F1 "
        f"{metrics['majority_baseline_f1']:.4f} and tag accuracy {md.pct(metrics['majority_baseline_accuracy'])}."
    )


def _notes(majority: str, seqeval_scheme: str | None, plain: bool, unscored: dict[str, int]) -> str:
    rules = f"strictly under {seqeval_scheme} (ill-formed entities count as errors)" if seqeval_scheme else (
        "under conlleval's rules (an I- tag after O starts an entity)")
    notes = (
        "Scored per word: each word's first sub-token carries its prediction, whatever `label_all_tokens` did in "
        "training (scoring every sub-token would count long words several times, transformers#14043). "
        + ("Plain tags count as one-word entities, so F1 is the micro F1 over the tags other than `O`. " if plain else
           f"Entity precision, recall and F1 are seqeval's micro averages over entities, {rules}: an entity counts "
           "only with its type and exact span. ")
        + f"Tag accuracy counts words with the right tag, `O` included. The majority-tag baseline tags every word "
        f"`{md.cell(majority)}`."
    )
    cut = {split: count for split, count in unscored.items() if count}
    if cut:
        notes += f" Words beyond max_seq_length are not scored: {', '.join(f'{n:,} in {s}' for s, n in cut.items())}."
    return notes


def _entity_types_section(per_type: dict[str, dict], split: str, splits: list[str]) -> str:
    rows = [
        f"| {md.cell(name)} | {v['f1']:.4f} | {v['precision']:.4f} | {v['recall']:.4f} | {v['number']:,} |"
        for name, v in sorted(per_type.items(), key=lambda item: (-item[1]["number"], item[0]))
    ]
    files = ", ".join(f"[`{PER_ENTITY_FILE.format(split=s)}`]({PER_ENTITY_FILE.format(split=s)})" for s in splits)
    return (
        f"## Entity types ({split})\n\nseqeval's scores per entity type, most frequent first; support is the number "
        f"of gold entities. Every split: {files}. The per-tag table (`<split>_per_class.csv`) and the tag confusion "
        "below count words.\n\n| Type | F1 | Precision | Recall | Support |\n|---|---:|---:|---:|---:|\n"
        + "\n".join(rows)
    )


# --- predict (hf-ft predict) --------------------------------------------------------------------------------


def load_predictor(source: str, *, device: torch.device, token: str | None = None, cache_dir: str | None = None
                   ) -> Predictor:
    """An hf_ft output dir (full or adapter-only) or any Hub token classifier, with its fast tokenizer.

    Raises:
        FileNotFoundError / InputError: the checkpoint cannot be found (offline: not cached), or has a slow tokenizer.
    """
    hub_kwargs = {"token": token, "cache_dir": cache_dir}
    model, kind = load_trained(source, AutoModelForTokenClassification.from_pretrained, **hub_kwargs)
    with offline_hint(source):
        prefix_space = {"add_prefix_space": True} if model.config.model_type in ADD_PREFIX_SPACE_MODEL_TYPES else {}
        tokenizer = AutoTokenizer.from_pretrained(source, **prefix_space, **hub_kwargs)
    if not tokenizer.is_fast:
        raise InputError(f"{source} has only a slow tokenizer; predicting per word needs a fast one (word_ids()).")
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return Predictor(model.to(device), tokenizer, label_names, kind, device)


def read_inputs(args: PredictArguments, trained: dict) -> Inputs:
    """The input (a CoNLL file, another file, a Hub split), its words column (`--text_column_names`, else the run's `text_column_name`, else tokens/words, else a text
    column, split at whitespace) and the tags column if there is one (the run's, else tags/labels).

    Raises:
        InputError: no words column, or a column asked for that is absent.
    """
    split = load_input(args, file_readers={suffix: read_conll for suffix in CONLL_SUFFIXES})
    requested = args.text_column_names
    trained_words = trained.get("text_column_name")
    if requested is None and trained_words in split.column_names:
        requested = trained_words
    words_column = _find_column(split, requested, (*TOKEN_COLUMNS, "text", "sentence"), "text_column_names")
    tags_column = args.label_column_name or next(
        (name for name in (trained.get("label_column_name"), *TAG_COLUMNS) if name and name in split.column_names), None)
    if tags_column is not None:
        _find_column(split, tags_column, (), "label_column_name")  # names the columns when it is absent
    words = [row.split() if isinstance(row, str) else list(row) for row in split[words_column]]
    split = split.add_column("_words", words) if "_words" not in split.column_names else split
    return Inputs(split, ["_words"], [" ".join(row) for row in words], tags_column, trained)


def predict(predictor: Predictor, inputs: Inputs, args: PredictArguments) -> Predictions:
    """A tag per word (its first sub-token's; words cut off at the saved `model_max_length` get none, as the report
    leaves them unscored) and the entities they spell. With a tags column, the report's seqeval metrics under the
    run's `seqeval_scheme`.

    Raises:
        InputError: reference tags the model has no label for, or rows whose tags and words differ in number.
    """
    split, tokenizer, names = inputs.split, predictor.preprocessor, predictor.label_names
    words = list(split["_words"])
    references = None if inputs.label_column is None else _checked_tags(
        "input", words, list(split[inputs.label_column]), _class_names(split, inputs.label_column))
    if references is not None:
        classification.reference_ids([tag for row in references for tag in row], names, inputs.label_column)
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=tokenizer.model_max_length)
    first_tokens = [_first_sub_tokens(encoded.word_ids(i)) for i in range(len(words))]

    def forward(indices: Sequence[int]) -> np.ndarray:
        batch = tokenizer.pad({"input_ids": [encoded["input_ids"][i] for i in indices]}, return_tensors="pt")
        logits = predictor.model(**batch.to(predictor.device)).logits.float().cpu().numpy()
        return np.concatenate([logits[row, first_tokens[i]] for row, i in enumerate(indices)])

    word_logits = outputs_of(forward, range(len(words)), args.batch_size)
    seen = np.array([len(positions) for positions in first_tokens])
    predicted = np.split(word_logits.argmax(-1), np.cumsum(seen)[:-1])
    scheme = inputs.trained.get("seqeval_scheme")
    rows = []
    for i, ids in enumerate(predicted):
        tags = [names[j] for j in ids] + [None] * (len(words[i]) - len(ids))
        row = {"input": inputs.names[i], "tokens": words[i], "tags": tags}
        if not is_plain(names):
            spelled = [_as_seqeval_tag(tag, names, None) if tag else "O" for tag in tags]
            row["entities"] = [f"{kind}: {' '.join(words[i][start:end + 1])}" for kind, start, end in get_entities(spelled)]
        if references is not None:
            row["reference"] = references[i]
        rows.append(row)
    metrics = None
    if references is not None:
        index = {name: j for j, name in enumerate(names)}
        gold = np.array([index[tag] for row, count in zip(references, seen) for tag in row[:count]])
        metrics = tagging_metrics(seqeval_scores(word_logits.argmax(-1), gold, seen, names, seqeval_scheme=scheme))
        metrics["num_samples"] = len(words)
    truncated = int(sum(len(row) for row in words) - seen.sum())
    if truncated:
        logger.warning("%d words lie past the model's %d tokens: they get no tag (null)", truncated,
                       tokenizer.model_max_length)
    return Predictions(rows, metrics)


def _first_sub_tokens(word_ids: Sequence[int | None]) -> list[int]:
    """The position of each word's first sub-token, in word order (the positions the report scores)."""
    positions, previous = [], None
    for position, word_id in enumerate(word_ids):
        if word_id is not None and word_id != previous:
            positions.append(position)
        previous = word_id
    return positions


def _class_names(split: Dataset, column: str) -> list[str] | None:
    feature = split.features[column]
    inner = getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, ClassLabel) else None
