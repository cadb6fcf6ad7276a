"""Text classification (single texts or text pairs; one class, several labels, or a score per text): data, model,
Trainer, metrics and report.

    data = load_data(data_args, seed=..., token=..., cache_dir=...)            # checked: label names, problem type
    model, tokenizer, labels = load_model(model_args, data.label_names, data.problem_type)  # the checkpoint's order
    data = reorder_labels(data, labels)                                                # the data follows that order
    splits = tokenize(data, tokenizer, max_seq_length, pad_to_max_length=...)          # truncations logged per split
    trainer = text_trainer(model, tokenizer, splits, training_args, problem_type=..., num_labels=...)
    runs.finish(..., evaluate=lambda d, p: evaluate(d, p, data), card=card_facts(...))

Problem types, named as transformers' `config.problem_type` (which picks the loss, and `pipeline()`'s activation),
are found from the label column unless `--problem_type` says otherwise:

- `single_label_classification`: one class per text (strings, integers, booleans, a ClassLabel); softmax and
  cross-entropy; the shared classification report (`hf_ft.classification`).
- `multi_label_classification`: any number of labels per text, as lists (`["joy", "love"]`, a `List(ClassLabel)`)
  or strings split at `--label_delimiter`; multi-hot float targets, a sigmoid per label and binary cross-entropy;
  a label is predicted when its sigmoid score is >= 0.5.
- `regression`: a float per text; one output and mean squared error.

Argument names are those of transformers' `run_classification.py` / `run_glue.py`, so their commands carry over.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Json, LargeList, List, Value
from matplotlib.figure import Figure
from scipy.special import expit, softmax
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)

from .. import classification, hub, runs
from ..bootstrap import example_id
from .. import markdown as md
from ..args import ConfigError, DataArguments, ModelArguments
from ..checkpoints import StrictResumeTrainer
from ..data import labels as label_utils
from ..data import sources
from ..errors import InputError
from ..imbalance import class_balanced_sampler, class_weighted_loss
from ..text import TokenizedDataArguments
from ..models import load_for_labels, offline_hint
from ..peft import load_trained
from ..predict import Inputs, PredictArguments, Predictions, Predictor, load_input, outputs_of, reference_column
from ..report import TaskReport
from ..runs import Prediction

logger = logging.getLogger("hf_ft")

TASK = "text-classification"
PEFT_TASK_TYPE = "SEQ_CLS"  # PEFT's PeftModelForSequenceClassification: passes `labels` on, saves the head
# transformers' `config.problem_type` names, which pick the loss (and the pipeline's activation).
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
# The validation metric a hyperparameter search scores trials by (`hf_ft.search`), per problem type.
SEARCH_METRIC = {SINGLE_LABEL: "accuracy", MULTI_LABEL: "micro_f1", REGRESSION: "mse"}
# A multi-label model predicts a label when its sigmoid score reaches this (what `pipeline()` users apply too).
THRESHOLD = 0.5
# Tried in order when --text_column_names is unset: pairs first (GLUE's column names), then single texts.
TEXT_PAIR_CANDIDATES = (("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"),
                        ("premise", "hypothesis"))
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "review", "document", "question", "sms", "tweet")
# The length cap when neither --max_seq_length nor a sane tokenizer.model_max_length says otherwise.
MISTAKES_FILE = "mistakes.md"
NUM_MISTAKES = 10
MISTAKE_TEXT_CHARS = 120
PAIR_SEPARATOR = " ‖ "
_NUMERIC_DTYPES = ("int", "uint", "float", "bool")
_LABEL_DTYPES = (*_NUMERIC_DTYPES, "string", "large_string")  # what a label inside a multi-label list can be

MULTI_LABEL_COLUMNS = {
    "micro_f1": "Micro F1",
    "macro_f1": "Macro F1 (labels present in the split)",
    "subset_accuracy": "Subset accuracy (exact label set)",
    "most_frequent_set_baseline_micro_f1": "Most-frequent-set baseline (micro F1)",
}
REGRESSION_COLUMNS = {
    "mse": "MSE",
    "mae": "MAE",
    "r2": "R²",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "mean_baseline_mse": "Train-mean baseline (MSE)",
}
# hf_ft metric -> (model-index `type`, `args`): the metric's id on hf.co/metrics and its compute() arguments.
# Subset accuracy is what scikit-learn's (and the Hub's) accuracy computes on label sets.
CARD_METRIC_TYPES = {
    "micro_f1": ("f1", {"average": "micro"}),
    "macro_f1": ("f1", {"average": "macro"}),
    "subset_accuracy": ("accuracy", None),
    "mse": ("mse", None),
    "mae": ("mae", None),
    "r2": ("r_squared", None),
    "pearson": ("pearsonr", None),
    "spearman": ("spearmanr", None),
}


@dataclass
class TextDataArguments(TokenizedDataArguments):
    """Text data: which columns hold the text(s) and the labels, what the labels are, how texts are tokenized."""

    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "The text column, or two comma-separated ones for text pairs (`sentence1,sentence2`). Found "
            f"automatically when unset: pairs {['/'.join(p) for p in TEXT_PAIR_CANDIDATES]}, else one of "
            f"{list(TEXT_COLUMN_CANDIDATES)}, else the only string column."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": f"One of {list(PROBLEM_TYPES)} (transformers' `config.problem_type`). Unset: found from the label "
            "column: lists of labels (or --label_delimiter) are multi-label, floats are regression, anything else "
            "is one class per text. Set it to train integer scores as a regression, or single labels as multi-label."
        },
    )
    label_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "Split string labels at this delimiter (`,`, `|`) into several labels per text (multi-label); "
            "an empty cell is a text with none of the labels."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.text_column_names is not None:
            names = [name.strip() for name in self.text_column_names.split(",")]
            if not 1 <= len(names) <= 2 or not all(names):
                raise ConfigError(
                    f"--text_column_names takes one column or two comma-separated ones, got {self.text_column_names!r}."
                )
        if self.max_seq_length is not None and self.max_seq_length <= 0:
            raise ConfigError(f"--max_seq_length must be > 0, got {self.max_seq_length}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"--problem_type must be one of {list(PROBLEM_TYPES)}, got {self.problem_type!r}.")
        if self.label_delimiter == "":
            raise ConfigError("--label_delimiter is empty: give the character between labels (`,` or `|`), or drop it.")
        if self.label_delimiter and self.problem_type not in (None, MULTI_LABEL):
            raise ConfigError(
                f"--label_delimiter gives several labels per text, which --problem_type {self.problem_type} cannot "
                f"learn: drop one of them (or set --problem_type {MULTI_LABEL})."
            )


@dataclass
class TextClassificationData:
    """Checked splits (text columns + `label`) with their label names, text columns and problem type.

    `label` is a ClassLabel (single-label), a multi-hot `List(float32)` in `label_names` order (multi-label), or a
    float32 score (regression, whose one "label name" is the label column's).
    """

    splits: DatasetDict
    label_names: list[str]
    text_columns: list[str]
    problem_type: str


# --- data ---------------------------------------------------------------------------------------------------


def load_data(
    data_args: TextDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> TextClassificationData:
    """Load, find and check the text and label columns, encode labels, split and subsample; nothing tokenized yet.

    Raises:
        InputError: a text or label column is missing (the message lists the real columns), a text is empty
            (count and first row), a label is missing or unseen in train, splits disagree on label names, a
            multi-label column mixes lists with single labels (with an example row of each), or the labels do not
            fit --problem_type.
    """
    raw = sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir)
    if (
        "validation" in raw and "test" in raw and data_args.validation_split_name is None
        and data_args.test_split_name in sources.VALIDATION_SPLIT_NAMES
    ):  # e.g. SST-2: its test split has no labels, so its validation split is the test and train gives validation
        logger.info("The %s split is the test split: validation is held out of train", data_args.test_split_name)
        raw = DatasetDict({name: split for name, split in raw.items() if name != "validation"})
    train = raw["train"]
    text_columns = find_text_columns(train, data_args.text_column_names)
    label_column = label_utils.find_label_column(train, data_args.label_column_name)
    check_file_label_names(data_args, label_column)
    if label_column in text_columns:
        raise InputError(
            f"Column `{label_column}` cannot be both the text and the label; the data has {train.column_names}."
        )
    for name, split in raw.items():
        missing = [c for c in [*text_columns, label_column] if c not in split.column_names]
        if missing:
            raise InputError(f"The {name} split has no column {missing}; it has {split.column_names}.")
        check_texts(name, split, text_columns)
    problem_type = detect_problem_type(raw, label_column, data_args.problem_type, data_args.label_delimiter)
    for flag in ("class_weight", "class_balanced_sampling"):
        if getattr(data_args, flag) and problem_type != SINGLE_LABEL:
            raise InputError(
                f"--{flag} needs one class per text; column `{label_column}` makes this a {problem_type} task. "
                f"Drop --{flag}."
            )
    splits = DatasetDict({name: split.select_columns([*text_columns, label_column]) for name, split in raw.items()})
    if problem_type == SINGLE_LABEL:
        splits = label_utils.encode_labels(splits, label_column)
        splits = label_utils.add_validation_split(splits, data_args.train_val_split, seed)
    else:
        if problem_type == MULTI_LABEL:
            splits, label_names = encode_multi_hot(splits, label_column, data_args.label_delimiter)
        else:
            splits, label_names = encode_scores(splits, label_column), [label_column]
        if "validation" not in splits:  # not stratified: a text has several labels, or a score
            parts = splits["train"].train_test_split(test_size=data_args.train_val_split, seed=seed)
            splits = DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
    splits = sources.cap_samples(splits, data_args, seed)
    if problem_type == SINGLE_LABEL:
        label_utils.check_label_coverage(splits)
        label_names = list(splits["train"].features["label"].names)
    elif problem_type == MULTI_LABEL:
        check_multi_label_coverage(splits, label_names)
    return TextClassificationData(splits, label_names, text_columns, problem_type)


def find_text_columns(train: Dataset, requested: str | None) -> list[str]:
    """The text column(s): `requested` (comma-separated), else a known pair or single name, else the only string one.

    Raises:
        InputError: a requested column does not exist, or none can be found; the message lists the real columns.
    """
    columns = train.column_names
    if requested is not None:
        names = [name.strip() for name in requested.split(",")]
        missing = [name for name in names if name not in columns]
        if missing:
            raise InputError(f"--text_column_names: no column {missing}; the data has columns {columns}.")
        return names
    for pair in TEXT_PAIR_CANDIDATES:
        if all(name in columns for name in pair):
            return list(pair)
    for name in TEXT_COLUMN_CANDIDATES:
        if name in columns:
            return [name]
    strings = [n for n, f in train.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    if len(strings) == 1 and strings[0] not in label_utils.LABEL_COLUMN_CANDIDATES:
        return strings
    raise InputError(
        f"Cannot tell which column holds the text; set --text_column_names to one of {columns} (two, comma-separated, "
        "for text pairs)."
    )


def check_file_label_names(data_args: DataArguments, label_column: str) -> None:
    """Refuse parquet split files whose saved ClassLabel names differ (datasets 5.2 silently gives every split the
    first file's names, so the other split's ids would mean other classes).

    Raises:
        InputError: naming both files and their label names.
    """
    names = {}
    for split in ("train", "validation", "test"):
        path = getattr(data_args, f"{split}_file", None)
        if path and Path(path).suffix.lower() == ".parquet":
            feature = sources.saved_parquet_feature(path, label_column) or {}
            names[split] = feature.get("names") if feature.get("_type") == "ClassLabel" else None
    if names.get("train") is None:
        return
    for split, found in names.items():
        if found is not None and found != names["train"]:
            raise InputError(
                f"The {split} split's label names differ from train's in column `{label_column}`: "
                f"{getattr(data_args, split + '_file')} has {found}, {data_args.train_file} has {names['train']}. "
                "Save every split with the same ClassLabel names (or plain string labels)."
            )


def check_texts(split_name: str, split: Dataset, text_columns: Sequence[str]) -> None:
    """Refuse missing or blank texts: they would train on nothing but special tokens.

    Raises:
        InputError: a text column is not a string column, or has null/blank values (count and first row index).
    """
    for column in text_columns:
        dtype = getattr(split.features[column], "dtype", None)
        if dtype not in ("string", "large_string", "null"):
            raise InputError(
                f"Column `{column}` of the {split_name} split holds {split.features[column]}, not text; set "
                f"--text_column_names to text columns of {split.column_names}."
            )
        values = split.select_columns([column]).with_format("arrow")[:][column]
        empty = pc.or_kleene(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), ""))
        empty = pc.fill_null(empty, True)
        count = pc.sum(empty).as_py() or 0
        if count:
            first = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
            raise InputError(
                f"{count} rows of the {split_name} split have an empty text in column `{column}` (the first is row "
                f"{first}); drop or fill them."
            )


def detect_problem_type(raw: DatasetDict, column: str, requested: str | None, delimiter: str | None) -> str:
    """The problem type the label column holds (lists or `delimiter`: multi-label; floats: regression; else one
    class per text), or `requested` when the labels fit it.

    Raises:
        InputError: the column mixes lists with single labels, or label types inside its lists (an example row of
            each is named); `delimiter` on a column that does not hold strings; labels `requested` cannot learn.
    """
    for name, split in raw.items():
        check_label_list_types(name, split, column)
    feature = raw["train"].features[column]
    listed = isinstance(feature, (List, LargeList))
    dtype = getattr(feature, "dtype", "")
    if delimiter and dtype not in ("string", "large_string"):
        raise InputError(
            f"--label_delimiter splits string labels, but column `{column}` holds {feature}; drop --label_delimiter."
        )
    if requested is None:
        if listed or delimiter:
            return MULTI_LABEL
        return REGRESSION if dtype.startswith("float") else SINGLE_LABEL
    if listed and requested != MULTI_LABEL:
        raise InputError(
            f"Column `{column}` holds lists of labels, which --problem_type {requested} cannot learn: set "
            f"--problem_type {MULTI_LABEL}, or drop it."
        )
    if requested == REGRESSION and not (isinstance(feature, (Value, ClassLabel)) and dtype.startswith(_NUMERIC_DTYPES)):
        raise InputError(
            f"--problem_type {REGRESSION} needs one number per text, but column `{column}` holds {feature}; convert "
            "the labels to numbers, or drop --problem_type."
        )
    return requested


def check_label_list_types(split_name: str, split: Dataset, column: str) -> None:
    """Refuse a label column that mixes lists of labels with single labels, or label types inside its lists
    (datasets then types the values `Json`, from which no label set can be built).

    Raises:
        InputError: naming the column, the split and an example row of each kind.
    """
    feature = split.features[column]
    if isinstance(feature, Json):
        values = list(split[column])
        listed = next((i for i, value in enumerate(values) if isinstance(value, list)), None)
        if listed is None:
            return  # single labels of mixed types: `label_utils.check_label_values` names them
        single = next(i for i, value in enumerate(values) if not isinstance(value, list))
        raise InputError(
            f"Column `{column}` of the {split_name} split mixes lists of labels and single labels (row {listed}: "
            f"{values[listed]!r}, row {single}: {values[single]!r}): write every row's labels as a list (e.g. "
            f"{[values[single]]!r}), or every row as one string split at --label_delimiter."
        )
    if isinstance(feature, (List, LargeList)) and isinstance(feature.feature, Json):
        values = list(split[column])
        first = next((type(label) for row in values for label in row or ()), None)
        row = next((i for i, labels in enumerate(values) if any(type(label) is not first for label in labels or ())), 0)
        raise InputError(
            f"Column `{column}` of the {split_name} split mixes label types in its lists (row {row}: {values[row]!r}): "
            "make every label a string, or every label an integer."
        )


def encode_multi_hot(
    splits: DatasetDict, column: str, delimiter: str | None
) -> tuple[DatasetDict, list[str]]:
    """`splits` with `column` replaced by `label`, a multi-hot float32 list over the label names, and those names.

    The names are the ClassLabel's of a `List(ClassLabel)` column, else train's labels sorted (integers
    numerically), as for single labels.

    Raises:
        InputError: a row has no label list (null), a list holds an empty label, or an evaluation split has
            labels that training never sees.
    """
    rows = {name: _label_lists(name, split, column, delimiter) for name, split in splits.items()}
    feature = splits["train"].features[column]
    classes = feature.feature if isinstance(feature, (List, LargeList)) else feature
    if isinstance(classes, ClassLabel):
        names = list(classes.names)
    else:
        names = label_utils._names_from_values(list({label for labels in rows["train"] for label in labels}))
    for name, lists in rows.items():
        label_utils._check_values_known(name, list({label for labels in lists for label in labels}), names)
    index = {label: i for i, label in enumerate(names)}
    encoded = {}
    for name, split in splits.items():
        hot = np.zeros((len(split), len(names)), dtype=np.float32)
        for row, labels in enumerate(rows[name]):
            hot[row, [index[str(label)] for label in labels]] = 1.0
        none = int(np.sum(hot.sum(axis=1) == 0))
        if none:
            logger.info("%s: %d of %d texts have none of the labels", name, none, len(split))
        encoded[name] = split.remove_columns(column).add_column("label", hot.tolist(), feature=List(Value("float32")))
    return DatasetDict(encoded), names


def _label_lists(split_name: str, split: Dataset, column: str, delimiter: str | None) -> list[list]:
    """Each row's labels: its list, its string split at `delimiter`, or its one label (ClassLabel ids as names)."""
    feature = split.features[column]
    if delimiter:
        return [[part.strip() for part in (value or "").split(delimiter) if part.strip()] for value in split[column]]
    if not isinstance(feature, (List, LargeList)):
        label_utils.check_label_values(split_name, split, column)
        names = feature.names if isinstance(feature, ClassLabel) else None
        return [[names[value] if names else value] for value in split[column]]
    inner = feature.feature
    if not isinstance(inner, (ClassLabel, Value)) or not inner.dtype.startswith(_LABEL_DTYPES):
        raise InputError(
            f"Column `{column}` of the {split_name} split holds {feature}: a multi-label column holds lists of string "
            "or integer labels."
        )
    values = list(split[column])
    for row, labels in enumerate(values):
        if labels is None:
            raise InputError(
                f"Row {row} of the {split_name} split has no label list in column `{column}`: write [] for a text "
                "with none of the labels, or drop the row."
            )
        if any(label is None or str(label).strip() == "" for label in labels):
            raise InputError(
                f"Row {row} of the {split_name} split has an empty label in its list in column `{column}` "
                f"({labels!r}); remove it."
            )
    if isinstance(inner, ClassLabel):
        return [[inner.names[label] for label in labels] for labels in values]
    return values


def check_multi_label_coverage(splits: DatasetDict, label_names: list[str]) -> None:
    """Refuse multi-label data a model cannot learn: fewer than two labels in train, or evaluation labels train
    never has (checked after subsampling, which can drop a rare label from train).

    Raises:
        InputError: naming the split and the labels.
    """
    present = {name: _positives(split) > 0 for name, split in splits.items()}
    trained = [label for label, seen in zip(label_names, present["train"]) if seen]
    if len(trained) < 2:
        raise InputError(f"The train split has fewer than two labels ({trained}); a classifier needs at least two.")
    for name, seen in present.items():
        if name != "train":
            label_utils._check_values_known(name, [label for label, s in zip(label_names, seen) if s], trained)


def _positives(split: Dataset) -> np.ndarray:
    """Texts per label in a multi-label split."""
    return np.asarray(split.with_format("numpy")["label"]).reshape(len(split), -1).sum(axis=0)


def encode_scores(splits: DatasetDict, column: str) -> DatasetDict:
    """`splits` with `column` as `label`, a float32 score.

    Raises:
        InputError: a score is missing or not finite (count and first row).
    """
    encoded = {}
    for name, split in splits.items():
        values = split.select_columns([column]).with_format("arrow")[:][column]
        scores = values.cast("float64").to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(scores))  # nulls come out as NaN
        if bad.size:
            raise InputError(
                f"{bad.size} rows of the {name} split have no finite score in column `{column}` (the first is row "
                f"{bad[0]}: {values[int(bad[0])].as_py()!r}); drop or fill them."
            )
        encoded[name] = split.cast_column(column, Value("float32"))
    encoded = DatasetDict(encoded)
    return encoded if column == "label" else encoded.rename_column(column, "label")


