"""recipes/object_detection.py as users run it (`accelerate launch`), on a tiny RT-DETR and real digits on canvases."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from hf_ft.vision import detection_report

from . import recipe_runs
from .conftest import REPO
from .recipe_runs import TWO_PROCESS_CONFIG, kill_after, launch, results, run_in_process, same_weights
from .tiny_detector import build_tiny_detector, write_coco

RECIPE = REPO / "recipes" / "object_detection.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    return {
        "detector": build_tiny_detector(root / "detector"),
        **{f"{split}_dir": str(write_coco(root / split, count, seed))
           for seed, (split, count) in enumerate({"train": 32, "validation": 8, "test": 8}.items())},
    }


def write_config(path, coco, **overrides):
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "model_name_or_path": str(coco["detector"]), "train_dir": coco["train_dir"],
        "validation_dir": coco["validation_dir"], "test_dir": coco["test_dir"], "image_size": 64,
        "hflip": 0.0, "zoom_out": 0.0, "bbox_safe_crop": 0.5, "num_report_images": 4,
        "max_steps": 12, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "learning_rate": 1.0e-3,
        "logging_steps": 2, "save_strategy": "steps", "save_steps": 6, "eval_strategy": "no",
        "dataloader_num_workers": 0, "seed": 3, "report_to": "none", "output_dir": str(path.parent / "out"),
        **overrides,
    }
    path.write_text(yaml.safe_dump(config))
    return path, path.parent / "out" if "output_dir" not in overrides else overrides["output_dir"]


def rescore(output_dir, test_dir) -> float:
    """The saved model and processor, scored on the test images outside the recipe: the report's mAP again."""
    from datasets import DatasetDict
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from hf_ft.tasks import object_detection as task

    model = AutoModelForObjectDetection.from_pretrained(output_dir).eval()
    processor = AutoImageProcessor.from_pretrained(output_dir)
    data = task.load_detection_data(task.DetectionDataArguments(train_dir=test_dir, test_dir=test_dir), seed=0)
    split = task.attach_transforms(DatasetDict(test=data.splits["test"]), processor,
                                   task.DetectionDataArguments(train_dir="x"))["test"]
    metric = task.mean_average_precision()
    for start in range(0, len(split), 4):
        batch = task.collate([split[i] for i in range(start, min(start + 4, len(split)))])
        with torch.no_grad():
            outputs = model(pixel_values=batch["pixel_values"])
        sizes = torch.stack([t["orig_size"] for t in batch["labels"]])
        found = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        predictions = [{"boxes": f["boxes"], "scores": f["scores"], "labels": f["labels"]} for f in found]
        truths = task.unpack(torch.zeros(len(found), 1, 6) - 1, task.pack_targets(batch["labels"]))[1]
        metric.update(predictions, truths)
    return float(metric.compute()["map"])


