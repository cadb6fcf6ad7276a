"""The detection task's pieces: box conversions and cleaning, data loading and its errors, the backbone features,
the transforms keeping boxes in step, and the mAP code."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, List, Value

from hf_ft.args import ConfigError
from hf_ft.errors import InputError
from hf_ft.tasks import object_detection as task
from hf_ft.vision import boxes as box_ops

from .tiny_detector import build_tiny_detector, write_coco


def close(a, b, atol: float = 1e-4) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return a.shape == b.shape and torch.allclose(a, b, atol=atol)


def data_args(**kwargs) -> task.DetectionDataArguments:
    return task.DetectionDataArguments(**kwargs)


# --- boxes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("box_format", ["xywh", "xyxy", "cxcywh"])
@pytest.mark.parametrize("normalized", [False, True])
def test_box_conversions_round_trip(box_format, normalized):
    corners = torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 100.0, 50.0]])
    written = box_ops.from_xyxy(corners, box_format, normalized=normalized, width=100, height=50)
    assert torch.allclose(box_ops.to_xyxy(written, box_format, normalized=normalized, width=100, height=50), corners)


def test_box_formats_mean_what_datasets_mean():
    as_coco = box_ops.to_xyxy([[10, 20, 30, 40]], "xywh", normalized=False, width=100, height=100)
    as_centre = box_ops.to_xyxy([[0.5, 0.5, 0.2, 0.4]], "cxcywh", normalized=True, width=100, height=50)
    assert as_coco.tolist() == [[10, 20, 40, 60]]
    assert torch.allclose(as_centre, torch.tensor([[40.0, 15.0, 60.0, 35.0]]))


def test_clean_boxes_clips_drops_and_refuses_boxes_outside():
    boxes = torch.tensor([[10.0, 10, 20, 20], [-5, 5, 10, 20], [30, 30, 30, 40], [90, 10, 130, 20]])
    kept, keep, counts = box_ops.clean_boxes(boxes, width=100, height=50)
    assert keep.tolist() == [True, True, False, True]
    assert kept.tolist() == [[10, 10, 20, 20], [0, 5, 10, 20], [90, 10, 100, 20]]
    assert (counts.kept, counts.clipped, counts.dropped) == (3, 2, 1)
    with pytest.raises(box_ops.BoxOutsideImageError, match="outside the 100x50 image"):
        box_ops.clean_boxes(torch.tensor([[120.0, 10, 150, 20]]), width=100, height=50)


# --- data ------------------------------------------------------------------------------------------------------


def test_coco_folders_load_with_labels_by_category_name(tmp_path):
    train = write_coco(tmp_path / "train", 12, 0)
    test = write_coco(tmp_path / "test", 6, 1)
    data = task.load_detection_data(data_args(train_dir=str(train), test_dir=str(test)), seed=0)
    assert data.label_names == [str(d) for d in range(10)]
    assert set(data.splits) == {"train", "validation", "test"}  # validation held out of train
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 12
    coco = json.loads((test / "_annotations.coco.json").read_text())
    first = data.splits["test"][0]
    expected = [[x, y, x + w, y + h] for a in coco["annotations"] if a["image_id"] == 0 for x, y, w, h in [a["bbox"]]]
    assert close(first["objects"]["bbox"], expected)
    assert first["objects"]["category"] == [a["category_id"] - 1 for a in coco["annotations"] if a["image_id"] == 0]
    assert first["image"].size == (first["width"], first["height"])


def _rewrite(path, change):
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def test_bad_coco_data_is_one_clear_error(tmp_path):
    train = write_coco(tmp_path / "train", 4, 0)
    annotations = train / "_annotations.coco.json"
    with pytest.raises(InputError, match="test_annotations_file .*missing.json does not exist"):
        task.load_detection_data(
            data_args(train_dir=str(train), test_dir=str(train), test_annotations_file=str(tmp_path / "missing.json")),
            seed=0,
        )
    (train / "1.png").unlink()
    with pytest.raises(InputError, match=r"1 image\(s\) listed in .* are not in .*: 1.png"):
        task.load_detection_data(data_args(train_dir=str(train)), seed=0)
    _rewrite(annotations, lambda c: c.update(images=[i for i in c["images"] if i["file_name"] != "1.png"],
                                             annotations=[a for a in c["annotations"] if a["image_id"] != 1]))
    _rewrite(annotations, lambda c: c["annotations"][0].update(category_id=42))
    with pytest.raises(InputError, match="category_id 42, which is not in its categories"):
        task.load_detection_data(data_args(train_dir=str(train)), seed=0)
    _rewrite(annotations, lambda c: c["annotations"][0].update(category_id=1, bbox=[200, 10, 5, 5]))
    with pytest.raises(InputError, match="lies outside the 96x96 image. Check --box_format"):
        task.load_detection_data(data_args(train_dir=str(train)), seed=0)


def test_boxes_leaving_the_image_are_clipped_and_degenerate_ones_dropped_with_counts(tmp_path, caplog):
    train = write_coco(tmp_path / "train", 4, 0)

    def damage(coco):
        coco["annotations"][0]["bbox"] = [90, 10, 20, 10]  # sticks out on the right: clipped
        coco["annotations"][1]["bbox"] = [10, 10, 0, 10]  # no width: dropped
        coco["images"].append({"id": 99, "file_name": "0.png", "width": 96, "height": 96})  # an image without boxes

    _rewrite(train / "_annotations.coco.json", damage)
    with caplog.at_level(logging.WARNING):
        data = task.load_detection_data(data_args(train_dir=str(train), train_val_split=0.2), seed=0)
    assert "1 boxes clipped to their image, 1 dropped" in caplog.text
    rows = data.splits["train"].to_list() + data.splits["validation"].to_list()
    assert any(row["objects"]["bbox"] == [] for row in rows if row["image_id"] == 99)
    assert any([90, 10, 96, 20] in row["objects"]["bbox"] for row in rows)


def test_objects_column_files_with_other_box_formats_and_string_categories(tmp_path):
    canvas_dir = write_coco(tmp_path / "coco", 6, 0)
    coco = json.loads((canvas_dir / "_annotations.coco.json").read_text())
    names = {c["id"]: ["cat", "dog", "bird"][c["id"] % 3] for c in coco["categories"]}
    rows = []
    for image in coco["images"]:
        objects = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        # normalised corners, as a list of objects
        boxes = [[x / 96, y / 96, (x + w) / 96, (y + h) / 96] for x, y, w, h in (a["bbox"] for a in objects)]
        rows.append({"path": image["file_name"], "objects": [{"bbox": b, "category": names[a["category_id"]]}
                                                              for b, a in zip(boxes, objects)]})
    file = canvas_dir / "rows.jsonl"
    file.write_text("\n".join(json.dumps(row) for row in rows))
    data = task.load_detection_data(
        data_args(train_file=str(file), box_format="xyxy", boxes_normalized=True, image_column_name="path",
                  train_val_split=0.3),
        seed=0,
    )
    assert data.label_names == sorted({"cat", "dog", "bird"} & set(names.values()))
    loaded = {row["image_id"]: row for split in data.splits.values() for row in split.to_list()}
    first = [a for a in coco["annotations"] if a["image_id"] == 0]
    assert close(loaded[0]["objects"]["bbox"], [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in first)], 1e-3)


def test_hub_layout_with_class_label_categories(tmp_path):
    canvas_dir = write_coco(tmp_path / "coco", 5, 0)
    coco = json.loads((canvas_dir / "_annotations.coco.json").read_text())
    features = Features({"image": Image(), "image_id": Value("int64"), "width": Value("int32"),
                         "height": Value("int32"),
                         "objects": {"bbox": List(List(Value("float32"), length=4)),
                                     "category": List(ClassLabel(names=[str(d) for d in range(10)]))}})
    rows = {"image": [], "image_id": [], "width": [], "height": [], "objects": []}
    for image in coco["images"]:
        objects = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        rows["image"].append(str(canvas_dir / image["file_name"]))
        rows["image_id"].append(image["id"])
        rows["width"].append(96)
        rows["height"].append(96)
        rows["objects"].append({"bbox": [a["bbox"] for a in objects], "category": [a["category_id"] - 1 for a in objects]})
    Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    data = task.load_detection_data(data_args(train_file=str(tmp_path / "train.parquet"), train_val_split=0.4), seed=0)
    assert data.label_names == [str(d) for d in range(10)]
    rows["objects"][0]["category"][0] = 12
    Dataset.from_dict({**rows, "objects": rows["objects"]}, features=Features({**features, "objects": {
        "bbox": List(List(Value("float32"), length=4)), "category": List(Value("int64"))}})).to_parquet(str(tmp_path / "bad.parquet"))
    loaded = task.load_detection_data(data_args(train_file=str(tmp_path / "bad.parquet"), train_val_split=0.4), seed=0)
    assert "12" in loaded.label_names  # plain integers: their distinct values are the classes


def test_the_decoded_image_cache_and_classification_options_are_refused():
    with pytest.raises(ConfigError, match="cache_images is not available for object detection"):
        data_args(train_dir="x", cache_images=True)
    with pytest.raises(ConfigError, match="class_weight is for classification"):
        data_args(train_dir="x", class_weight="balanced")


# --- model -----------------------------------------------------------------------------------------------------


def test_rtdetr_lite0_backbone_features_equal_timms_also_after_reload(tmp_path):
    import timm
    from transformers import AutoModelForObjectDetection, RTDetrForObjectDetection

    from hf_ft.assets import build_efficientnet_lite0, build_rtdetr_lite0, write_rtdetr_lite0

    weights = build_efficientnet_lite0().state_dict()
    reference = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
    reference.load_state_dict(weights, strict=False)
    reference.eval()
    pixels = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = reference(pixels)
        detector, _ = build_rtdetr_lite0()
        saved = AutoModelForObjectDetection.from_pretrained(write_rtdetr_lite0(tmp_path / "detector")).eval()
        for model in (detector, saved):
            features = model.model.backbone.model(pixels).feature_maps
            assert all(torch.equal(a, b) for a, b in zip(features, expected))
        # Pinned upstream behaviour: RT-DETR's default swaps BatchNormAct2d for a frozen BatchNorm, dropping ReLU6.
        frozen = RTDetrForObjectDetection(detector.config.__class__(**{**detector.config.to_dict(),
                                                                        "freeze_backbone_batch_norms": True}))
        frozen.model.backbone.model._backbone.load_state_dict(weights, strict=False)
        frozen.eval()
        swapped = frozen.model.backbone.model(pixels).feature_maps
        assert not torch.allclose(swapped[-1], expected[-1], atol=1e-3)


def test_a_checkpoint_trained_on_the_same_names_keeps_its_head_and_order(tmp_path):
    from hf_ft.args import ModelArguments

    source = build_tiny_detector(tmp_path / "detector", ("b", "a"))
    model, processor, labels = task.load_detector(ModelArguments(model_name_or_path=str(source)), ["a", "b"], image_size=48)
    assert labels == ["b", "a"] and model.config.id2label == {0: "b", 1: "a"}
    assert processor.size == {"height": 48, "width": 48}


def test_one_class_data_on_a_one_class_checkpoint_of_another_name(tmp_path):
    """The demo's checkpoint has one placeholder class: a one-class dataset renames it (the sizes match, so no
    weight is re-initialised by ignore_mismatched_sizes and there is no single head to reset)."""
    from hf_ft.args import ModelArguments

    source = build_tiny_detector(tmp_path / "detector", ("object",))
    model, _, labels = task.load_detector(ModelArguments(model_name_or_path=str(source)), ["person"])
    assert labels == ["person"] and model.config.id2label == {0: "person"}
    assert model.model.enc_score_head.out_features == 1


# --- transforms and metrics ------------------------------------------------------------------------------------


def test_transforms_keep_boxes_in_step_with_the_pixels(tmp_path):
    from transformers import AutoImageProcessor

    train = write_coco(tmp_path / "train", 6, 0)
    data = task.load_detection_data(data_args(train_dir=str(train), train_val_split=0.3), seed=0)
    processor = AutoImageProcessor.from_pretrained(build_tiny_detector(tmp_path / "detector"))
    args = data_args(train_dir="x", hflip=1.0, photometric_distort=0.0, zoom_out=1.0, bbox_safe_crop=1.0)
    splits = task.attach_transforms(data.splits, processor, args)
    torch.manual_seed(0)
    for name in ("train", "validation"):
        example = splits[name][0]
        pixels, target = example["pixel_values"], example["labels"]
        assert pixels.shape[-2:] == (64, 64)
        for (cx, cy, w, h) in target["boxes"].tolist():  # every box frames ink: the brightest pixels of its region
            x0, x1 = int((cx - w / 2) * 64), max(int((cx + w / 2) * 64), int((cx - w / 2) * 64) + 1)
            y0, y1 = int((cy - h / 2) * 64), max(int((cy + h / 2) * 64), int((cy - h / 2) * 64) + 1)
            assert pixels[0, y0:y1, x0:x1].max() > pixels[0].mean() + 0.4 * (pixels[0].max() - pixels[0].mean())
    raw = data.splits["validation"][0]
    packed = task.pack_targets([splits["validation"][0]["labels"]])
    assert close(packed[0, : len(raw["objects"]["bbox"]), :4], raw["objects"]["bbox"], 1e-3)


def test_detection_metrics_score_perfect_and_shifted_detections():
    from transformers import EvalPrediction

    truth = torch.tensor([[[10.0, 10, 30, 30, 0], [50, 50, 80, 90, 1]]])
    perfect = torch.full((1, 5, 6), -1.0)
    perfect[0, :2] = torch.tensor([[10.0, 10, 30, 30, 0.9, 0], [50, 50, 80, 90, 0.8, 1]])
    shifted = perfect.clone()
    shifted[0, :2, :4] += 6
    metrics = task.DetectionMetrics()
    assert metrics(EvalPrediction(predictions=perfect, label_ids=truth), compute_result=True)["map"] == pytest.approx(1.0)
    assert metrics(EvalPrediction(predictions=shifted, label_ids=truth), compute_result=True)["map"] < 0.5
    metrics(EvalPrediction(predictions=perfect, label_ids=truth), compute_result=False)  # accumulates
    both = metrics(EvalPrediction(predictions=shifted, label_ids=truth), compute_result=True)["map"]
    assert 0.5 < both < 1.0