def reorder_labels(data: TextClassificationData, label_names: list[str]) -> TextClassificationData:
    """`data` with its labels re-encoded to `label_names`: the same names in a checkpoint's order, or a checkpoint's
    larger set (a continued run's, which added labels to these)."""
    if label_names == data.label_names:
        return data
    if data.problem_type == MULTI_LABEL:  # column j of the new multi-hot is the old column of label_names[j], or 0
        old = [data.label_names.index(name) if name in data.label_names else None for name in label_names]

        def remap(batch: dict) -> dict:
            hot = np.asarray(batch["label"], dtype=np.float32).reshape(len(batch["label"]), -1)
            columns = [hot[:, j] if j is not None else np.zeros(len(hot), np.float32) for j in old]
            return {"label": np.stack(columns, axis=1).tolist()}

        splits = DatasetDict({name: split.map(remap, batched=True) for name, split in data.splits.items()})
    else:
        splits = label_utils.reorder_labels(data.splits, label_names)
    return dataclasses.replace(data, splits=splits, label_names=list(label_names))


def tokenize(
    data: TextClassificationData, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, *, pad_to_max_length: bool
) -> DatasetDict:
    """Tokenized splits (`input_ids`, `attention_mask`[, `token_type_ids`], `label`); truncations logged per split."""

    def encode(batch):
        texts = [batch[column] for column in data.text_columns]
        encoded = tokenizer(
            *texts, truncation=True, max_length=max_seq_length, padding="max_length" if pad_to_max_length else False
        )
        if encoded.encodings is not None:  # fast tokenizers keep what truncation cut off
            encoded["truncated"] = [bool(e.overflowing) for e in encoded.encodings]
        else:
            full = tokenizer(*texts, truncation=False)["input_ids"]
            encoded["truncated"] = [len(ids) > max_seq_length for ids in full]
        return encoded

    splits = {}
    for name, split in data.splits.items():
        tokenized = split.map(encode, batched=True, remove_columns=data.text_columns, desc=f"tokenizing {name}")
        truncated = int(np.sum(tokenized["truncated"]))
        logger.info(
            "%s: %d of %d examples truncated to %d tokens (%.1f%%)",
            name, truncated, len(tokenized), max_seq_length, 100 * truncated / len(tokenized),
        )
        splits[name] = tokenized.remove_columns("truncated")
    return DatasetDict(splits)


