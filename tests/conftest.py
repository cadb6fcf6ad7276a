"""Shared fixtures: tiny checkpoints built from configs and real digit images, all local (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """sklearn's 1,797 real 8x8 digits as an imagefolder: train/validation/test/<digit>/*.png."""
    from hf_ft.assets import export_digits_imagefolder

    return export_digits_imagefolder(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A 2-layer transformers ViT at 32 px with its image processor, saved like a Hub checkpoint."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)  # the same tiny model every session
    path = tmp_path_factory.mktemp("ckpt") / "tiny-vit"
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3,
    )
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory) -> Path:
    """timm's `test_resnet` (BatchNorm convnet, 0.4M params) saved with `timm.models.save_for_hf`.

    Saved at 32 px with 5 classes, so loading it for 10 digits really replaces the head, and its
    config.json has the `model_args.num_classes` that transformers 5 trips on.
    """
    import timm
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-timm-resnet"
    model = timm.create_model("test_resnet", num_classes=5, pretrained=False)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 32, 32), "test_input_size": (3, 32, 32)}
    timm.models.save_for_hf(model, path)
    return path
