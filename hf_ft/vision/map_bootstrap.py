"""COCO mAP on resamples of a split's images, without a COCO evaluation per resample: what the detection report's
bootstrap intervals and paired differences are made of.

COCO's bbox evaluation has two stages. `evaluate()` matches each image's score-sorted detections to its boxes, per
category and IoU threshold; an image's matches do not depend on the other images, so they are computed once here
(`per_image_matches`, faster-coco-eval's own C++ matching on the COCO sets torchmetrics builds). `accumulate()` then
sorts each category's detections of all images by score into a precision-recall curve; drawing an image w times
multiplies its detections' and boxes' counts by w, so that stage is recomputed per resample from image weights
(`resampled_map`). With every weight 1 this is torchmetrics' `MeanAveragePrecision` (`backend="faster_coco_eval"`,
macro average, default thresholds, area "all", 100 detections): `map` and `map_50`.

The matches are read from `COCOeval_faster(..., separate_eval=True)`'s `_evalImgs_cpp` (private; faster-coco-eval's
own `utils/pytorch/coco_eval.py` reads it the same way), pinned by tests/test_map_bootstrap.py against torchmetrics
on duplicated image lists.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

# torchmetrics' thresholds are float32 values (torch.linspace) as Python floats: 0.550000011920929, not 0.55.
IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10).tolist()
RECALL_THRESHOLDS = np.array(torch.linspace(0.0, 1.0, 101).tolist())
MAX_DETECTIONS = [1, 10, 100]


@dataclass
class CategoryMatches:
    """One category's detections, in the order COCO's accumulate sorts them (by score, stable over images)."""

    image: np.ndarray  # (D,) the image of each detection
    score: np.ndarray  # (D,)
    true_positive: np.ndarray  # (T, D) matched to a box, per IoU threshold
    counted: np.ndarray  # (T, D) not ignored (a true or false positive)
    boxes: np.ndarray  # (I,) the category's boxes in each image


@dataclass
class Matches:
    num_images: int
    categories: list[CategoryMatches]


def per_image_matches(preds: Sequence[dict], truths: Sequence[dict]) -> Matches:
    """COCO's matching of each image's detections to its boxes, run once: the lists torchmetrics' `update` takes
    (xyxy `boxes`, `scores`, `labels` per image; `boxes`, `labels`)."""
    from faster_coco_eval import COCOeval_faster

    num_images, thresholds = len(truths), len(IOU_THRESHOLDS)
    truth_coco, detection_coco = _coco_sets(preds, truths)
    evaluation = COCOeval_faster(truth_coco, detection_coco, iouType="bbox", separate_eval=True,
                                 print_function=lambda *args, **kwargs: None)
    params = evaluation.params
    params.iouThrs, params.recThrs, params.maxDets = np.array(IOU_THRESHOLDS), RECALL_THRESHOLDS, MAX_DETECTIONS
    params.areaRng, params.areaRngLbl = [params.areaRng[params.areaRngLbl.index("all")]], ["all"]
    categories = []
    if not num_images or not list(params.catIds):
        return Matches(num_images, categories)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
    evaluated = evaluation._evalImgs_cpp  # category-major, then image (one area range)
    for k in range(len(params.catIds)):
        images, scores, true_positive, counted = [], [], [], []
        boxes = np.zeros(num_images)
        for i in range(num_images):
            # (detection matches T*D, box matches, detection scores D (sorted, cut to 100), box ignores, detection
            # ignores T*D, matched annotations)
            matched, _, score, box_ignored, ignored, _ = evaluated[k * num_images + i].__getstate__()
            boxes[i] = len(box_ignored) - sum(box_ignored)
            if not len(score):
                continue
            ignored = np.asarray(ignored, dtype=bool).reshape(thresholds, -1)
            images.append(np.full(len(score), i))
            scores.append(np.asarray(score, dtype=np.float64))
            true_positive.append((np.asarray(matched).reshape(thresholds, -1) > 0) & ~ignored)
            counted.append(~ignored)
        if images:
            order = np.argsort(-np.concatenate(scores), kind="stable")
            categories.append(CategoryMatches(
                np.concatenate(images)[order], np.concatenate(scores)[order], np.concatenate(true_positive, 1)[:, order],
                np.concatenate(counted, 1)[:, order], boxes,
            ))
        else:
            empty = np.zeros((thresholds, 0), dtype=bool)
            categories.append(CategoryMatches(np.zeros(0, dtype=np.int64), np.zeros(0), empty, empty, boxes))
    return Matches(num_images, categories)


def resampled_map(matches: Matches, weights: np.ndarray) -> dict[str, np.ndarray]:
    """`map` (IoU 0.50:0.95) and `map_50` of each row of `weights` (R, images): how many times each image is drawn.
    -1 where no category has a box, as COCO reports."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    found = {"map": np.full(len(weights), -1.0), "map_50": np.full(len(weights), -1.0)}
    if not matches.categories:
        return found
    ap = np.stack([_category_ap(category, weights) for category in matches.categories], axis=1)  # (R, K, T)
    has_boxes = ~np.isnan(ap[:, :, 0])
    classes = has_boxes.sum(axis=1)
    ap = np.nan_to_num(ap)
    # COCO's summarize: the mean over the categories that have boxes, and the IoU thresholds
    found["map"] = np.where(classes > 0, ap.sum(axis=(1, 2)) / np.maximum(classes * ap.shape[2], 1), -1.0)
    found["map_50"] = np.where(classes > 0, ap[:, :, 0].sum(axis=1) / np.maximum(classes, 1), -1.0)
    return found


