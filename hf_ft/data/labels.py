"""Find the label column, encode labels as one ClassLabel shared by every split, and check them."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..errors import InputError

logger = logging.getLogger(__name__)

LABEL_COLUMN_CANDIDATES = ("label", "labels", "class", "target", "category")
# A label column "looks like an ID" (see `warn_if_id_like`) when it has more than ID_LIKE_MIN_CLASSES distinct
# values and they are more than ID_LIKE_UNIQUE_FRACTION of the train rows (under two examples per class on
# average), or when every one of at least ID_LIKE_ALL_UNIQUE_MIN_ROWS rows has a label of its own.
ID_LIKE_MIN_CLASSES = 100
ID_LIKE_UNIQUE_FRACTION = 0.5
ID_LIKE_ALL_UNIQUE_MIN_ROWS = 20
# Value dtypes a label can have; "null" (an all-empty column) passes so that the null check names the problem.
_LABEL_DTYPE_PREFIXES = ("string", "large_string", "int", "uint", "bool", "float", "null")
_TYPE_SAMPLE_ROWS = 1000


def find_label_column(train: Dataset, requested: str | None) -> str:
    """The label column: `requested`, else the only ClassLabel column, else an obviously named one.

    Raises:
        InputError: the column does not exist or none can be found; the message lists the real columns.
    """
    columns = train.column_names
    if requested is not None:
        if requested not in columns:
            raise InputError(f"--label_column_name `{requested}` not found; the data has columns {columns}.")
        return requested
    class_labels = [name for name, feature in train.features.items() if isinstance(feature, ClassLabel)]
    if len(class_labels) == 1:
        return class_labels[0]
    for name in LABEL_COLUMN_CANDIDATES:
        if name in columns:
            return name
    raise InputError(f"Cannot tell which column holds the labels; set --label_column_name to one of {columns}.")


def label_values(split: Dataset, column: str) -> list[str]:
    """The labels of `column` as names: a ClassLabel's names, other values as text (`encode_labels` names integer
    labels the same way, so a model trained on them matches by name)."""
    feature = split.features[column]
    values = split[column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(int(value)) for value in values]
    return [str(value) for value in values]


def encode_labels(splits: DatasetDict, column: str) -> DatasetDict:
    """Return `splits` with `column` renamed to `label`, a ClassLabel with the same names in every split.

    String, integer or boolean labels get names from the training split (sorted; integers numerically).

    Raises:
        InputError: a label is missing (null or an empty string), labels mix value types or are not scalars
            (`check_label_values`), or an evaluation split has labels that training never sees.
    """
    for name, split in splits.items():
        check_label_values(name, split, column)
    feature = splits["train"].features[column]
    if isinstance(feature, ClassLabel):
        names = feature.names
        for name, split in splits.items():
            if split.features[column] != feature:
                raise InputError(
                    f"The {name} split's label names differ from train's in column `{column}`: "
                    f"{split.features[column]} vs {feature}."
                )
    else:
        names = _names_from_values(splits["train"].unique(column))
        for name, split in splits.items():
            _check_values_known(name, split.unique(column), names)
        index = {value: i for i, value in enumerate(names)}
        splits = DatasetDict(
            {
                name: split.map(lambda row: {column: index[str(row[column])]}).cast_column(column, ClassLabel(names=names))
                for name, split in splits.items()
            }
        )
    if column != "label":
        splits = splits.rename_column(column, "label")
    return splits


def check_label_values(split_name: str, split: Dataset, column: str) -> None:
    """Refuse a label column a ClassLabel cannot be built from: not one scalar per row, mixed types, or missing.

    Raises:
        InputError: the column holds lists/dicts, or mixes types (json `1` and `"cat"`: datasets then gives a
            `Json` feature that arrow cannot even count), or some rows have a null or empty/blank string label.
    """
    feature = split.features[column]
    if not isinstance(feature, (ClassLabel, Value)) or not feature.dtype.startswith(_LABEL_DTYPE_PREFIXES):
        raise InputError(_not_scalar_message(split_name, split, column))
    values = split.select_columns([column]).with_format("arrow")[:][column]
    if values.null_count:
        raise InputError(
            f"{values.null_count} rows of the {split_name} split have no label in column `{column}`; drop or fill them."
        )
    if feature.dtype in ("string", "large_string"):
        # An empty label is a missing one written as "" (json, or csv with quotes): it would become a class of its own.
        blank = pc.sum(pc.equal(pc.utf8_trim_whitespace(values), "")).as_py() or 0
        if blank:
            raise InputError(
                f"{blank} rows of the {split_name} split have an empty label ('') in column `{column}`; drop or fill them."
            )


def _not_scalar_message(split_name: str, split: Dataset, column: str) -> str:
    sample = split.select(range(min(len(split), _TYPE_SAMPLE_ROWS)))[column]
    examples = {}
    for value in sample:
        if value is not None:
            examples.setdefault(type(value).__name__, value)
    if len(examples) > 1:
        shown = ", ".join(f"{kind} {value!r}" for kind, value in examples.items())
        return (
            f"Column `{column}` of the {split_name} split mixes label types ({shown}): make every label a string "
            "(quote the numbers in the data file) or every label an integer."
        )
    return (
        f"Column `{column}` of the {split_name} split holds {split.features[column]}, not one class label (a string "
        "or an integer) per row; set --label_column_name to the class column."
    )


def warn_if_id_like(train: Dataset, column: str, others: list[str]) -> None:
    """Warn when the label column has almost one distinct value per row: an ID, file name or measured value.

    Only a warning: some data sets really have many classes. The rule is in `ID_LIKE_*` above; `others` are the
    columns to suggest instead. Columns `check_label_values` refuses are left to it.
    """
    feature = train.features[column]
    if not isinstance(feature, (ClassLabel, Value)) or not feature.dtype.startswith(_LABEL_DTYPE_PREFIXES):
        return
    rows, distinct = len(train), len(train.unique(column))
    many = distinct > ID_LIKE_MIN_CLASSES and distinct > ID_LIKE_UNIQUE_FRACTION * rows
    if not (many or (distinct == rows >= ID_LIKE_ALL_UNIQUE_MIN_ROWS)):
        return
    instead = f"set --label_column_name to one of {others}" if others else "check --label_column_name"
    logger.warning(
        "Label column `%s` has %d distinct values in %d train rows (%.0f%%): it looks like an ID, file name or "
        "measured value, not class labels (a class needs several examples to be learned). If it is not the "
        "label, %s; if these really are classes, ignore this.",
        column, distinct, rows, 100 * distinct / rows, instead,
    )


def _names_from_values(values: list) -> list[str]:
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return [str(v) for v in sorted(values)]
    return sorted(str(v) for v in values)


def _check_values_known(split_name: str, values: list, names: list[str]) -> None:
    unseen = sorted({str(v) for v in values} - set(names))
    if unseen:
        raise InputError(
            f"Labels {unseen[:5]} appear in the {split_name} split but never in train, so the model cannot learn "
            f"them. Train labels are {names[:20]}."
        )


def reorder_labels(splits: DatasetDict, label_names: Sequence[str]) -> DatasetDict:
    """`splits` with their `label` column (a ClassLabel) re-encoded to `label_names`: the same names in another order,
    e.g. the order of a checkpoint trained on them (`hf_ft.models.match_labels`)."""
    current = splits["train"].features["label"].names
    if list(current) == list(label_names):
        return splits
    position = np.array([list(label_names).index(name) for name in current])
    feature = ClassLabel(names=list(label_names))
    return DatasetDict({
        name: split.map(lambda batch: {"label": position[np.asarray(batch["label"], dtype=np.int64)].tolist()},
                        batched=True, features=Features({**split.features, "label": feature}))
        for name, split in splits.items()
    })


def label_counts(split: Dataset, num_labels: int) -> np.ndarray:
    """Examples per class id in `split` (its `label` column)."""
    labels = np.asarray(split.select_columns(["label"]).with_format("numpy")["label"], dtype=np.int64)
    return np.bincount(labels, minlength=num_labels)


def check_label_coverage(splits: DatasetDict) -> None:
    """Refuse data a classifier cannot learn from: one class only, or evaluation labels absent from train.

    Raises:
        InputError: naming the split and the labels.
    """
    names = splits["train"].features["label"].names
    train_counts = label_counts(splits["train"], len(names))
    present = [names[i] for i in np.flatnonzero(train_counts)]
    if len(present) < 2:
        raise InputError(f"The train split has only one class ({present}); a classifier needs at least two.")
    for name, split in splits.items():
        if name == "train":
            continue
        counts = label_counts(split, len(names))
        _check_values_known(name, [names[i] for i in np.flatnonzero(counts)], present)


def add_validation_split(splits: DatasetDict, fraction: float, seed: int) -> DatasetDict:
    """Hold out a stratified `fraction` of train as `validation` when the data has none.

    Raises:
        InputError: some class has too few examples to appear on both sides.
    """
    if "validation" in splits:
        return splits
    try:
        parts = splits["train"].train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    except ValueError as err:
        raise InputError(
            f"Cannot hold out a stratified {fraction:.0%} validation split ({err}). Provide a validation split "
            "(--validation_dir/--validation_file/--validation_split_name) or change --train_val_split."
        ) from err
    return DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
