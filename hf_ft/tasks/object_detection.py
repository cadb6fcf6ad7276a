"""The object-detection task: COCO-format or `objects`-column data with checked boxes, any
`AutoModelForObjectDetection` checkpoint with a class head for the data's categories, box-aware augmentation,
COCO mAP from torchmetrics, and a report with per-class AP, precision-recall curves, drawn detections and the
original checkpoint's score on the same images.

Data, in one form whatever the source: `image`, `image_id`, `width`, `height` and `objects` = {`bbox`: absolute
corners (x1, y1, x2, y2) in pixels, `category`: label ids}. Sources: an image folder plus a COCO instances JSON
(`--train_dir`, `--train_annotations_file`), a Hub dataset with an `objects` column (the cppe-5 layout), or local
json/jsonl/parquet files of the same layout with image paths.

Evaluation never holds the model's raw outputs: each batch is post-processed by the checkpoint's own image
processor (as `pipeline("object-detection")` does) into its top `max_detections` boxes per image, and only those
are gathered (`DetectionTrainer.prediction_step`); mAP is updated batch by batch (`batch_eval_metrics`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value
from PIL import Image as PILImage
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForObjectDetection,
    BaseImageProcessor,
    EvalPrediction,
    PreTrainedModel,
    TrainingArguments,
)

from .. import classification, runs
from ..args import ConfigError, DataArguments, ModelArguments
from ..data import sources
from ..errors import InputError
from ..hub import CardFacts, check_model_source
from ..models import load_for_labels, offline_hint, saved_label_names
from ..peft import load_trained
from ..predict import Inputs, PredictArguments, Predictions, Predictor, batches, input_column, load_input
from ..report import TaskReport
from ..runs import baseline_scores
from ..vision import boxes as box_ops
from ..vision import detection_report
from ..vision import images
from ..vision.coco import find_annotations_file, read_coco
from ..vision.trainer import ImageTrainer

logger = logging.getLogger("hf_ft")

# The `pipeline()` task name, the model card's `pipeline_tag`.
TASK = "object-detection"
PR_CURVES_FILE = "pr_curves.png"
DETECTIONS_FILE = "detections.png"
# Headline metrics (torchmetrics' MeanAveragePrecision keys) -> column titles; small/medium/large are COCO's areas.
COLUMNS = {
    "map": "mAP",
    "map_50": "mAP@50",
    "map_75": "mAP@75",
    "map_small": "mAP small",
    "map_medium": "mAP medium",
    "map_large": "mAP large",
    "mar_100": "AR@100",
}
_FEATURES = {
    "image_id": Value("int64"),
    "width": Value("int32"),
    "height": Value("int32"),
    "objects": {"bbox": List(List(Value("float32"), length=4)), "category": List(Value("int64"))},
}
_SHOWN = 5


@dataclass
class DetectionDataArguments(images.ImageFileArguments, DataArguments):
    """Detection data: where the boxes are, their format, augmentation and what the report draws."""

    train_annotations_file: str | None = field(
        default=None,
        metadata={
            "help": "COCO instances JSON of --train_dir (`file_name`s relative to it). Unset: the only *.json in "
            "--train_dir (Roboflow's `_annotations.coco.json` layout)."
        },
    )
    validation_annotations_file: str | None = field(default=None, metadata={"help": "Like `train_annotations_file`, for --validation_dir."})
    test_annotations_file: str | None = field(default=None, metadata={"help": "Like `train_annotations_file`, for --test_dir."})
    objects_column_name: str = field(
        default="objects",
        metadata={
            "help": "The column of a dataset or file holding each image's boxes: `bbox` and `category` lists (the "
            "cppe-5 layout), or a list of {bbox, category} objects. COCO folders need none."
        },
    )
    box_format: str = field(
        default="xywh",
        metadata={
            "help": "How the dataset's boxes are written: `xywh` (COCO: left, top, width, height), `xyxy` (Pascal VOC "
            "corners) or `cxcywh` (centre, width, height). COCO instances files are always xywh."
        },
    )
    boxes_normalized: bool = field(
        default=False, metadata={"help": "The boxes are fractions of the image's width and height, not pixels."}
    )
    min_box_size: float = field(
        default=1.0,
        metadata={"help": "Boxes narrower or lower than this many pixels (after clipping to the image) are dropped."},
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize to this resolution instead of the checkpoint's (square for fixed-size processors such as "
            "RT-DETR's; the shorter side for DETR's). Saved with the model, so pipeline() uses it too."
        },
    )
    hflip: float = field(default=0.5, metadata={"help": "Probability of a horizontal flip in training (0 for digits, text)."})
    photometric_distort: float = field(
        default=0.5,
        metadata={"help": "Probability of colour jitter in training (RT-DETR's ranges: brightness 0.875-1.125, "
                  "contrast and saturation 0.5-1.5, hue ±0.05)."},
    )
    zoom_out: float = field(
        default=0.5,
        metadata={"help": "Probability of shrinking the image to 50-100% of its size, shifted, on a black canvas of "
                  "the same size, in training (smaller objects)."},
    )
    bbox_safe_crop: float = field(
        default=0.8,
        metadata={"help": "Probability of a random crop that keeps every box whole (albumentations' "
                  "BBoxSafeRandomCrop), in training (larger objects)."},
    )
    cache_images: bool = field(
        default=False,
        metadata={
            "help": "Not available for detection: the image task's decoded-image cache resizes images, and boxes "
            "would no longer match them. Leave false."
        },
    )
    max_detections: int = field(
        default=100, metadata={"help": "Boxes kept per image for evaluation, highest scores first (COCO's 100)."}
    )
    report_score_threshold: float = field(
        default=0.5, metadata={"help": "The report's drawn test images show predicted boxes scoring at least this."}
    )
    num_report_images: int = field(default=8, metadata={"help": "How many test images the report draws."})

    def __post_init__(self):
        super().__post_init__()
        if self.box_format not in box_ops.BOX_FORMATS:
            raise ConfigError(f"--box_format must be one of {', '.join(box_ops.BOX_FORMATS)}, got {self.box_format!r}")
        if self.cache_images:
            raise ConfigError(
                "--cache_images is not available for object detection: the decoded-image cache stores resized "
                "images, and the boxes would no longer match them. Remove it."
            )
        for name in ("class_weight", "class_balanced_sampling", "label_column_name"):
            if getattr(self, name):
                raise ConfigError(
                    f"--{name} is for classification; detection labels come from the boxes' categories "
                    "(--objects_column_name). Remove it."
                )
        for name in ("hflip", "photometric_distort", "zoom_out", "bbox_safe_crop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 32:
            raise ConfigError(f"--image_size must be >= 32, got {self.image_size}")
        if self.max_detections < 1:
            raise ConfigError(f"--max_detections must be >= 1, got {self.max_detections}")


@dataclass
class DetectionData:
    splits: DatasetDict  # train, validation[, test]: image, image_id, width, height, objects {bbox (xyxy px), category}
    label_names: list[str]


# --- data ------------------------------------------------------------------------------------------------------


def load_detection_data(
    data_args: DetectionDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> DetectionData:
    """Load, convert and check boxes, split, subsample and check images, before any model is loaded.

    Boxes become absolute corners in pixels; boxes sticking out of their image are clipped, boxes left without
    `min_box_size` pixels are dropped (both counted in the log); images without boxes are kept (they teach the
    model what is not an object). A missing validation split is held out of train (`train_val_split`).

    Raises:
        InputError / FileNotFoundError: a missing file or column, an image listed but absent, a category that the
            categories do not list, a box outside its image; the message names the file, row or value.
    """
    if data_args.train_dir:
        splits, label_names = _load_coco_splits(data_args)
    else:
        splits, label_names = _load_objects_splits(data_args, token=token, cache_dir=cache_dir)
    if "validation" not in splits:
        held_out = splits["train"].train_test_split(test_size=data_args.train_val_split, seed=seed)
        splits = DatasetDict({**splits, "train": held_out["train"], "validation": held_out["test"]})
        logger.info("No validation split: %d training images held out (seed %d)", len(held_out["test"]), seed)
    splits = sources.cap_samples(DatasetDict({n: splits[n] for n in ("train", "validation", "test") if n in splits}), data_args, seed)
    if data_args.verify_images:
        splits = images.drop_unreadable_images(splits, skip=data_args.skip_corrupt_images)
    return DetectionData(splits=splits, label_names=label_names)


def _load_coco_splits(data_args: DetectionDataArguments) -> tuple[DatasetDict, list[str]]:
    per_split, categories = {}, None
    for split in ("train", "validation", "test"):
        directory = getattr(data_args, f"{split}_dir")
        if not directory:
            continue
        image_dir = Path(directory)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"--{split}_dir {image_dir} does not exist (as a directory).")
        annotations = find_annotations_file(
            image_dir, getattr(data_args, f"{split}_annotations_file"), f"{split}_annotations_file"
        )
        split_categories, rows = read_coco(annotations, image_dir)
        if categories is None:
            categories = split_categories
        elif sorted(split_categories.values()) != sorted(categories.values()):
            raise InputError(
                f"{annotations} lists other categories than the training annotations "
                f"({sorted(split_categories.values())[:10]} vs {sorted(categories.values())[:10]}): one set for all splits."
            )
        per_split[split] = (annotations, rows, split_categories)
    label_names = [categories[i] for i in sorted(categories)]
    index = {name: i for i, name in enumerate(label_names)}
    splits = {}
    for split, (annotations, rows, split_categories) in per_split.items():
        records = [
            {**row, "category": [index[split_categories[c]] for c in row["category_id"]]} for row in rows
        ]
        if not records:
            raise InputError(f"The {split} split is empty: {annotations} lists no images.")
        splits[split] = _canonical_split(
            [r["file"] for r in records], records, box_format="xywh", normalized=False,
            min_size=data_args.min_box_size, where=str(annotations),
        )
    return DatasetDict(splits), label_names


def _load_objects_splits(data_args: DetectionDataArguments, *, token: str | None, cache_dir: str | None) -> tuple[DatasetDict, list[str]]:
    raw = sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir)
    image_column = images.find_image_column(raw["train"], data_args.image_column_name)
    objects_column = data_args.objects_column_name
    for name, split in raw.items():
        missing = [c for c in (image_column, objects_column) if c not in split.column_names]
        if missing:
            raise InputError(
                f"The {name} split has no column {missing}; it has {split.column_names}. Set --image_column_name / "
                "--objects_column_name."
            )
    label_names, to_index = _category_names(raw, objects_column)
    splits = {
        name: _objects_split(images.as_image_column(split, image_column, sources.source_dir(data_args, name)), name,
                             image_column, objects_column, to_index, data_args)
        for name, split in raw.items()
    }
    return DatasetDict(splits), label_names


def _objects_split(split: Dataset, name: str, image_column: str, objects_column: str,
                   to_index: Callable[[Any, str, int], int], data_args: DetectionDataArguments) -> Dataset:
    """One split of objects-column data (its images already an Image column) in the task's form."""
    records = []
    for position, (objects, width, height) in enumerate(
        zip(split[objects_column], _column_or_none(split, "width"), _column_or_none(split, "height"))
    ):
        bbox, category = _objects_lists(objects, name, position, objects_column)
        records.append(
            {"image_id": position, "width": width, "height": height, "bbox": bbox,
             "category": [to_index(c, name, position) for c in category]}
        )
    for record, size in zip(records, _image_sizes(split, image_column, records)):
        record["width"], record["height"] = size
    pixels = split.select_columns([image_column])
    if image_column != "image":
        pixels = pixels.rename_column(image_column, "image")
    return _canonical_split(
        pixels, records, box_format=data_args.box_format, normalized=data_args.boxes_normalized,
        min_size=data_args.min_box_size, where=f"the {name} split",
    )


