"""The pictures and tables of a detection report: per-class AP, precision-recall curves, and test images with the
true and the predicted boxes drawn on them; and the per-image records its mAP intervals and pairing resample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image as PILImage
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
from torchvision.utils import draw_bounding_boxes, make_grid

from .. import markdown as md
from .map_bootstrap import image_errors, per_image_matches, resampled_map

TRUE_COLOUR, PREDICTED_COLOUR = "#00c853", "#ff1744"  # green: the labelled boxes; red: the model's


def image_records(
    preds: Sequence[dict], truths: Sequence[dict], label_names: Sequence[str], ids: Sequence[str],
    inputs: Sequence[str], score_threshold: float,
) -> list[dict[str, Any]]:
    """One record per image (`hf_ft.bootstrap`): the classes of its boxes and of its detections scoring at least
    `score_threshold` (counted, for people and for telling a changed answer), its mistakes there at IoU 0.5
    (`error`), and every box and detection, which `records_scorer` rescores."""
    errors = image_errors(per_image_matches(preds, truths), score_threshold)
    records = []
    for i, (pred, truth) in enumerate(zip(preds, truths)):
        shown = pred["scores"] >= score_threshold
        records.append({
            "id": ids[i],
            "input": inputs[i],
            "reference": _class_counts(truth["labels"], label_names),
            "prediction": _class_counts(pred["labels"][shown], label_names),
            "error": float(errors[i]),
            "boxes": {"boxes": truth["boxes"].tolist(), "labels": [label_names[k] for k in truth["labels"].tolist()]},
            "detections": {"boxes": pred["boxes"].tolist(), "scores": pred["scores"].tolist(),
                           "labels": [label_names[k] for k in pred["labels"].tolist()]},
        })
    return records


def records_scorer(records: Sequence[dict[str, Any]]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of `image_records`: COCO `map` and `map_50` of a resample of the images, from one
    COCO matching of all of them (`hf_ft.vision.map_bootstrap`)."""
    names = sorted({name for r in records for name in (*r["boxes"]["labels"], *r["detections"]["labels"])})
    index = {name: k for k, name in enumerate(names)}

    def tensors(found: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"boxes": torch.tensor(found["boxes"], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([index[name] for name in found["labels"]], dtype=torch.long),
                **({"scores": torch.tensor(found["scores"], dtype=torch.float32)} if "scores" in found else {})}

    matches = per_image_matches([tensors(r["detections"]) for r in records], [tensors(r["boxes"]) for r in records])

    def statistic(indices: np.ndarray) -> dict[str, float]:
        found = resampled_map(matches, np.bincount(indices, minlength=len(records)))
        return {key: float(value[0]) if value[0] >= 0 else float("nan") for key, value in found.items()}

    return statistic


def _class_counts(labels: torch.Tensor, label_names: Sequence[str]) -> str:
    counts = Counter(label_names[k] for k in labels.tolist())
    return ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in sorted(counts.items())) or "nothing"


def per_class(result: dict[str, Any], num_labels: int) -> dict[int, dict[str, float]]:
    """Label id -> AP (IoU 0.50:0.95), AP@50 and AR@100 from MeanAveragePrecision(class_metrics=True,
    extended_summary=True); classes the split has no boxes of, and never predicted, are absent."""
    classes = result["classes"].reshape(-1).tolist()
    ap = result["map_per_class"].reshape(-1).tolist()
    ar = result["mar_100_per_class"].reshape(-1).tolist()
    precision = result["precision"]  # IoU thresholds x recall points x classes x areas x max detections
    rows = {}
    for k, label in enumerate(classes):
        if not 0 <= label < num_labels:
            continue
        at_50 = precision[0, :, k, 0, -1]
        rows[label] = {
            "ap": ap[k],
            "ap_50": float(at_50[at_50 >= 0].mean()) if (at_50 >= 0).any() else -1.0,
            "ar_100": ar[k],
        }
    return rows


