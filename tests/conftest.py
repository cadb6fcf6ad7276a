"""Shared fixtures: tiny checkpoints built from configs and real digit images, all local (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs a worker per core (pyproject's addopts): each trains on one thread, as what it launches
    # (accelerate, notebook kernels) does. Two OpenMP threads per worker would spin against the other worker at every
    # barrier: two workers with two threads each ran the suite in 29.7 min against 35 min on one worker.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

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


@pytest.fixture(scope="session")
def digits_lite0(tmp_path_factory, digits_dir):
    """A real digits classifier built in seconds: ImageNet EfficientNet-Lite0 at 64 px with a fitted 10-digit head.

    The converted demo weights (`hf_ft.assets`) with a new head fitted on their pooled features of the digits
    train split (multinomial logistic regression, L-BFGS): ~94% test accuracy with confident logits, so a
    variant that agrees with it has kept what the network computes (an untrained model's near-uniform logits
    would flip argmax on any noise). Shared by the quantization and export tests; do not modify it.

    Returns:
        A namespace with `model` (eval mode), `processor`, `pixels` / `labels` per split ("train", "test"):
        float32 (N, 3, 64, 64) preprocessed by the processor's eval transform, and int64 class ids; and
        `test_logits`, the model's fp32 logits on the test split, the reference its variants are held to.
    """
    from types import SimpleNamespace

    import numpy as np
    import torch
    from PIL import Image

    from hf_ft.args import ModelArguments
    from hf_ft.assets import convert_efficientnet_lite0
    from hf_ft.tasks.image_classification import load_image_classifier
    from hf_ft.vision.transforms import eval_transform

    checkpoint = convert_efficientnet_lite0(tmp_path_factory.mktemp("ckpt") / "efficientnet_lite0")
    torch.manual_seed(0)  # the new head's initialisation, so the fit is the same every session
    model, processor = load_image_classifier(
        ModelArguments(model_name_or_path=str(checkpoint)), [str(d) for d in range(10)], image_size=64
    )
    model.eval()
    transform = eval_transform(processor)
    pixels, labels = {}, {}
    for split in ("train", "test"):
        files = sorted((digits_dir / split).glob("*/*.png"))
        pixels[split] = np.stack([transform(Image.open(f).convert("RGB")).numpy() for f in files])
        labels[split] = np.array([int(f.parent.name) for f in files])

    backbone, head = model.timm_model, model.timm_model.get_classifier()
    with torch.no_grad():  # not inference_mode: the head is fitted on these features
        features = torch.cat([
            backbone.forward_head(backbone.forward_features(torch.from_numpy(batch)), pre_logits=True)
            for batch in np.array_split(pixels["train"], 10)
        ])
    targets = torch.from_numpy(labels["train"])
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=100, history_size=10)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(head(features), targets) + 1e-3 * head.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.inference_mode():
        test_logits = torch.cat([model(pixel_values=torch.from_numpy(b)).logits for b in np.array_split(pixels["test"], 4)])
    return SimpleNamespace(model=model, processor=processor, pixels=pixels, labels=labels, test_logits=test_logits.numpy())


@pytest.fixture
def fake_hub(monkeypatch) -> list:
    """A Hub that records calls instead of making them, logged in as `alice`: the events, in order, are "whoami",
    ("create_repo", repo_id) and ("upload_folder", repo_id, the uploaded folder's file names)."""
    from huggingface_hub import HfApi

    events = []
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("hf_ft.hub.get_token", lambda: "hf_test_token")
    monkeypatch.setattr(HfApi, "whoami", lambda self, token=None, **kw: events.append("whoami") or {"name": "alice"})
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: events.append(("create_repo", repo_id)))

    def upload_folder(self, *, repo_id, folder_path, **kw):
        events.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type("Commit", (), {"commit_url": "https://huggingface.co/commit"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return events


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct, converted from its GGUF file once a session (~40 s): the SFT asset tests and
    the SFT notebook's demo assets share it."""
    from hf_ft import assets

    return assets.convert_smollm2(tmp_path_factory.mktemp("assets") / "smollm2")