def _column_or_none(split: Dataset, column: str) -> list:
    return list(split[column]) if column in split.column_names else [None] * len(split)


def _objects_lists(objects: Any, split: str, row: int, column: str) -> tuple[list, list]:
    """`bbox` and `category` lists of one row: from {bbox: [...], category: [...]} or [{bbox, category}, ...]."""
    if isinstance(objects, dict) and "bbox" in objects and "category" in objects:
        bbox, category = list(objects["bbox"]), list(objects["category"])
    elif isinstance(objects, list) and all(isinstance(o, dict) and "bbox" in o and "category" in o for o in objects):
        bbox, category = [o["bbox"] for o in objects], [o["category"] for o in objects]
    else:
        raise InputError(
            f"Row {row} of the {split} split: `{column}` must hold `bbox` and `category` lists (or a list of "
            f"{{bbox, category}} objects), got {str(objects)[:120]}."
        )
    if len(bbox) != len(category):
        raise InputError(f"Row {row} of the {split} split: {len(bbox)} boxes but {len(category)} categories in `{column}`.")
    return bbox, category


def _category_names(raw: DatasetDict, column: str) -> tuple[list[str], Callable[[Any, str, int], int]]:
    """The label names (a ClassLabel's, else the sorted distinct values) and the value -> label id mapping."""
    feature = raw["train"].features[column]
    if isinstance(feature, List):  # a list of {bbox, category} objects
        feature = feature.feature
    category = feature.get("category") if isinstance(feature, dict) else None
    category = getattr(category, "feature", category)  # List(ClassLabel) -> ClassLabel
    if isinstance(category, ClassLabel):
        names = list(category.names)

        def known(value: Any, split: str, row: int) -> int:
            if not isinstance(value, (int, np.integer)) or not 0 <= value < len(names):
                raise InputError(
                    f"Row {row} of the {split} split: category {value!r} is not one of the {len(names)} categories "
                    f"(ids 0..{len(names) - 1}: {names[:10]})."
                )
            return int(value)

        return names, known
    found = {
        category
        for name, split in raw.items()
        for row, objects in enumerate(split[column])
        for category in _objects_lists(objects, name, row, column)[1]
    }
    values = sorted(found, key=lambda v: (isinstance(v, str), v))
    names = [str(v) for v in values]
    index = {v: i for i, v in enumerate(values)}
    return names, lambda value, split, row: index[value]


