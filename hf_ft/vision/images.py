"""Image columns: find them, turn file paths into images, and catch unreadable files before training."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, Image, Value
from PIL import Image as PILImage

from ..args import ConfigError
from ..bootstrap import example_id
from ..errors import InputError

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "image_path", "image_file", "file_path", "filepath", "path", "file")
_SHOWN_ERRORS = 5


@dataclass
class ImageFileArguments:
    """The image column and the check of every image before training: the image tasks' data arguments have them.
    List it before `DataArguments` in the bases (its `__post_init__` runs DataArguments' first)."""

    image_column_name: str | None = field(
        default=None,
        metadata={"help": "The image column (an Image feature, or file paths); found automatically when obvious."},
    )
    verify_images: bool = field(
        default=True,
        metadata={"help": "Decode every image once before training so a corrupt file fails the run at start, by name."},
    )
    skip_corrupt_images: bool = field(
        default=False,
        metadata={"help": "Drop unreadable images (their count is logged) instead of stopping. Needs verify_images."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.skip_corrupt_images and not self.verify_images:
            raise ConfigError("--skip_corrupt_images needs --verify_images true (images are checked in that pass).")


def find_image_column(train: Dataset, requested: str | None) -> str:
    """The image column: `requested`, else the only Image column, else an obviously named one.

    Raises:
        InputError: the column does not exist or none can be found; the message lists the real columns.
    """
    columns = train.column_names
    if requested is not None:
        if requested not in columns:
            raise InputError(f"--image_column_name `{requested}` not found; the data has columns {columns}.")
        return requested
    image_columns = [name for name, feature in train.features.items() if isinstance(feature, Image)]
    if len(image_columns) == 1:
        return image_columns[0]
    for name in IMAGE_COLUMN_CANDIDATES:
        if name in columns:
            return name
    raise InputError(f"Cannot tell which column holds the images; set --image_column_name to one of {columns}.")


def as_image_column(split: Dataset, column: str, base_dir: Path | None) -> Dataset:
    """Make `column` an Image feature; string paths are resolved against `base_dir` (a data file's folder).

    Raises:
        InputError: the column holds neither images nor file paths.
    """
    feature = split.features[column]
    if isinstance(feature, Image):
        return split
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise InputError(f"Column `{column}` holds {feature}, not images or image file paths.")
    if base_dir is not None:
        split = split.map(lambda row: {column: str(base_dir / row[column])})
    return split.cast_column(column, Image())


def drop_unreadable_images(splits: DatasetDict, *, skip: bool, num_proc: int | None = None) -> DatasetDict:
    """Decode every image of every split once; report all unreadable ones together, or drop them if `skip`.

    Every split is checked before anything is raised, so one run reports train's, validation's and test's bad
    files at once (fixing train, rerunning, and only then learning about test costs a run per split).

    Raises:
        InputError: some images cannot be read and `skip` is False: counts per split, the first five files;
            or `skip` is True and every image of a split is unreadable (an empty split cannot be used).
    """
    errors = {name: _find_unreadable(split, num_proc) for name, split in splits.items()}
    errors = {name: found for name, found in errors.items() if found}
    if errors and not skip:
        raise InputError(_unreadable_message(errors))
    checked = {}
    for name, split in splits.items():
        if name in errors:
            if len(errors[name]) == len(split):
                _, where, why = errors[name][0]
                raise InputError(f"All {len(split)} images of the {name} split are unreadable, e.g. {where}: {why}.")
            logger.warning("Skipping %d unreadable image(s) in the %s split.", len(errors[name]), name)
            bad = {index for index, _, _ in errors[name]}
            split = split.select([i for i in range(len(split)) if i not in bad])
        checked[name] = split
    return DatasetDict(checked)


def _unreadable_message(errors: dict[str, list[tuple[int, str, str]]]) -> str:
    """One line: the total, the count in each split, then the first few files with the reason.

    The files shown take turns between splits (each split's first, then each one's second...), so a split with
    many bad files does not hide that another split has some too.
    """
    total = sum(len(found) for found in errors.values())
    counts = ", ".join(f"{len(found)} in {name}" for name, found in errors.items())
    ranked = [(rank, name, where, why) for name, found in errors.items() for rank, (_, where, why) in enumerate(found)]
    first = [entry[1:] for entry in sorted(ranked, key=lambda entry: entry[0])[:_SHOWN_ERRORS]]  # stable: split order
    shown = "; ".join(f"{where} ({name}): {why}" for name, where, why in first)
    more = f" (and {total - _SHOWN_ERRORS} more)" if total > _SHOWN_ERRORS else ""
    return (
        f"{total} unreadable image(s) ({counts}): {shown}{more}. Fix or remove them, or set "
        "--skip_corrupt_images true to drop them."
    )


def _find_unreadable(split: Dataset, num_proc: int | None) -> list[tuple[int, str, str]]:
    raw = split.select_columns(["image"]).cast_column("image", Image(decode=False))
    flags = raw.map(
        _check_batch,
        batched=True,
        with_indices=True,
        remove_columns=["image"],
        num_proc=num_proc,
        desc="Checking images",
    )
    return [(row["index"], row["where"], row["error"]) for row in flags.filter(lambda row: row["error"] != "")]


def _check_batch(batch: dict, indices: list[int]) -> dict:
    wheres, errors = [], []
    for index, image in zip(indices, batch["image"]):
        path = image.get("path")
        wheres.append(path or f"row {index}")
        errors.append(_read_error(image))
    return {"index": indices, "where": wheres, "error": errors}


def open_undecoded(image: dict) -> PILImage.Image:
    """Open an `Image(decode=False)` value (`bytes` or `path`): the header is read now, the pixels on `load()`."""
    return PILImage.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"])


def _read_error(image: dict) -> str:
    try:
        with open_undecoded(image) as img:
            img.load()  # a full decode: truncated files pass `open` and only fail here
    except Exception as err:  # noqa: BLE001 - any failure to decode means the file is unusable
        return f"{type(err).__name__}: {err}"
    return ""


def image_examples(split: Dataset) -> tuple[list[str], list[str]]:
    """Each image's `hf_ft.bootstrap.example_id` (from its bytes, so the same image has the same id wherever it is
    stored) and a name for people (its file name, else its row)."""
    raw = split.select_columns(["image"]).cast_column("image", Image(decode=False))
    ids, names = [], []
    for index, image in enumerate(raw["image"]):
        path = image.get("path")
        ids.append(example_id(image.get("bytes") or Path(path).read_bytes()))
        names.append(Path(path).name if path else f"row {index}")
    return ids, names