def check_image_records(output_dir, scores) -> None:
    """The report's mAP intervals over the test images, and its per-image records rescoring to its mAP."""
    intervals = json.loads((output_dir / "confidence_intervals.json").read_text())["intervals"]["test"]
    records = [json.loads(line) for line in (output_dir / "test_predictions.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(len(r["detections"]["scores"]) == len(r["detections"]["boxes"]) for r in records)
    rescored = detection_report.records_scorer(records)(np.arange(8))
    for key in ("map", "map_50"):
        assert rescored[key] == pytest.approx(scores["test"][key], abs=1e-6), key
        assert intervals[key][0] <= scores["test"][key] <= intervals[key][1], key


def test_train_report_pipeline_and_a_kill_minus_9_resume(tmp_path, coco):
    from PIL import Image
    from transformers import pipeline

    config, output_dir = write_config(tmp_path / "config.yaml", coco)
    launch(RECIPE, config)
    scores = results(output_dir)
    assert set(scores) == {"validation", "test"}
    assert {"map", "map_50", "map_75", "mar_100"} <= set(scores["test"])
    report = (output_dir / "report.md").read_text()
    for section in ("## Per-class AP (test)", "## Detections (test, first 4 images)", "knows none of these classes"):
        assert section in report
    assert (output_dir / "detections.png").is_file() and (output_dir / "model.safetensors").is_file()
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < losses[0]
    # The saved model is the one the report scored, and pipeline() loads it with the data's class names.
    assert rescore(output_dir, coco["test_dir"]) == pytest.approx(scores["test"]["map"], abs=1e-6)
    check_image_records(output_dir, scores)
    assert "## How sure these numbers are" in report
    # hf-ft predict on the COCO test folder: the report's mAP; on a plain folder of images, boxes and no metrics
    predicted = recipe_runs.predict(output_dir, coco["test_dir"], tmp_path / "boxes.jsonl", score_threshold=0.0,
                                    batch_size=3)
    for key in ("map", "map_50", "mar_100"):
        assert predicted.metrics[key] == pytest.approx(scores["test"][key], abs=1e-6), key
    assert predicted.metrics["num_samples"] == 8 and all(row["reference_boxes"] for row in predicted.rows)
    plain = tmp_path / "photos"
    plain.mkdir()
    for name in ("0.png", "1.png"):
        shutil.copy(f"{coco['test_dir']}/{name}", plain / name)
    unlabelled = recipe_runs.predict(output_dir, plain, tmp_path / "photos.csv", score_threshold=0.0)
    assert unlabelled.metrics is None and len(unlabelled.rows) == 2
    first = next(row for row in predicted.rows if row["input"].endswith("/0.png"))
    same = next(row for row in unlabelled.rows if row["input"].endswith("/0.png"))
    assert same["boxes"] == first["boxes"][: len(same["boxes"])] and same["labels"][:3] == first["labels"][:3]
    detector = pipeline("object-detection", model=str(output_dir))
    found = detector(Image.open(f"{coco['test_dir']}/0.png"), threshold=0.0)
    assert found and {d["label"] for d in found} <= {str(digit) for digit in range(10)}
    assert all(0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= 96 for d in found)

    # kill -9 once checkpoint-6 is complete, run the same command again: the same results and weights, bit for bit.
    # Paired with the unbroken run: the same images, the same detections, a difference of 0 and no image changed.
    resumed_config, resumed_dir = write_config(tmp_path / "resumed" / "config.yaml", coco, compare_with=[str(output_dir)])
    kill_after(RECIPE, resumed_config, resumed_dir / "checkpoint-6")
    launch(RECIPE, resumed_config)
    assert results(resumed_dir) == scores
    paired = (resumed_dir / "report.md").read_text().split("## Paired with")[1]
    assert "| test | mAP | +0.0000 | +0.0000 – +0.0000 | no |" in paired and "No test example is predicted differently" in paired

    # Continued from the finished run on the same data: forgetting is measured on that run's test images, here this
    # run's own test split, and the checkpoint "as published" is that run's model on the same images.
    continued_config, continued_dir = write_config(tmp_path / "continued" / "config.yaml", coco, max_steps=4,
                                                   model_name_or_path=str(output_dir), save_strategy="no")
    launch(RECIPE, continued_config)
    continued, forgetting = results(continued_dir)["test"], results(continued_dir / "forgetting")["test"]
    assert forgetting["num_samples"] == 8 and forgetting["map"] == pytest.approx(continued["map"], abs=1e-9)
    assert continued["original_map"] == pytest.approx(scores["test"]["map"], abs=1e-6)
    section = (continued_dir / "report.md").read_text().split("## Forgetting: the earlier run's test set")[1]
    assert f"| mAP | {scores['test']['map']:.4f} | {forgetting['map']:.4f} |" in section
    assert same_weights(output_dir / "model.safetensors", resumed_dir / "model.safetensors")


def test_two_processes_gather_every_image_once(tmp_path, coco):
    """DDP over gloo: each process evaluates its share; the packed detections and padded targets gathered across
    processes (the last batch's repeated images dropped) give the mAP of the saved model scored in one process."""
    published = build_tiny_detector(tmp_path / "published", ("7", "cat", "1"))
    config, output_dir = write_config(tmp_path / "config.yaml", coco, model_name_or_path=str(published), max_steps=4,
                                      save_strategy="no", per_device_eval_batch_size=3)
    result = launch(RECIPE, config, accelerate_config=TWO_PROCESS_CONFIG)
    assert "(2 processes)" in result.stdout
    scores = results(output_dir)
    assert rescore(output_dir, coco["test_dir"]) == pytest.approx(scores["test"]["map"], abs=1e-6)
    check_image_records(output_dir, scores)
    assert "original_map" in scores["test"]  # the published model, scored on both processes before training


@pytest.mark.parametrize("family", ["detr", "yolos", "d_fine"])
def test_other_detector_families_train_report_and_load_in_pipeline(tmp_path, coco, family):
    """DETR (padded batches with a pixel mask, softmax classes with "no object"), YOLOS (a ViT, no pixel mask) and
    D-FINE (a timm backbone): each trains, is scored and loads in pipeline() with the data's class names."""
    from PIL import Image
    from transformers import pipeline

    detector = build_tiny_detector(tmp_path / family, family=family)
    config, output_dir = write_config(tmp_path / "config.yaml", coco, model_name_or_path=str(detector), max_steps=3,
                                      save_strategy="no")
    run_in_process(RECIPE, config)
    assert {"map", "map_50"} <= set(results(output_dir)["test"])
    predicted = recipe_runs.predict(output_dir, coco["test_dir"], tmp_path / "boxes.jsonl")  # pixel mask or not
    assert predicted.metrics["map"] == pytest.approx(results(output_dir)["test"]["map"], abs=1e-6)
    found = pipeline("object-detection", model=str(output_dir))(Image.open(f"{coco['test_dir']}/0.png"), threshold=0.0)
    assert found and {d["label"] for d in found} <= {str(digit) for digit in range(10)}


def test_bad_input_stops_before_training_with_one_error_line(tmp_path, coco):
    config, output_dir = write_config(
        tmp_path / "config.yaml", coco, test_annotations_file=str(tmp_path / "instances_test.json")
    )
    result = launch(RECIPE, config, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "instances_test.json does not exist" in errors[0]
    assert not (output_dir / "model.safetensors").exists()


def test_the_published_checkpoint_is_scored_on_the_classes_it_knows(tmp_path, coco):
    published = build_tiny_detector(tmp_path / "published", ("7", "cat", "1"))
    config, output_dir = write_config(tmp_path / "config.yaml", coco, model_name_or_path=str(published), max_steps=2,
                                      save_strategy="no", eval_strategy="steps", eval_steps=2)
    run_in_process(RECIPE, config)
    scores = results(output_dir)
    assert {"original_map", "original_map_50"} <= set(scores["test"])
    baseline = json.loads((output_dir / "base_model_results.json").read_text())
    assert baseline["scores"]["known"] == ["1", "7"]
    assert "for the 2 of these classes it knows by name" in (output_dir / "report.md").read_text()