def _image_sizes(split: Dataset, column: str, records: list[dict]) -> list[tuple[int, int]]:
    """Each image's (width, height): the data's own when it gives them, else read from the file's header."""
    if all(r["width"] and r["height"] for r in records):
        return [(int(r["width"]), int(r["height"])) for r in records]
    encoded = split.select_columns([column]).cast_column(column, Image(decode=False))
    sizes = []
    for record, image in zip(records, encoded[column]):
        if record["width"] and record["height"]:
            sizes.append((int(record["width"]), int(record["height"])))
            continue
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        try:
            with PILImage.open(source) as opened:
                sizes.append(opened.size)
        except (OSError, ValueError) as err:
            raise InputError(f"Cannot read the size of image {image.get('path') or record['image_id']}: {err}") from None
    return sizes


def _canonical_split(
    pixels: Dataset | list[str], records: list[dict], *, box_format: str, normalized: bool, min_size: float, where: str
) -> Dataset:
    """One split in the task's form, its boxes converted to pixel corners and cleaned (counts logged)."""
    counts, objects = box_ops.BoxCounts(), []
    for row, record in enumerate(records):
        width, height = int(record["width"]), int(record["height"])
        try:
            boxes = box_ops.to_xyxy(record["bbox"], box_format, normalized=normalized, width=width, height=height)
            kept, keep, row_counts = box_ops.clean_boxes(boxes, width=width, height=height, min_size=min_size)
        except box_ops.BoxOutsideImageError as err:
            raise InputError(
                f"{where}, image {record.get('file') or record['image_id']}: {err}. Check --box_format "
                f"(now {box_format}) and --boxes_normalized (now {str(normalized).lower()})."
            ) from None
        except (RuntimeError, TypeError, ValueError) as err:  # a box that is not four numbers
            raise InputError(
                f"{where}, image {record.get('file') or record['image_id']}: boxes {record['bbox'][:3]} are not "
                f"4 numbers each ({err})."
            ) from None
        counts.add(row_counts)
        categories = [c for c, k in zip(record["category"], keep.tolist()) if k]
        objects.append({"bbox": kept.tolist(), "category": categories})
    if counts.clipped or counts.dropped:
        logger.warning(
            "%s: %d boxes clipped to their image, %d dropped (under %g px after clipping), %d kept",
            where, counts.clipped, counts.dropped, min_size, counts.kept,
        )
    columns = {
        "image_id": [int(r["image_id"]) for r in records],
        "width": [int(r["width"]) for r in records],
        "height": [int(r["height"]) for r in records],
        "objects": objects,
    }
    if isinstance(pixels, list):  # file paths (COCO folders)
        return Dataset.from_dict({"image": pixels, **columns}, features=Features({"image": Image(), **_FEATURES}))
    data = pixels
    for name, values in columns.items():
        data = data.add_column(name, values, feature=_FEATURES[name])
    return data


