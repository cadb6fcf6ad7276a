"""Find the label column, encode labels as one ClassLabel shared by every split, and check them."""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict
from ..errors import InputError

LABEL_COLUMN_CANDIDATES = ("label", "labels", "class", "target", "category")


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


def encode_labels(splits: DatasetDict, column: str) -> DatasetDict:
    """Return `splits` with `column` renamed to `label`, a ClassLabel with the same names in every split.

    String, integer or boolean labels get names from the training split (sorted; integers numerically).

    Raises:
        InputError: a label is missing (null), or an evaluation split has labels that training never sees.
    """
    for name, split in splits.items():
        nulls = split.select_columns([column]).with_format("arrow")[:][column].null_count
        if nulls:
            raise InputError(f"{nulls} rows of the {name} split have no label in column `{column}`; drop or fill them.")
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
