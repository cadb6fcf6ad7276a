"""Everything the image recipe needs from its data, in one call: checked splits and label names."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import DatasetDict

from ..args import ImageDataArguments
from . import images, labels, sources
from ..errors import InputError


@dataclass
class ImageClassificationData:
    splits: DatasetDict  # train, validation[, test]; columns `image` (Image) and `label` (ClassLabel)
    label_names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def load_image_classification_data(
    data_args: ImageDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> ImageClassificationData:
    """Load, map columns, encode labels, split, subsample and check the data, before any model is loaded.

    Raises:
        InputError / FileNotFoundError: bad input, with a message naming the column, split, file or label.
    """
    raw = sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir)
    image_column = images.find_image_column(raw["train"], data_args.image_column_name)
    label_column = labels.find_label_column(raw["train"], data_args.label_column_name)
    if image_column == label_column:
        raise InputError(f"The image and label columns are both `{image_column}`; set them apart.")
    for name, split in raw.items():
        missing = [c for c in (image_column, label_column) if c not in split.column_names]
        if missing:
            raise InputError(f"The {name} split has no column {missing}; it has {split.column_names}.")
    # Before encoding: an ID column picked as label also fails later checks (unseen labels, stratified split),
    # and this warning says why first. Measured on the data as given, before any subsampling.
    others = [c for c in raw["train"].column_names if c not in (image_column, label_column)]
    labels.warn_if_id_like(raw["train"], label_column, others)

    splits = DatasetDict(
        {
            name: images.as_image_column(split.select_columns([image_column, label_column]), image_column, sources.source_dir(data_args, name))
            for name, split in raw.items()
        }
    )
    if image_column != "image":
        splits = splits.rename_column(image_column, "image")
    splits = labels.encode_labels(splits, label_column)
    splits = labels.add_validation_split(splits, data_args.train_val_split, seed)
    splits["train"] = sources.subsample(splits["train"], data_args.max_train_samples, seed)
    for name in ("validation", "test"):
        if name in splits:
            splits[name] = sources.subsample(splits[name], data_args.max_eval_samples, seed)
    labels.check_label_coverage(splits)
    if data_args.verify_images:
        splits = images.drop_unreadable_images(splits, skip=data_args.skip_corrupt_images)
    return ImageClassificationData(splits=splits, label_names=splits["train"].features["label"].names)
