"""COCO mAP from image weights (`hf_ft.vision.map_bootstrap`) against torchmetrics' `MeanAveragePrecision` itself: on
the images as they are, and on resamples written out as duplicated image lists. Pins the private faster-coco-eval
matching results the weights are applied to."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_ft.tasks.object_detection import mean_average_precision
from hf_ft.vision import detection_report
from hf_ft.vision.map_bootstrap import image_errors, per_image_matches, resampled_map


def detections(rng: np.random.Generator, num_images: int, num_classes: int, *, truth_only_class: bool = False
               ) -> tuple[list[dict], list[dict]]:
    """Random boxes; detections are jittered boxes (some of the wrong class, some repeated) plus random ones, with
    distinct scores; some images have no box, some no detection."""
    preds, truths = [], []
    for _ in range(num_images):
        count = 0 if rng.random() < 0.15 else rng.poisson(4)
        corner = rng.uniform(0, 400, (count, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 150, (count, 2))], 1)
        labels = rng.integers(0, num_classes, count)
        if truth_only_class:
            labels[rng.random(count) < 0.2] = num_classes  # never predicted
        truths.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)})
        if rng.random() < 0.15:
            preds.append({"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)})
            continue
        found = rng.random(count) < 0.8
        guessed = boxes[found] + rng.normal(0, 6, (found.sum(), 4))
        guessed_labels = np.where(rng.random(found.sum()) < 0.1, rng.integers(0, num_classes), labels[found])
        noise = rng.poisson(3)
        corner = rng.uniform(0, 400, (noise, 2))
        random_boxes = np.concatenate([corner, corner + rng.uniform(5, 150, (noise, 2))], 1)
        guessed = np.concatenate([guessed, guessed[:2] + 3, random_boxes])
        guessed_labels = np.concatenate([guessed_labels, guessed_labels[:2], rng.integers(0, num_classes, noise)])
        preds.append({"boxes": torch.tensor(guessed, dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.tensor(rng.random(len(guessed)), dtype=torch.float32),
                      "labels": torch.tensor(guessed_labels, dtype=torch.long)})
    return preds, truths


def torchmetrics_map(preds: list[dict], truths: list[dict]) -> tuple[float, float]:
    metric = mean_average_precision()
    metric.warn_on_many_detections = False
    metric.update(preds, truths)
    result = metric.compute()
    return float(result["map"]), float(result["map_50"])


@pytest.mark.parametrize("num_images, num_classes, truth_only_class", [(30, 1, False), (40, 3, False), (50, 7, True), (1, 3, False)])
def test_weights_give_torchmetrics_map_of_the_resampled_images(num_images, num_classes, truth_only_class):
    rng = np.random.default_rng(num_images * 10 + num_classes)
    preds, truths = detections(rng, num_images, num_classes, truth_only_class=truth_only_class)
    matches = per_image_matches(preds, truths)
    draws = [np.ones(num_images, dtype=int)] + [np.bincount(rng.integers(0, num_images, num_images), minlength=num_images)
                                                for _ in range(3)]
    found = resampled_map(matches, np.stack(draws))
    for row, weights in enumerate(draws):
        drawn = np.repeat(np.arange(num_images), weights)
        expected = torchmetrics_map([preds[i] for i in drawn], [truths[i] for i in drawn])
        if expected[0] < 0:  # a resample with no box at all: COCO says -1
            assert found["map"][row] == found["map_50"][row] == -1
            continue
        assert (found["map"][row], found["map_50"][row]) == pytest.approx(expected, abs=1e-6)
    assert 0 < found["map"][0] < found["map_50"][0] < 1 or num_images == 1


def test_image_records_rescore_to_torchmetrics_after_a_json_round_trip_and_count_each_images_mistakes():
    preds, truths = detections(np.random.default_rng(5), 25, 3)
    names = ["cat", "dog", "bird"]
    records = detection_report.image_records(preds, truths, names, [str(i) for i in range(25)], ["x"] * 25, 0.5)
    records = [json.loads(json.dumps(record)) for record in records]  # as the report writes and reads them
    rescored = detection_report.records_scorer(records)(np.arange(25))
    assert (rescored["map"], rescored["map_50"]) == pytest.approx(torchmetrics_map(preds, truths), abs=1e-6)

    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in truths]
    assert image_errors(per_image_matches(perfect, truths), 0.5).sum() == 0
    missing = [dict(p) for p in perfect]
    index = next(i for i, t in enumerate(truths) if len(t["labels"]) >= 2)
    missing[index] = {key: value[1:] for key, value in perfect[index].items()}  # one box not found
    under = next(i for i, t in enumerate(truths) if len(t["labels"]) and i != index)
    missing[under] = {**perfect[under], "scores": torch.full((len(truths[under]["labels"]),), 0.4)}  # under the threshold
    errors = image_errors(per_image_matches(missing, truths), 0.5)
    assert errors[index] == 1 and errors[under] == len(truths[under]["labels"]) and errors.sum() == 1 + errors[under]