def image_errors(matches: Matches, score_threshold: float) -> np.ndarray:
    """Each image's mistakes among its detections scoring at least `score_threshold`, at IoU 0.5: its boxes none of
    them found, plus the ones that found no box (COCO's matching; detections it ignores count for neither)."""
    errors = np.zeros(matches.num_images)
    for category in matches.categories:
        shown = category.score >= score_threshold
        hits = np.bincount(category.image[shown & category.true_positive[0]], minlength=matches.num_images)
        false = np.bincount(category.image[shown & category.counted[0] & ~category.true_positive[0]],
                            minlength=matches.num_images)
        errors += category.boxes - hits + false
    return errors


def _category_ap(category: CategoryMatches, weights: np.ndarray) -> np.ndarray:
    """AP per (resample, IoU threshold) of one category; NaN where it has no box.

    Only the true positives need evaluating: the first detection to reach a recall threshold is one, and a false
    positive never raises the precision envelope (a/b <= (a+w)/(b+w)). Each threshold's precision is then the
    envelope at the first true positive reaching it: the sum over thresholds is sum_j envelope_j * (k_j - k_{j-1}),
    k_j the number of thresholds at or below recall_j."""
    boxes = weights @ category.boxes
    ap = np.zeros((len(weights), category.true_positive.shape[0]))
    drawn = weights[:, category.image]  # (R, D)
    cumulated = {}
    for t, hits in enumerate(category.true_positive):
        positions = np.flatnonzero(hits)
        if not positions.size:
            continue
        key = category.counted[t].tobytes()  # the same mask at every threshold unless crowd boxes are matched
        if key not in cumulated:
            cumulated[key] = np.cumsum(drawn * category.counted[t], axis=1)
        counted = cumulated[key][:, positions]
        true = np.cumsum(drawn[:, positions], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(counted > 0, true / counted, 0.0)
            recall = true / boxes[:, None]
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        reached = np.searchsorted(RECALL_THRESHOLDS, recall.ravel(), side="right").reshape(recall.shape)
        ap[:, t] = (envelope * np.diff(reached, axis=1, prepend=0)).sum(axis=1) / len(RECALL_THRESHOLDS)
    ap[boxes <= 0] = np.nan
    return ap


def _coco_sets(preds: Sequence[dict], truths: Sequence[dict]):
    """The ground-truth and detection COCO sets as torchmetrics builds them for bbox: xywh boxes, area w*h, image
    ids 0..N-1, categories the labels of both."""
    from faster_coco_eval import COCO
    from torchvision.ops import box_convert

    labels = sorted({int(label) for item in (*preds, *truths) for label in item["labels"]})

    def dataset(items: Sequence[dict], scored: bool) -> dict:
        annotations = []
        for image, item in enumerate(items):
            boxes = box_convert(item["boxes"].reshape(-1, 4), in_fmt="xyxy", out_fmt="xywh").tolist()
            for k, (box, label) in enumerate(zip(boxes, item["labels"].tolist())):
                annotation = {"id": len(annotations) + 1, "image_id": image, "area": box[2] * box[3],
                              "category_id": label, "iscrowd": 0, "bbox": box}
                if scored:
                    annotation["score"] = float(item["scores"][k])
                annotations.append(annotation)
        return {"images": [{"id": i} for i in range(len(items))], "annotations": annotations,
                "categories": [{"id": label, "name": str(label)} for label in labels]}

    truth_coco, detection_coco = COCO(), COCO()
    truth_coco.dataset, detection_coco.dataset = dataset(truths, False), dataset(preds, True)
    with contextlib.redirect_stdout(io.StringIO()):
        truth_coco.createIndex()
        detection_coco.createIndex()
    return truth_coco, detection_coco
