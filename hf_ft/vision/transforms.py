"""Train and eval preprocessing taken from the checkpoint's own processor, applied lazily.

Evaluation uses exactly the saved image processor, so the metrics in the report are what
`pipeline("image-classification", model=output_dir)` gives. Training adds timm's random-resized-crop, flip
and colour augmentation at the processor's size, mean and std.

Training batches leave the data loader workers as uint8 pixels and are normalised on the training device
(`normalize`, called by `hf_ft.vision.trainer.ImageTrainer`), as timm's own loader does: the augmentation of a
300-500 px photo for 224 px training costs a worker 2.3 ms instead of 3.7 (`benchmarks/input_pipeline_cost.py`),
and a quarter of the bytes moves between processes and to the GPU. The values are the same as normalising in the worker.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from datasets import DatasetDict
from timm.data import create_transform
from transformers import BaseImageProcessor, TimmWrapperImageProcessor

_RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def data_config(processor: BaseImageProcessor) -> dict[str, Any]:
    """timm-style data config (input_size, interpolation, mean, std, crop_pct) of an image processor."""
    if isinstance(processor, TimmWrapperImageProcessor):
        return dict(processor.data_config)
    size = processor.size
    if getattr(processor, "crop_pct", None) and size.get("shortest_edge"):
        side, crop_pct = size["shortest_edge"], processor.crop_pct
        height = width = side
    elif getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        height, width = processor.crop_size["height"], processor.crop_size["width"]
        crop_pct = height / (size.get("shortest_edge") or size.get("height"))
    else:
        height = size.get("height") or size.get("shortest_edge")
        width = size.get("width") or size.get("shortest_edge")
        crop_pct = 1.0
    return {
        "input_size": (3, height, width),
        "interpolation": _RESAMPLE_NAMES.get(int(processor.resample), "bilinear"),
        "mean": tuple(processor.image_mean),
        "std": tuple(processor.image_std),
        "crop_pct": crop_pct,
    }


def train_transform(processor: BaseImageProcessor, data_args: Any) -> Callable:
    """Training augmentation at the processor's resolution: one PIL image in, one uint8 CHW tensor out.

    `data_args` holds the augmentation settings (`scale`, `hflip`, `color_jitter`, `auto_augment`), as the image
    tasks' data arguments do (`hf_ft.tasks.image_classification.ImageDataArguments`).
    """
    config = data_config(processor)
    return create_transform(
        input_size=config["input_size"],
        is_training=True,
        scale=tuple(data_args.scale),
        hflip=data_args.hflip,
        color_jitter=data_args.color_jitter or 0.0,
        auto_augment=data_args.auto_augment,
        interpolation=config["interpolation"],
        mean=config["mean"],  # still used: the fill colour of RandAugment's rotations and shears
        std=config["std"],
        use_prefetcher=True,  # stop at uint8: `normalize` runs on the device
    )


def eval_transform(processor: BaseImageProcessor) -> Callable:
    """The saved processor's own inference preprocessing, one PIL image in, one tensor out."""
    if isinstance(processor, TimmWrapperImageProcessor):
        return processor.val_transforms
    return lambda image: processor(image, return_tensors="pt")["pixel_values"][0]


def attach_transforms(splits: DatasetDict, processor: BaseImageProcessor, data_args: Any) -> DatasetDict:
    """Preprocess on the fly (`with_transform`): augmented train, deterministic validation/test."""
    train_tf, eval_tf = train_transform(processor, data_args), eval_transform(processor)
    return DatasetDict(
        {name: split.with_transform(_batch_fn(train_tf if name == "train" else eval_tf)) for name, split in splits.items()}
    )


def attach_eval_transforms(splits: DatasetDict, processor: BaseImageProcessor) -> DatasetDict:
    """Every split preprocessed as evaluation is, train included (what a frozen model's features are taken on)."""
    eval_tf = eval_transform(processor)
    return DatasetDict({name: split.with_transform(_batch_fn(eval_tf)) for name, split in splits.items()})


def _batch_fn(transform: Callable) -> Callable[[dict], dict]:
    def apply(batch: dict) -> dict:
        return {
            "pixel_values": [transform(image.convert("RGB")) for image in batch["image"]],
            "labels": batch["label"],
        }

    return apply


def normalize(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (N, 3, H, W) to the model's input: the same operations as timm's ToTensor + Normalize."""
    return pixels.float().div_(255).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack preprocessed examples into a `pixel_values`/`labels` batch."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
    }