# --- model --------------------------------------------------------------------------------------------------


def load_model(
    model_args: ModelArguments, label_names: list[str], problem_type: str, *, quantization_config=None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[str]]:
    """The checkpoint with a sequence-classification head for `label_names`, its tokenizer, and the label order.

    Labels are matched with the checkpoint's BY NAME (`hf_ft.models.match_labels`): a checkpoint already trained on
    the same label names (a continued fine-tune) keeps its head and its order, which is returned (re-encode the data
    with `reorder_labels`); other names get a new, freshly initialised head. `problem_type` goes into the config, so
    the model picks its loss from it and `pipeline()` its activation.

    Raises:
        InputError: the checkpoint cannot be found (offline), or has no sequence-classification class.
    """
    source = model_args.model_name_or_path
    hub_kwargs = model_args.hub_kwargs()
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
    config.problem_type = problem_type
    model, label_names = load_for_labels(
        AutoModelForSequenceClassification, config, label_names, model_args, quantization_config=quantization_config
    )
    if tokenizer.pad_token is None:  # decoder-only checkpoints (GPT-2, Llama): pad with the end-of-text token
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, list(label_names)


# --- training -----------------------------------------------------------------------------------------------


def text_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: DatasetDict,
    training_args: TrainingArguments,
    *,
    problem_type: str,
    num_labels: int,
    callbacks: Sequence[TrainerCallback] = (),
    class_weight: str | None = None,
    class_balanced_sampling: bool = False,
) -> StrictResumeTrainer:
    """A `StrictResumeTrainer` with dynamic padding and the metrics of `problem_type` at each evaluation
    (`compute_metrics_for`); `class_weight` weighs a single-label loss by class, `class_balanced_sampling` draws
    classes equally often (`hf_ft.imbalance`)."""
    mixed = training_args.bf16 or training_args.fp16
    train_labels = splits["train"]["label"] if class_weight or class_balanced_sampling else []
    return StrictResumeTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_for(problem_type, num_labels),
        callbacks=list(callbacks),
        compute_loss_func=class_weighted_loss(
            class_weight, train_labels, num_labels, label_smoothing=training_args.label_smoothing_factor
        ),
        train_sampler=class_balanced_sampler(class_balanced_sampling, train_labels, seed=training_args.seed),
    )