def box_counts(split: Dataset, num_labels: int) -> np.ndarray:
    """Boxes per category in `split`."""
    counts = np.zeros(num_labels, dtype=np.int64)
    for objects in split["objects"]:
        np.add.at(counts, np.asarray(objects["category"], dtype=np.int64), 1)
    return counts


# --- model -----------------------------------------------------------------------------------------------------


def load_detector(
    model_args: ModelArguments, label_names: list[str], *, image_size: int | None = None
) -> tuple[PreTrainedModel, BaseImageProcessor, list[str]]:
    """A checkpoint with a class head for `label_names` (the rest of the detector kept), and its image processor.

    Labels are matched by name (`hf_ft.models.load_for_labels`): a checkpoint trained on these names keeps its head
    and its order (returned; re-encode with `follow_model_labels`); other names get a new head
    (`ignore_mismatched_sizes`). `image_size` is written into the processor, which is saved with the model.

    Raises:
        FileNotFoundError / InputError: the checkpoint cannot be found (offline: not cached).
    """
    source = model_args.model_name_or_path
    check_model_source(source, revision=model_args.model_revision, cache_dir=model_args.cache_dir)
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **model_args.hub_kwargs())
    warn_if_backbone_norms_replaced(config)
    model, label_names = load_for_labels(AutoModelForObjectDetection, config, label_names, model_args)
    with offline_hint(source):
        processor = AutoImageProcessor.from_pretrained(source, **model_args.hub_kwargs())
    if image_size is not None:
        set_processor_size(processor, image_size)
    return model, processor, label_names


def warn_if_backbone_norms_replaced(config: Any) -> None:
    """DETR-family models replace a backbone's BatchNorm with a frozen copy (always for DETR, Conditional and
    Deformable DETR; by default for RT-DETR and D-FINE). timm backbones whose BatchNorm carries the activation
    (`BatchNormAct2d`: EfficientNet, MobileNet) lose it in the swap, and their features silently stop being the
    pretrained ones. Build such checkpoints with `freeze_backbone_batch_norms=False` (RT-DETR, D-FINE)."""
    backbone = getattr(config, "backbone_config", None)
    if getattr(backbone, "model_type", None) == "timm_backbone" and getattr(config, "freeze_backbone_batch_norms", True):
        logger.warning(
            "%s replaces the BatchNorm of its timm backbone %s with a frozen copy; for timm models whose BatchNorm "
            "holds the activation (EfficientNet, MobileNet) the activation is lost and the pretrained features "
            "change. Rebuild the checkpoint with freeze_backbone_batch_norms=False if it supports it.",
            type(config).__name__, getattr(backbone, "backbone", "?"),
        )


def set_processor_size(processor: BaseImageProcessor, image_size: int) -> None:
    """Resize to `image_size`: both sides for fixed-size processors, the shorter side (longer in proportion) else."""
    size = dict(processor.size)
    if "height" in size and "width" in size:
        processor.size = {"height": image_size, "width": image_size}
    elif "shortest_edge" in size:
        ratio = size.get("longest_edge", size["shortest_edge"]) / size["shortest_edge"]
        processor.size = {"shortest_edge": image_size, "longest_edge": round(image_size * ratio)}
    else:
        raise InputError(f"--image_size: cannot resize with {type(processor).__name__} (its size is {size}).")


def follow_model_labels(data: DetectionData, model_labels: list[str]) -> DetectionData:
    """`data` with its category ids in the model's label order (a checkpoint trained on the same names keeps its own)."""
    if model_labels == data.label_names:
        return data
    to_model = {i: model_labels.index(name) for i, name in enumerate(data.label_names)}

    def remap(row: dict) -> dict:
        return {"objects": {"bbox": row["objects"]["bbox"], "category": [to_model[c] for c in row["objects"]["category"]]}}

    return DetectionData(splits=data.splits.map(remap, desc="Following the checkpoint's label order"), label_names=model_labels)


# --- transforms ------------------------------------------------------------------------------------------------


def train_augmentation(data_args: DetectionDataArguments) -> Any:
    """albumentations' box-aware transforms on uint8 HWC images: boxes move with the pixels, are clipped to the image,
    and those left under `min_box_size` are dropped. Resizing is the processor's, after.

    albumentations rather than torchvision v2: the same steps cost 4 ms an image against 29 at 640 px on one core
    (`benchmarks/detection_augmentation_cost.py`, where v2's hue step alone is most of its time), and its crop keeps
    every box whole where v2's IoU crop leaves the visible part of a dropped box unlabelled in the image."""
    albumentations = import_albumentations()
    steps = []
    if data_args.photometric_distort:
        steps.append(albumentations.ColorJitter(
            brightness=(0.875, 1.125), contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=(-0.05, 0.05),
            p=data_args.photometric_distort,
        ))
    if data_args.zoom_out:
        steps.append(albumentations.Affine(
            scale=(0.5, 1.0), translate_percent=(-0.25, 0.25), keep_ratio=True, fill=0, p=data_args.zoom_out
        ))
    if data_args.bbox_safe_crop:
        steps.append(albumentations.BBoxSafeRandomCrop(p=data_args.bbox_safe_crop))
    if data_args.hflip:
        steps.append(albumentations.HorizontalFlip(p=data_args.hflip))
    boxes = albumentations.BboxParams(
        format="pascal_voc", label_fields=["category"], clip=True, filter_invalid_bboxes=True,
        min_width=data_args.min_box_size, min_height=data_args.min_box_size,
    )
    return albumentations.Compose(steps, bbox_params=boxes)