def per_class_section(
    rows: dict[int, dict[str, float]], label_names: Sequence[str], test_boxes: np.ndarray, train_boxes: np.ndarray, split: str
) -> str:
    """The per-class table, worst AP first (where the next labelling effort pays most)."""
    order = sorted(range(len(label_names)), key=lambda i: rows.get(i, {}).get("ap", -1.0))
    lines = [
        f"## Per-class AP ({split})",
        "",
        "Worst first. AP averages IoU 0.50:0.95 (COCO); \"—\": no box of that class in the split.",
        "",
        f"| Class | AP | AP@50 | AR@100 | {split} boxes | train boxes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i in order:
        row = rows.get(i, {})
        cells = [_score(row.get(key)) for key in ("ap", "ap_50", "ar_100")]
        lines.append(f"| {md.cell(label_names[i])} | " + " | ".join(cells) + f" | {int(test_boxes[i]):,} | {int(train_boxes[i]):,} |")
    return "\n".join(lines)


def plot_pr_curves(path: Path, result: dict[str, Any], label_names: Sequence[str], split: str) -> bool:
    """Precision against recall at IoU 0.5 (all areas, 100 detections), one curve per class; False when the split
    has no boxes to draw curves for."""
    precision = result["precision"]
    classes = result["classes"].reshape(-1).tolist()
    recall = np.linspace(0, 1, precision.shape[1])
    curves = []
    for k, label in enumerate(classes):
        values = precision[0, :, k, 0, -1].numpy()
        if 0 <= label < len(label_names) and (values >= 0).any():
            curves.append((label_names[label], np.where(values >= 0, values, np.nan)))
    if not curves:
        return False
    figure = Figure(figsize=(6.5, 5), layout="constrained")
    axes = figure.subplots()
    for name, values in curves[:20]:
        axes.plot(recall, values, label=name)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Precision-recall at IoU 0.5 ({split})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2 if len(curves) > 10 else 1)
    figure.savefig(path, dpi=100)
    return True


def draw_detections(
    path: Path,
    pictures: Sequence[PILImage.Image],
    predictions: Sequence[dict],
    truths: Sequence[dict],
    label_names: Sequence[str],
    threshold: float,
) -> None:
    """A grid of images, the labelled boxes in green and the predicted ones (score >= `threshold`) in red, each
    with its class name (and score). Images are brought to one size (boxes scaled with them) to tile."""
    side = max(max(p.size) for p in pictures)
    side = min(max(side, 128), 512)
    tiles = []
    for picture, prediction, truth in zip(pictures, predictions, truths):
        image = pil_to_tensor(picture.convert("RGB"))
        scale = side / max(image.shape[-2:])
        size = [max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale))]
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear")[0].to(torch.uint8)
        canvas = torch.zeros((3, side, side), dtype=torch.uint8)
        canvas[:, : size[0], : size[1]] = image
        shown = prediction["scores"] >= threshold
        canvas = _draw(canvas, truth["boxes"] * scale, [label_names[i] for i in truth["labels"]], TRUE_COLOUR)
        names = [f"{label_names[i]} {s:.2f}" for i, s in zip(prediction["labels"][shown], prediction["scores"][shown])]
        canvas = _draw(canvas, prediction["boxes"][shown] * scale, names, PREDICTED_COLOUR)
        tiles.append(canvas)
    grid = make_grid(tiles, nrow=min(4, len(tiles)), padding=4, pad_value=255)
    to_pil_image(grid).save(path)


def _draw(canvas: torch.Tensor, boxes: torch.Tensor, names: list[str], colour: str) -> torch.Tensor:
    if len(boxes) == 0:
        return canvas
    return draw_bounding_boxes(canvas, boxes.float(), labels=names, colors=colour, width=2)


def _score(value: float | None) -> str:
    return "—" if value is None or value < 0 else f"{value:.3f}"