def compute_metrics_for(problem_type: str, num_labels: int) -> Callable[[EvalPrediction], dict[str, float]]:
    """`Trainer(compute_metrics=...)`: accuracy / macro F1 (`hf_ft.classification`) for single labels,
    `multi_label_metrics` for several, `regression_metrics` for scores; the final report computes the same."""
    if problem_type == SINGLE_LABEL:
        return classification.compute_metrics_for_classification(num_labels)
    score = multi_label_metrics if problem_type == MULTI_LABEL else regression_metrics

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        if isinstance(outputs, tuple):  # models asked for hidden states or attentions return the logits first
            outputs = outputs[0]
        return score(np.asarray(outputs), np.asarray(eval_prediction.label_ids))

    return compute_metrics


def multi_label_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Micro F1, macro F1 (over the labels present in `labels`, as `hf_ft.classification`'s) and subset accuracy of
    multi-hot `labels` (N, L) against `logits` (N, L), a label predicted where its sigmoid score >= 0.5."""
    truth, predicted = labels >= 0.5, expit(logits) >= THRESHOLD
    present = np.flatnonzero(truth.sum(axis=0))
    metrics = {
        "micro_f1": f1_score(truth, predicted, average="micro", zero_division=0),
        "subset_accuracy": accuracy_score(truth, predicted),
    }
    if present.size:
        metrics["macro_f1"] = f1_score(truth, predicted, labels=present, average="macro", zero_division=0)
    return {name: float(value) for name, value in metrics.items()}


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MSE, MAE, R² and, where both sides vary, Pearson's and Spearman's correlations of scores (N,) or (N, 1)."""
    predictions, labels = np.asarray(predictions, dtype=np.float64).reshape(-1), np.asarray(labels, dtype=np.float64)
    metrics = {
        "mse": mean_squared_error(labels, predictions),
        "mae": mean_absolute_error(labels, predictions),
        "r2": r2_score(labels, predictions),
    }
    if np.ptp(predictions) > 0 and np.ptp(labels) > 0:  # a correlation with a constant is undefined
        metrics["pearson"] = pearsonr(predictions, labels).statistic
        metrics["spearman"] = spearmanr(predictions, labels).statistic
    return {name: float(value) for name, value in metrics.items()}


# --- report -------------------------------------------------------------------------------------------------


def evaluate(output_dir: str | Path, predictions: Mapping[str, Prediction], data: TextClassificationData) -> TaskReport:
    """Score each split, write the task's files into `output_dir` and return the report's content.

    Single labels get the shared classification report (`hf_ft.classification.evaluate`: per-class table,
    confusion matrices, hardest classes, majority baseline); several labels per text a per-label table
    (`<split>_per_label.csv`), micro/macro F1 and the most-frequent-label-set baseline; scores MSE, MAE, R²,
    correlations, the train-mean baseline and a predicted-against-true plot (`<split>_predictions.png`). Always:
    the test (else validation) texts the model got most confidently wrong (for scores: the largest errors), as a
    section and in `mistakes.md`.

    Raises:
        ValueError: predictions whose shape does not fit the labels.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    examples = {split: text_examples(data.splits[split], data.text_columns) for split in predictions}
    if data.problem_type == SINGLE_LABEL:
        counts = label_utils.label_counts(data.splits["train"], len(data.label_names))
        task_report = classification.evaluate(output_dir, predictions, data.label_names, counts, examples)
        title, mistakes = "Most confident mistakes", _single_label_mistakes
    elif data.problem_type == MULTI_LABEL:
        task_report = _multi_label_report(output_dir, predictions, data)
        task_report.examples = {
            split: _multi_label_records(*predictions[split][:2], data.label_names, *examples[split]) for split in predictions
        }
        task_report.scorer = _multi_label_scorer
        title, mistakes = "Most confident mistakes", _multi_label_mistakes
    else:
        task_report = _regression_report(output_dir, predictions, data)
        task_report.examples = {
            split: _regression_records(*predictions[split][:2], *examples[split]) for split in predictions
        }
        task_report.scorer = _regression_scorer
        title, mistakes = "Largest errors", _largest_errors
    split = "test" if "test" in predictions else list(predictions)[-1]
    texts = [_shorten(text) for text in joined_texts(data.splits[split], data.text_columns)]
    outputs, labels = (np.asarray(array) for array in predictions[split][:2])
    body = mistakes(texts, outputs, labels, data.label_names, split)
    (output_dir / MISTAKES_FILE).write_text(f"# {title} ({split} split)\n\n{body}\n", encoding="utf-8")
    task_report.sections.append(
        f"## {title} ({split})\n\n{body}\n\nThe same list is in [`{MISTAKES_FILE}`]({MISTAKES_FILE})."
    )
    return task_report


def earlier_test(
    model_args: ModelArguments,
    data_args: TextDataArguments,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
) -> runs.EarlierTest | None:
    """When the checkpoint is an hf_ft text run, its test split (loaded as its args.yaml says, labels in this model's
    order, tokenized as this run's) to measure forgetting on; None for other checkpoints."""
    earlier = runs.load_earlier_data(model_args, TextDataArguments, load_data, label_names)
    if earlier is None:
        return None
    earlier = reorder_labels(earlier, label_names)
    test = dataclasses.replace(earlier, splits=DatasetDict(test=earlier.splits["test"]))
    return runs.EarlierTest(
        Path(model_args.model_name_or_path),
        tokenize(test, tokenizer, max_seq_length, pad_to_max_length=data_args.pad_to_max_length)["test"],
        evaluate=lambda output_dir, predictions: evaluate(output_dir, predictions, earlier),
    )


def card_facts(
    model_args: ModelArguments, data_args: TextDataArguments, data: TextClassificationData, max_seq_length: int
) -> hub.CardFacts:
    """What the model card says about the model: base, data set, labels, and what a user of it must know."""
    facts = {
        "max_seq_length": max_seq_length,
        "text_columns": ", ".join(data.text_columns),
        "problem_type": data.problem_type,
    }
    if data.problem_type == MULTI_LABEL:
        facts["decision"] = (
            f"a label applies when its sigmoid score is >= {THRESHOLD}; `pipeline(..., top_k=None)` scores every label"
        )
    elif data.problem_type == REGRESSION:
        facts["output"] = f"the predicted `{data.label_names[0]}` is the pipeline's `score` (no activation)"
    return hub.CardFacts(
        task=TASK,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        label_names=data.label_names,
        facts=facts,
    )


def text_examples(split: Dataset, text_columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Each example's `hf_ft.bootstrap.example_id` (from its text or texts) and its text, shortened, for people."""
    columns = [list(split[column]) for column in text_columns]
    return [example_id(*parts) for parts in zip(*columns)], [_shorten(text) for text in joined_texts(split, text_columns)]


def _multi_label_records(
    logits: np.ndarray, labels: np.ndarray, names: Sequence[str], ids: Sequence[str], inputs: Sequence[str]
) -> list[dict]:
    truth, predicted = np.asarray(labels) >= 0.5, expit(np.asarray(logits)) >= THRESHOLD
    return [
        {
            "id": id_,
            "input": text,
            "reference": [name for name, on in zip(names, true_row) if on],
            "prediction": [name for name, on in zip(names, predicted_row) if on],
            "correct": bool(np.array_equal(true_row, predicted_row)),
        }
        for id_, text, true_row, predicted_row in zip(ids, inputs, truth, predicted)
    ]


def _multi_label_scorer(records: Sequence[dict]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of the multi-label records: `multi_label_metrics` on a resample, from per-example
    counts (scikit-learn's f1_score costs ~30 ms a call, a thousand resamples half a minute)."""
    names = {name: i for i, name in enumerate(dict.fromkeys(n for r in records for n in r["reference"] + r["prediction"]))}
    truth, predicted = (np.zeros((len(records), len(names)), dtype=bool) for _ in range(2))
    for row, record in enumerate(records):
        truth[row, [names[n] for n in record["reference"]]] = True
        predicted[row, [names[n] for n in record["prediction"]]] = True
    hits, false_positives, misses = truth & predicted, predicted & ~truth, truth & ~predicted
    exact = np.all(truth == predicted, axis=1)

    def statistic(indices: np.ndarray) -> dict[str, float]:
        tp, fp, fn = (counts[indices].sum(axis=0) for counts in (hits, false_positives, misses))
        pooled = 2 * tp.sum() + fp.sum() + fn.sum()
        scores = {"micro_f1": float(2 * tp.sum() / pooled) if pooled else 0.0, "subset_accuracy": float(exact[indices].mean())}
        present = truth[indices].any(axis=0)
        if present.any():
            scores["macro_f1"] = float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))
        return scores

    return statistic


def _regression_records(outputs: np.ndarray, labels: np.ndarray, ids: Sequence[str], inputs: Sequence[str]) -> list[dict]:
    outputs, labels = np.asarray(outputs, dtype=np.float64).reshape(-1), np.asarray(labels, dtype=np.float64)
    return [
        {"id": id_, "input": text, "reference": float(true), "prediction": float(predicted),
         "error": float((predicted - true) ** 2)}
        for id_, text, predicted, true in zip(ids, inputs, outputs, labels)
    ]


def _regression_scorer(records: Sequence[dict]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of the regression records: the MSE and Pearson r of `regression_metrics` on a
    resample (r only where both sides vary), in numpy."""
    predicted = np.array([record["prediction"] for record in records])
    true = np.array([record["reference"] for record in records])

    def statistic(indices: np.ndarray) -> dict[str, float]:
        guess, truth = predicted[indices], true[indices]
        scores = {"mse": float(np.mean((guess - truth) ** 2))}
        if np.ptp(guess) > 0 and np.ptp(truth) > 0:
            scores["pearson"] = float(np.corrcoef(guess, truth)[0, 1])
        return scores

    return statistic


def joined_texts(split: Dataset, text_columns: Sequence[str]) -> list[str]:
    """One string per example: the text, or the pair joined with ` ‖ `."""
    columns = [split[column] for column in text_columns]
    return [PAIR_SEPARATOR.join(parts) for parts in zip(*columns)]


def _multi_label_report(
    output_dir: Path, predictions: Mapping[str, Prediction], data: TextClassificationData
) -> TaskReport:
    names = data.label_names
    train = np.asarray(data.splits["train"].with_format("numpy")["label"]) >= 0.5
    sets, counts = np.unique(train, axis=0, return_counts=True)
    baseline = sets[np.argmax(counts)]  # the label set a model that ignores the text would always predict
    metrics, per_label = {}, {}
    for split, (logits, labels, *_) in predictions.items():
        logits, labels = np.asarray(logits), np.asarray(labels)
        if logits.shape != labels.shape or logits.shape[1:] != (len(names),):
            raise ValueError(
                f"split {split!r}: logits {logits.shape} and labels {labels.shape} must both be (N, {len(names)})."
            )
        truth, predicted = labels >= 0.5, expit(logits) >= THRESHOLD
        always_baseline = np.broadcast_to(baseline, truth.shape)
        metrics[split] = {
            **multi_label_metrics(logits, labels),
            "most_frequent_set_baseline_micro_f1": float(
                f1_score(truth, always_baseline, average="micro", zero_division=0)
            ),
            "num_samples": len(labels),
        }
        scores = precision_recall_fscore_support(
            truth, predicted, labels=list(range(len(names))), average=None, zero_division=np.nan
        )
        per_label[split] = [(name, *values, train_support) for name, *values, train_support in
                            zip(names, *scores, train.sum(axis=0))]
        _write_per_label_csv(output_dir / f"{split}_per_label.csv", per_label[split])
    focus = "test" if "test" in metrics else list(metrics)[-1]
    result = metrics[focus]
    baseline_names = ", ".join(f"`{name}`" for name, on in zip(names, baseline) if on) or "no label"
    rows = [
        f"| {md.cell(name)} | {' | '.join(md.metric_value('f1', value) for value in (precision, recall, f1))} | "
        f"{int(support):,} | {int(train_support):,} |"
        for name, precision, recall, f1, support, train_support in per_label[focus]
    ]
    return TaskReport(
        metrics=metrics,
        headline=(
            f"**Micro F1 {result['micro_f1']:.4f}** on the {focus} split ({result['num_samples']:,} texts, "
            f"{len(names)} labels; a label is predicted when its sigmoid score is >= {THRESHOLD}). Predicting the "
            f"train split's most frequent label set ({baseline_names}) for every text scores "
            f"{result['most_frequent_set_baseline_micro_f1']:.4f}."
        ),
        columns=MULTI_LABEL_COLUMNS,
        notes=(
            "Micro F1 pools every (text, label) decision; macro F1 is the unweighted mean of the per-label F1 over the "
            "labels present in the split, so rare labels count as much as common ones; subset accuracy counts the "
            "texts whose whole label set is right."
        ),
        facts={"Labels": str(len(names)), "Problem type": f"multi-label (sigmoid >= {THRESHOLD} per label)"},
        sections=[
            f"## Per-label scores ({focus})\n\nPrecision, recall and F1 of each label on the {focus} split, and how "
            "many texts carry it there and in train (\"—\": undefined, the label is never predicted or never true). "
            "Every split is in `<split>_per_label.csv`.\n\n"
            "| Label | Precision | Recall | F1 | Support | Train support |\n|---|---:|---:|---:|---:|---:|\n"
            + "\n".join(rows)
        ],
        compared={"micro_f1": "micro F1", "macro_f1": "macro F1"},
        curves={"micro_f1": "micro F1", "macro_f1": "macro F1 (labels present)"},
        card_metric_types=CARD_METRIC_TYPES,
        card_note=(
            f"A label counts as predicted when its sigmoid score is >= {THRESHOLD}. Macro F1 averages the labels "
            "present in each split."
        ),
    )


def _write_per_label_csv(path: Path, rows: list[tuple]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "precision", "recall", "f1", "support", "train_support"])
        for name, *scores, support, train_support in rows:
            cells = [f"{value:.6f}" if np.isfinite(value) else "" for value in scores]
            writer.writerow([name, *cells, int(support), int(train_support)])


def _regression_report(
    output_dir: Path, predictions: Mapping[str, Prediction], data: TextClassificationData
) -> TaskReport:
    name = data.label_names[0]
    mean = float(np.mean(data.splits["train"].with_format("numpy")["label"]))  # a model ignoring the text predicts it
    metrics = {}
    for split, (outputs, labels, *_) in predictions.items():
        outputs, labels = np.asarray(outputs), np.asarray(labels)
        if outputs.size != labels.size or labels.ndim != 1:
            raise ValueError(
                f"split {split!r}: outputs {outputs.shape} do not fit labels {labels.shape} (one score each)."
            )
        metrics[split] = {
            **regression_metrics(outputs, labels),
            "mean_baseline_mse": float(np.mean((labels - mean) ** 2)),
            "num_samples": len(labels),
        }
        _plot_predictions(output_dir / f"{split}_predictions.png", outputs.reshape(-1), labels, split, name)
    focus = "test" if "test" in metrics else list(metrics)[-1]
    result = metrics[focus]
    correlation = f" Pearson r {result['pearson']:.3f}." if "pearson" in result else ""
    pictures = [f"![Predicted against true {name}, {split} split]({split}_predictions.png)" for split in metrics]
    return TaskReport(
        metrics=metrics,
        headline=(
            f"**MSE {result['mse']:.4g}** on the {focus} split ({result['num_samples']:,} texts); predicting the train "
            f"mean ({mean:.4g}) for every text gives {result['mean_baseline_mse']:.4g}.{correlation}"
        ),
        columns=REGRESSION_COLUMNS,
        notes="R² is 1 - MSE / (the split's own variance): 0 means no better than predicting the split's mean.",
        facts={"Problem type": f"regression of `{name}`"},
        sections=["## Predicted against true\n\n" + "\n\n".join(pictures)],
        compared={"mse": "MSE", "pearson": "Pearson r"},
        curves={"r2": "R²", "pearson": "Pearson r"},
        card_metric_types=CARD_METRIC_TYPES,
    )


def _plot_predictions(path: Path, predicted: np.ndarray, true: np.ndarray, split: str, name: str) -> None:
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.scatter(true, predicted, s=8, alpha=0.5)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="grey", linewidth=1, label="predicted = true")
    axes.set_xlabel(f"true {name}")
    axes.set_ylabel(f"predicted {name}")
    axes.set_title(f"{split} split")
    axes.legend()
    figure.savefig(path, dpi=100)


def _single_label_mistakes(texts: list[str], logits: np.ndarray, labels: np.ndarray, names: list[str], split: str
                           ) -> str:
    """The texts whose wrong class got the highest softmax probability."""
    probabilities = softmax(logits, axis=-1)
    predicted = probabilities.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:NUM_MISTAKES]
    rows = [
        [str(i), md.cell(names[labels[i]]), md.cell(names[predicted[i]]), f"{probabilities[i, predicted[i]]:.1%}",
         md.cell(texts[i])]
        for i in order
    ]
    intro = f"{len(wrong)} of {len(labels)} {split} texts are misclassified; the {len(order)} the model was surest of:"
    return _table(intro, ["row", "true", "predicted", "confidence", "text"], rows)


def _multi_label_mistakes(texts: list[str], logits: np.ndarray, labels: np.ndarray, names: list[str], split: str
                          ) -> str:
    """The texts with a wrong label set, by their surest wrong yes/no call."""
    probabilities = expit(logits)
    truth, predicted = labels >= 0.5, probabilities >= THRESHOLD
    certainty = np.where(predicted, probabilities, 1 - probabilities)  # how sure each yes/no call was
    wrong_calls = np.where(predicted != truth, certainty, -1.0)
    wrong = np.flatnonzero((predicted != truth).any(axis=1))
    order = wrong[np.argsort(-wrong_calls[wrong].max(axis=1), kind="stable")][:NUM_MISTAKES]

    def label_set(row: np.ndarray) -> str:
        return md.cell(", ".join(names[j] for j in np.flatnonzero(row)) or "—")

    rows = []
    for i in order:
        j = int(np.argmax(wrong_calls[i]))
        call = f"{names[j]} {'predicted' if predicted[i, j] else 'missed'} (score {probabilities[i, j]:.1%})"
        rows.append([str(i), label_set(truth[i]), label_set(predicted[i]), md.cell(call), md.cell(texts[i])])
    intro = f"{len(wrong)} of {len(labels)} {split} texts get a wrong label set; the {len(order)} surest wrong calls:"
    return _table(intro, ["row", "true labels", "predicted labels", "surest wrong call", "text"], rows)


def _largest_errors(texts: list[str], outputs: np.ndarray, labels: np.ndarray, names: list[str], split: str) -> str:
    """The texts whose predicted score is furthest from the true one."""
    predicted = outputs.reshape(-1)
    order = np.argsort(-np.abs(predicted - labels), kind="stable")[:NUM_MISTAKES]
    rows = [[str(i), f"{labels[i]:.4g}", f"{predicted[i]:.4g}", f"{predicted[i] - labels[i]:+.4g}", md.cell(texts[i])]
            for i in order]
    intro = f"The {len(order)} {split} texts of {len(labels)} with the largest absolute error in `{names[0]}`:"
    return _table(intro, ["row", "true", "predicted", "error", "text"], rows)


def _table(intro: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return intro
    return f"{intro}\n\n{md.table(header, rows)}"


def _shorten(text: str, limit: int = MISTAKE_TEXT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- predict (hf-ft predict) --------------------------------------------------------------------------------


def load_predictor(source: str, *, device: torch.device, token: str | None = None, cache_dir: str | None = None
                   ) -> Predictor:
    """An hf_ft output dir (full or adapter-only) or any Hub sequence classifier, with its tokenizer, for inference.

    Raises:
        FileNotFoundError / InputError: the checkpoint cannot be found (offline: not cached).
    """
    hub_kwargs = {"token": token, "cache_dir": cache_dir}
    model, kind = load_trained(source, AutoModelForSequenceClassification.from_pretrained, **hub_kwargs)
    with offline_hint(source):
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
    if tokenizer.pad_token is None:  # as load_model: decoder-only checkpoints pad with the end-of-text token
        tokenizer.pad_token = tokenizer.eos_token
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return Predictor(model.to(device), tokenizer, label_names, kind, device)


def _problem_type(predictor: Predictor) -> str:
    config = predictor.model.config
    return config.problem_type or (REGRESSION if config.num_labels == 1 else SINGLE_LABEL)


def read_inputs(args: PredictArguments, trained: dict) -> Inputs:
    """The input (a file or a Hub split), its text column(s) (those asked for, else the run's when the input has them, else found) and the label
    column if there is one. `trained` is the training run's arguments.

    Raises:
        InputError: no text column, or a column asked for that is absent.
    """
    split = load_input(args)
    trained_texts = trained.get("text_column_names")
    if args.text_column_names is None and trained_texts and all(
            name.strip() in split.column_names for name in trained_texts.split(",")):
        text_columns = find_text_columns(split, trained_texts)
    else:
        text_columns = find_text_columns(split, args.text_column_names)
    label_column = reference_column(split, args.label_column_name, trained.get("label_column_name"))
    return Inputs(split, text_columns, joined_texts(split, text_columns), label_column, trained)


def predict(predictor: Predictor, inputs: Inputs, args: PredictArguments) -> Predictions:
    """Per text: top-k classes (one label), the labels scoring >= 0.5 and the top-k scores (multi-label), or the
    score (regression). With a label column, the metrics of the report for the problem type. Texts are truncated
    where training truncated them (the saved tokenizer's `model_max_length`).

    Raises:
        InputError: references the model has no label for, before anything is predicted.
    """
    split, label_column = inputs.split, inputs.label_column
    columns = [split[column] for column in inputs.columns]
    tokenizer, model = predictor.preprocessor, predictor.model
    references = None if label_column is None else _reference_names(predictor, split, label_column, inputs.trained)
    targets = None if references is None else _prediction_targets(predictor, references, label_column)

    def forward(indices: Sequence[int]) -> np.ndarray:
        texts = [[column[i] for i in indices] for column in columns]
        encoded = tokenizer(*texts, truncation=True, padding=True, return_tensors="pt").to(predictor.device)
        return model(**encoded).logits.float().cpu().numpy()

    outputs = outputs_of(forward, range(len(split)), args.batch_size)
    if _problem_type(predictor) == SINGLE_LABEL:
        rows = classification.prediction_rows(softmax(outputs, axis=-1), predictor.label_names, args.top_k,
                                              inputs.names, references)
        metrics = None if targets is None else classification.classification_metrics(
            outputs, targets, len(predictor.label_names))
    elif _problem_type(predictor) == MULTI_LABEL:
        rows = classification.prediction_rows(expit(outputs), predictor.label_names, args.top_k, inputs.names,
                                              references, threshold=THRESHOLD)
        metrics = None if targets is None else multi_label_metrics(outputs, targets)
    else:
        rows = [{"input": text, "score": round(float(value), 6)} for text, value in zip(inputs.names, outputs[:, 0])]
        for row, reference in zip(rows, references or ()):
            row["reference"] = reference
        metrics = None if targets is None else regression_metrics(outputs, targets)
    if metrics is not None:
        metrics["num_samples"] = len(split)
    return Predictions(rows, metrics)


def _reference_names(predictor: Predictor, split: Dataset, column: str, trained: Mapping) -> list:
    if _problem_type(predictor) == SINGLE_LABEL:
        return label_utils.label_values(split, column)
    if _problem_type(predictor) == MULTI_LABEL:
        return [[str(label) for label in labels]
                for labels in _label_lists("input", split, column, trained.get("label_delimiter"))]
    return [float(value) for value in split[column]]


def _prediction_targets(predictor: Predictor, references: list, column: str) -> np.ndarray:
    """The references as the metrics take them: class ids, multi-hot rows, or scores; checked against the labels."""
    if _problem_type(predictor) == SINGLE_LABEL:
        return classification.reference_ids(references, predictor.label_names, column)
    if _problem_type(predictor) == REGRESSION:
        return np.array(references, dtype=np.float64)
    flat = [label for labels in references for label in labels]
    classification.reference_ids(flat, predictor.label_names, column)  # refuses a label the model lacks
    index = {name: i for i, name in enumerate(predictor.label_names)}
    hot = np.zeros((len(references), len(index)), dtype=np.float32)
    for row, labels in enumerate(references):
        hot[row, [index[label] for label in labels]] = 1.0
    return hot