def import_albumentations():
    # Its import asks PyPI for a newer version unless told not to: offline, that is a wait and a warning each run.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def attach_transforms(
    splits: DatasetDict, processor: BaseImageProcessor, data_args: DetectionDataArguments
) -> DatasetDict:
    """Preprocess on the fly: augmented train, plain validation/test, both through the checkpoint's processor (which
    resizes, normalises and turns the boxes into the model's targets)."""
    augment = train_augmentation(data_args)
    return DatasetDict(
        {
            name: split.with_transform(_batch_fn(processor, augment if name == "train" else None))
            for name, split in splits.items()
        }
    )


def _batch_fn(processor: BaseImageProcessor, augment: Any) -> Callable[[dict], dict]:
    def apply(batch: dict) -> dict:
        if augment is not None:
            # From NumPy's global generator, which `BatchSeededDataset` seeds from (seed, the batch's indices):
            # albumentations draws from a generator of its own, seeded from the OS unless given a seed.
            augment.set_random_seed(int(np.random.randint(2**31 - 1)))
        pixels, annotations = [], []
        for image, image_id, objects in zip(batch["image"], batch["image_id"], batch["objects"]):
            array = np.asarray(image.convert("RGB"))
            boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
            categories = np.asarray(objects["category"], dtype=np.int64)
            if augment is not None:
                out = augment(image=array, bboxes=boxes, category=categories)
                array, boxes, categories = out["image"], out["bboxes"], out["category"]
            pixels.append(array)
            annotations.append(coco_annotations(
                image_id, torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4),
                torch.as_tensor(np.asarray(categories)).long(),  # albumentations hands labels back as floats
            ))
        encoded = processor(images=pixels, annotations=annotations, return_tensors="pt", input_data_format="channels_last")
        out = {"pixel_values": list(encoded["pixel_values"]), "labels": encoded["labels"]}
        if "pixel_mask" in encoded:
            out["pixel_mask"] = list(encoded["pixel_mask"])
        return out

    return apply


def coco_annotations(image_id: int, boxes: torch.Tensor, labels: torch.Tensor) -> dict:
    """Boxes (pixel corners) in the COCO detection form that transformers' detection processors take."""
    xywh = box_ops.from_xyxy(boxes, "xywh", normalized=False, width=1, height=1)
    return {
        "image_id": int(image_id),
        "annotations": [
            {"bbox": box.tolist(), "category_id": int(label), "area": float(box[2] * box[3]), "iscrowd": 0}
            for box, label in zip(xywh, labels)
        ],
    }


def collator_for(model: PreTrainedModel) -> Callable[[list[dict]], dict[str, Any]]:
    """`collate`, passing the processor's pixel mask only to models that take one (DETR's do, YOLOS does not)."""
    takes_mask = "pixel_mask" in inspect.signature(model.forward).parameters
    return functools.partial(collate, pixel_mask=takes_mask)


def collate(examples: list[dict], pixel_mask: bool = True) -> dict[str, Any]:
    """Stack the pixels (one processor call made the batch, so one size) and keep the targets as a list."""
    batch = {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": [e["labels"] for e in examples],
    }
    if pixel_mask and "pixel_mask" in examples[0]:
        batch["pixel_mask"] = torch.stack([e["pixel_mask"] for e in examples])
    return batch


# --- trainer and metrics ---------------------------------------------------------------------------------------


class DetectionTrainer(ImageTrainer):
    """An `ImageTrainer` whose evaluation keeps, per image, only the top `max_detections` post-processed boxes.

    `prediction_step` returns the eval loss, detections (images x `max_detections` x [x1, y1, x2, y2, score,
    label], in the original image's pixels; empty slots have score -1) and targets (images x boxes x [x1, y1, x2, y2,
    label], padded with -100). These small, fixed-width arrays are what the Trainer gathers across processes and,
    in `predict`, keeps; mAP is updated batch by batch (`DetectionMetrics`, with `batch_eval_metrics`).

    `label_map` (for scoring a checkpoint with its own head): its class id -> the data's label id, -1 for classes
    the data does not have (their boxes are dropped).
    """

    def __init__(self, *args, max_detections: int = 100, label_map: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_detections, self.label_map = max_detections, label_map

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        targets = inputs["labels"]
        with torch.no_grad():
            if self.label_map is None:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach().mean()
            else:  # a head for other classes: the data's targets mean nothing to its loss
                loss, outputs = None, model(**{k: v for k, v in inputs.items() if k != "labels"})
        if prediction_loss_only:
            return loss, None, None
        sizes = torch.stack([t["orig_size"] for t in targets])
        found = self.processing_class.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        return loss, self._pack_detections(found, sizes.device), pack_targets(targets)

    def _pack_detections(self, found: list[dict], device: torch.device) -> torch.Tensor:
        packed = torch.full((len(found), self.max_detections, 6), -1.0, device=device)
        for i, result in enumerate(found):
            labels, scores, boxes = result["labels"], result["scores"].float(), result["boxes"].float()
            if self.label_map is not None:
                labels = self.label_map.to(labels.device)[labels]
                known = labels >= 0
                labels, scores, boxes = labels[known], scores[known], boxes[known]
            order = scores.argsort(descending=True)[: self.max_detections]
            count = len(order)
            packed[i, :count, :4] = boxes[order]
            packed[i, :count, 4] = scores[order]
            packed[i, :count, 5] = labels[order].float()
        return packed


def pack_targets(targets: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """The processor's targets (normalised centre boxes) as pixel corners of the original image, padded with -100."""
    most = max([len(t["class_labels"]) for t in targets] + [1])
    device = targets[0]["class_labels"].device
    packed = torch.full((len(targets), most, 5), -100.0, device=device)
    for i, target in enumerate(targets):
        height, width = target["orig_size"].tolist()
        boxes = box_ops.to_xyxy(target["boxes"].float().cpu(), "cxcywh", normalized=True, width=width, height=height)
        count = len(boxes)
        packed[i, :count, :4] = boxes.to(device)
        packed[i, :count, 4] = target["class_labels"].float()
    return packed


def unpack(predictions: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> tuple[list[dict], list[dict]]:
    """`DetectionTrainer`'s packed arrays as torchmetrics' per-image dicts (boxes, scores, labels)."""
    predictions, targets = torch.as_tensor(predictions).float().cpu(), torch.as_tensor(targets).float().cpu()
    preds, truths = [], []
    for detections, target in zip(predictions, targets):
        kept = detections[detections[:, 4] >= 0]
        preds.append({"boxes": kept[:, :4], "scores": kept[:, 4], "labels": kept[:, 5].long()})
        real = target[target[:, 4] >= 0]
        truths.append({"boxes": real[:, :4], "labels": real[:, 4].long()})
    return preds, truths


def mean_average_precision(**kwargs: Any):
    """torchmetrics' COCO mAP (faster-coco-eval backend: the COCO evaluation, compiled). Not synced across
    processes: every process is given the gathered detections of all of them."""
    from torchmetrics.detection import MeanAveragePrecision

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it prints its summary table at INFO on every compute
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval", sync_on_compute=False, **kwargs)


class DetectionMetrics:
    """`compute_metrics` for `batch_eval_metrics`: mAP accumulated over batches, computed on the last one."""

    def __init__(self):
        self.metric = None

    def __call__(self, eval_prediction: EvalPrediction, compute_result: bool = True) -> dict[str, float]:
        if self.metric is None:
            self.metric = mean_average_precision()
        self.metric.update(*unpack(eval_prediction.predictions, eval_prediction.label_ids))
        if not compute_result:
            return {}
        result, self.metric = self.metric.compute(), None
        return {key: float(result[key]) for key in COLUMNS if float(result[key]) >= 0}  # -1: no object of that size


def detection_training_args(training_args: TrainingArguments) -> TrainingArguments:
    """The TrainingArguments detection needs, set for the user (transformers' example makes them pass all three):
    the raw columns reach the transforms, the targets are found as labels, and mAP is updated batch by batch."""
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    training_args.batch_eval_metrics = True
    training_args.eval_do_concat_batches = True  # the packed arrays have one width: concatenated, not kept as batches
    return training_args


def detection_trainer(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    splits: DatasetDict,
    training_args: TrainingArguments,
    *,
    max_detections: int,
    label_map: torch.Tensor | None = None,
    callbacks: Sequence = (),
) -> DetectionTrainer:
    """A `DetectionTrainer` on `splits`: train (if there, to train on) and validation (evaluation during training; a
    Trainer with an `eval_strategy` is refused without one, even when it only predicts). `label_map`: see
    `DetectionTrainer`."""
    return DetectionTrainer(
        model=model,
        args=detection_training_args(training_args),
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("validation"),
        data_collator=collator_for(model),
        processing_class=processor,
        compute_metrics=DetectionMetrics(),
        callbacks=list(callbacks),
        max_detections=max_detections,
        label_map=label_map,
    )


# --- the original checkpoint, scored before training -----------------------------------------------------------


def score_original_model(
    model_args: ModelArguments,
    data: DetectionData,
    data_args: DetectionDataArguments,
    training_args: TrainingArguments,
    output_dir: Path,
) -> dict[str, Any]:
    """The checkpoint as published, with its own head, on the evaluation splits' images, counting only the classes it
    knows by name (its other detections are dropped; the data's classes it does not know count as missed). Saved
    in `output_dir`, reused by a resumed run for the same data and checkpoint.

    Returns:
        {"known": the data's label names the checkpoint knows, "metrics": {split: metrics}} (metrics empty when it
        knows none of them: a new head has nothing to compare).
    """
    source = model_args.model_name_or_path
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **model_args.hub_kwargs())
    own = saved_label_names(config)
    known = [name for name in data.label_names if name in own]
    evaluated = DatasetDict({name: data.splits[name] for name in ("validation", "test") if name in data.splits})

    def original_scores() -> dict[str, Any]:
        baseline: dict[str, Any] = {"known": known, "metrics": {}}
        if not known:
            return baseline
        logger.info("Scoring %s as published on the %d classes it knows: %s", source, len(known), known[:10])
        with offline_hint(source):
            model = AutoModelForObjectDetection.from_pretrained(source, **model_args.hub_kwargs())
            processor = AutoImageProcessor.from_pretrained(source, **model_args.hub_kwargs())
        label_map = torch.tensor([data.label_names.index(n) if n in data.label_names else -1 for n in own])
        transformed = attach_transforms(evaluated, processor, data_args)
        trainer = detection_trainer(model, processor, transformed, training_args,
                                    max_detections=data_args.max_detections, label_map=label_map)
        for name, split in transformed.items():
            metrics = trainer.predict(split, metric_key_prefix="original").metrics
            baseline["metrics"][name] = {
                key.removeprefix("original_"): value for key, value in metrics.items()
                if key.removeprefix("original_") in COLUMNS
            }
        return baseline

    key = {"checkpoint": source, "revision": model_args.model_revision, "known": known, "splits": _digest(evaluated)}
    return baseline_scores(output_dir, key, original_scores, should_save=training_args.should_save)


def _digest(splits: Mapping[str, Dataset]) -> dict[str, str]:
    return {
        name: hashlib.sha256(json.dumps([list(split["image_id"]), list(split["objects"])]).encode()).hexdigest()
        for name, split in splits.items()
    }


# --- card ------------------------------------------------------------------------------------------------------


def card_facts(
    model_args: ModelArguments, data_args: DetectionDataArguments, data: DetectionData, processor: BaseImageProcessor
) -> CardFacts:
    """What the model card states: the categories and the resolution the model was trained and evaluated at."""
    return CardFacts(
        task=TASK,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        label_names=data.label_names,
        facts={"image_size": "x".join(str(v) for v in dict(processor.size).values())},
    )


# --- report ----------------------------------------------------------------------------------------------------


def evaluate(
    output_dir: Path,
    predictions: Mapping[str, Any],
    data: DetectionData,
    data_args: DetectionDataArguments,
    baseline: Mapping[str, Any] | None,
) -> TaskReport:
    """COCO mAP of each evaluated split with the original checkpoint's beside it, a record per image (for the mAP
    intervals and pairing), the per-class AP table, the precision-recall curves and the drawn test images
    (`pr_curves.png`, `detections.png`)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    label_names = data.label_names
    metrics, results, examples = {}, {}, {}
    for split, prediction in predictions.items():
        preds, truths = unpack(prediction.predictions, prediction.label_ids)
        examples[split] = detection_report.image_records(
            preds, truths, label_names, *images.image_examples(data.splits[split]), data_args.report_score_threshold
        )
        metric = mean_average_precision(class_metrics=True, extended_summary=True)
        metric.update(preds, truths)
        result = metric.compute()
        results[split] = (result, preds, truths)
        original = baseline["metrics"].get(split, {}) if baseline else {}
        metrics[split] = {
            **{key: float(result[key]) for key in COLUMNS if float(result[key]) >= 0},
            **{f"original_{key}": value for key, value in original.items()},
            "num_samples": len(data.splits[split]),
        }
    shown = "test" if "test" in results else next(iter(results))
    result, preds, truths = results[shown]
    train_boxes = box_counts(data.splits["train"], len(label_names))
    sections = [
        detection_report.per_class_section(
            detection_report.per_class(result, len(label_names)), label_names,
            box_counts(data.splits[shown], len(label_names)), train_boxes, shown,
        )
    ]
    if detection_report.plot_pr_curves(output_dir / PR_CURVES_FILE, result, label_names, shown):
        sections.append(f"## Precision-recall curves ({shown})\n\n![Precision against recall at IoU 0.5, per class]({PR_CURVES_FILE})")
    count = min(data_args.num_report_images, len(preds))
    if count:
        pictures = data.splits[shown].select(range(count))["image"]
        detection_report.draw_detections(
            output_dir / DETECTIONS_FILE, pictures, preds[:count], truths[:count], label_names, data_args.report_score_threshold
        )
        sections.append(
            f"## Detections ({shown}, first {count} images)\n\nGreen: the labelled boxes. Red: the model's, scoring at "
            f"least {data_args.report_score_threshold:g} (with the score).\n\n![Images with true and predicted boxes]({DETECTIONS_FILE})"
        )
    columns = dict(COLUMNS)
    if baseline and baseline["metrics"]:
        columns.update({"original_map": "original mAP", "original_map_50": "original mAP@50"})
    headline_metrics = metrics[shown]
    headline = (
        f"**{shown} mAP {headline_metrics.get('map', 0):.3f}** (IoU 0.50:0.95; mAP@50 {headline_metrics.get('map_50', 0):.3f}) "
        f"on {len(data.splits[shown]):,} images, {len(label_names)} classes. {_baseline_sentence(baseline, shown) if baseline else ''}"
    )
    return TaskReport(
        metrics=metrics,
        headline=headline,
        columns=columns,
        notes="COCO evaluation (torchmetrics `MeanAveragePrecision`, faster-coco-eval): mAP averages IoU thresholds "
        f"0.50:0.95; small/medium/large are boxes under 32², up to 96², and above 96² pixels; at most "
        f"{data_args.max_detections} detections per image.",
        facts={"Classes": str(len(label_names)), "Training boxes": f"{int(train_boxes.sum()):,}"},
        sections=sections,
        compared={"map": "mAP", "map_50": "mAP@50"},
        curves={"map": "mAP", "map_50": "mAP@50"},
        examples=examples,
        scorer=detection_report.records_scorer,
    )


def earlier_test(
    model_args: ModelArguments, data_args: DetectionDataArguments, processor: BaseImageProcessor,
    model_labels: list[str],
) -> runs.EarlierTest | None:
    """When the checkpoint is an hf_ft detection run, its test split (loaded as its args.yaml says, categories in this
    model's order, preprocessed as this run's) to measure forgetting on; None for other checkpoints."""
    earlier = runs.load_earlier_data(model_args, DetectionDataArguments, load_detection_data, model_labels)
    if earlier is None:
        return None
    earlier = follow_model_labels(earlier, model_labels)
    test = attach_transforms(DatasetDict({"test": earlier.splits["test"]}), processor, data_args)["test"]
    return runs.EarlierTest(
        Path(model_args.model_name_or_path), test,
        evaluate=lambda output_dir, predictions: evaluate(output_dir, predictions, earlier, data_args, None),
    )


def _baseline_sentence(baseline: Mapping[str, Any], split: str) -> str:
    known = baseline["known"]
    if not baseline["metrics"]:
        return (
            "The checkpoint as published knows none of these classes (its head is new), so it has no score to compare; "
            "compare runs with `compare_with`, e.g. the same detector trained without pretrained weights."
        )
    original = baseline["metrics"].get(split, {})
    return (
        f"The checkpoint as published, with its own head, scores mAP {original.get('map', 0):.3f} on the same images "
        f"for the {len(known)} of these classes it knows by name."
    )


# --- predict (hf-ft predict) -------------------------------------------------------------------------------------


def load_predictor(source: str, *, device: torch.device, token: str | None = None, cache_dir: str | None = None
                   ) -> Predictor:
    """An hf_ft output dir or any Hub detector, with the image processor saved beside it (its size, as trained).

    Raises:
        FileNotFoundError / InputError: the checkpoint cannot be found (offline: not cached).
    """
    hub_kwargs = {"token": token, "cache_dir": cache_dir}
    model, kind = load_trained(source, AutoModelForObjectDetection.from_pretrained, **hub_kwargs)
    with offline_hint(source):
        processor = AutoImageProcessor.from_pretrained(source, **hub_kwargs)
    return Predictor(model.to(device), processor, saved_label_names(model.config), kind, device)


def read_inputs(args: PredictArguments, trained: dict) -> Inputs:
    """Images with their boxes when the input has them: a COCO folder (its instances JSON), a file or Hub split
    with an objects column (the run's box format), else any folder, file or split of images, unlabelled.

    Raises:
        InputError / FileNotFoundError: as training's checks: a box outside its image, an unknown category, ...
    """
    box_keys = ("box_format", "boxes_normalized", "min_box_size", "objects_column_name")
    path = Path(args.input)
    coco_folder = path.is_dir() and any(path.glob("*.json"))
    source = {"train_dir": str(path)} if coco_folder else {"dataset_name": args.input}  # only the box settings are read
    data_args = DetectionDataArguments(**source, **{key: trained[key] for key in box_keys if key in trained})
    if coco_folder:
        splits, categories = _load_coco_splits(data_args)
        split = splits["train"] if args.max_samples is None else splits["train"].select(
            range(min(args.max_samples, len(splits["train"]))))
        label_column = "objects"
    else:
        split = load_input(args, folder_builder="imagefolder")
        image_column = input_column(split, args.image_column_name, trained.get("image_column_name"),
                                    images.find_image_column)
        split = images.as_image_column(split, image_column, path.parent if path.is_file() else None)
        if data_args.objects_column_name in split.column_names:
            categories, to_index = _category_names(DatasetDict({"train": split}), data_args.objects_column_name)
            split = _objects_split(split, "input", image_column, data_args.objects_column_name, to_index, data_args)
            label_column = "objects"
        else:
            split = split.select_columns([image_column]).rename_columns(
                {image_column: "image"} if image_column != "image" else {})
            categories, label_column = [], None
    stored = split.cast_column("image", Image(decode=False))["image"]
    names = [image.get("path") or f"row {i}" for i, image in enumerate(stored)]
    return Inputs(split, ["image"], names, label_column, {**trained, "input_categories": categories})


def predict(predictor: Predictor, inputs: Inputs, args: PredictArguments) -> Predictions:
    """Per image, the boxes scoring at least `score_threshold` (pixel corners x1, y1, x2, y2 of the original image),
    their labels and scores, best first. With boxes in the input, the report's COCO mAP over every image's top
    `max_detections` boxes at any score (as the report scores them).

    Raises:
        InputError: a category of the input the model does not detect, before anything is predicted.
    """
    names, model, processor = predictor.label_names, predictor.model, predictor.preprocessor
    to_model = None
    if inputs.label_column is not None:
        categories = inputs.trained["input_categories"]
        to_model = torch.as_tensor(classification.reference_ids(categories, names, "category")) if categories else None
    takes_mask = "pixel_mask" in inspect.signature(model.forward).parameters
    top = int(inputs.trained.get("max_detections") or 100)
    split, found = inputs.split, []
    for indices in batches(range(len(split)), args.batch_size, "detecting"):
        pictures = [np.asarray(image.convert("RGB")) for image in split.select(indices)["image"]]
        encoded = processor(images=pictures, return_tensors="pt", input_data_format="channels_last")
        batch = {"pixel_values": encoded["pixel_values"].to(predictor.device)}
        if takes_mask and "pixel_mask" in encoded:
            batch["pixel_mask"] = encoded["pixel_mask"].to(predictor.device)
        with torch.inference_mode():
            outputs = model(**batch)
        sizes = torch.tensor([picture.shape[:2] for picture in pictures], device=predictor.device)
        for result in processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes):
            order = result["scores"].float().argsort(descending=True)[:top].cpu()
            found.append({key: result[key].float().cpu()[order] if key != "labels" else result[key].cpu()[order]
                          for key in ("boxes", "scores", "labels")})
    rows = []
    for name, detections in zip(inputs.names, found):
        shown = detections["scores"] >= args.score_threshold
        rows.append({
            "input": name,
            "boxes": [[round(v, 2) for v in box] for box in detections["boxes"][shown].tolist()],
            "labels": [names[i] for i in detections["labels"][shown].tolist()],
            "scores": [round(v, 4) for v in detections["scores"][shown].tolist()],
        })
    metrics = None
    if inputs.label_column is not None:
        metric = mean_average_precision()
        truths = []
        for objects in split["objects"]:
            labels = torch.as_tensor(objects["category"], dtype=torch.long)
            truths.append({"boxes": torch.as_tensor(objects["bbox"], dtype=torch.float32).reshape(-1, 4),
                           "labels": to_model[labels] if to_model is not None else labels})
        metric.update(found, truths)
        result = metric.compute()
        metrics = {key: float(result[key]) for key in COLUMNS if float(result[key]) >= 0}
        metrics["num_samples"] = len(split)
        for row, truth in zip(rows, truths):
            row["reference_boxes"] = [[round(v, 2) for v in box] for box in truth["boxes"].tolist()]
            row["reference_labels"] = [names[i] for i in truth["labels"].tolist()]
    return Predictions(rows, metrics)
