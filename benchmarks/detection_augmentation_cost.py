"""CPU milliseconds per image of box-aware detection training augmentation: torchvision v2 against albumentations.

    python benchmarks/detection_augmentation_cost.py              # 300 timed images per row, 1 thread
    python benchmarks/detection_augmentation_cost.py --images 1000
    python benchmarks/detection_augmentation_cost.py --breakdown  # also each transform timed alone
    python benchmarks/detection_augmentation_cost.py --quick      # a few images: a smoke run for the tests

The same augmentation is built in both libraries, as close as their transforms allow:

| step | torchvision v2 (`tv_tensors.BoundingBoxes`, XYWH) | albumentations (`BboxParams(format="coco")`) |
|---|---|---|
| input | PIL image -> `v2.ToImage()` (uint8 CHW tensor) | PIL image -> `np.asarray` (uint8 HWC) |
| photometric | `ColorJitter(0.2, 0.2, 0.2, 0.05)` | `ColorJitter(0.2, 0.2, 0.2, 0.05, p=1)` |
| zoom out | `RandomZoomOut(side_range=(1, 2), p=0.5)` | `Affine(scale=(0.5, 1), keep_ratio=True, p=0.5)` |
| crop | `RandomIoUCrop()` (SSD crop) | `RandomSizedBBoxSafeCrop(size, size)` (crop + resize) |
| flip | `RandomHorizontalFlip(0.5)` | `HorizontalFlip(p=0.5)` |
| resize | `Resize((size, size))` (bilinear, antialiased) | in the crop (`cv2.INTER_LINEAR`) |
| sanitize | `SanitizeBoundingBoxes(min_size=1, min_area=1)`, boxes clamped | `min_width/height/area=1`, `clip=True` |
| output | uint8 CHW tensor, float32 xywh boxes, int64 labels | the same, via `ToTensorV2` and `torch.as_tensor` |

The data arrive as `datasets` delivers them: decoded PIL RGB images with COCO boxes (`[x, y, w, h]`, pixels,
lists of floats) and integer labels, 1-6 boxes an image. Everything from that sample to the training tensors is
timed, conversions included (decoding is not: see `input_pipeline_cost.py`). Two shapes:
- 128 x 128 canvases with scikit-learn's digits pasted on them, trained at 128 px (the offline demo's kind);
- 640 x 480 crops of scikit-learn's sample photos with random boxes, trained at 640 px (cppe-5 / COCO-like).

Each pipeline runs on one thread (`torch.set_num_threads(1)`, `cv2.setNumThreads(1)`), `--warmup` images first,
then every one of `--images` images is timed alone with `time.perf_counter`: the table gives the median and p90
of those times and images/s over the whole timed pass. Every output is checked (square image of the training
size, uint8, every box of positive size inside it, one label a box): a pipeline that breaks boxes fails the run
instead of being timed. albumentations comes with the `detection` extra: without it its rows say so.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images
from torchvision import tv_tensors
from torchvision.transforms import v2

try:
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2
except ImportError:  # in the `detection` extra only
    A = cv2 = ToTensorV2 = None

# A sample as `datasets` gives it: (PIL image, COCO xywh boxes in pixels, labels).
Sample = tuple[Image.Image, list[list[float]], list[int]]
# What a pipeline returns: uint8 CHW image, float32 (N, 4) xywh boxes, int64 (N,) labels.
Output = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}


def digit_canvases(n: int, side: int, rng: np.random.Generator) -> list[Sample]:
    """`side` x `side` dark noisy canvases with 1-6 of scikit-learn's 8x8 digits pasted on, 12-40 px each."""
    digits = load_digits()
    glyphs = (digits.images * (255 / 16)).astype(np.uint8)
    samples = []
    for _ in range(n):
        canvas = rng.integers(0, 40, size=(side, side, 3), dtype=np.uint8)
        boxes, labels = [], []
        for _ in range(rng.integers(1, 7)):
            k = int(rng.integers(len(glyphs)))
            size = int(rng.integers(12, 41))
            glyph = np.asarray(Image.fromarray(glyphs[k]).resize((size, size), Image.BILINEAR))
            x, y = (int(v) for v in rng.integers(0, side - size + 1, size=2))
            colour = rng.integers(128, 256, size=3)
            patch = canvas[y : y + size, x : x + size]
            alpha = glyph[..., None] / 255.0
            canvas[y : y + size, x : x + size] = (patch * (1 - alpha) + colour * alpha).astype(np.uint8)
            boxes.append([float(x), float(y), float(size), float(size)])
            labels.append(int(digits.target[k]))
        samples.append((Image.fromarray(canvas), boxes, labels))
    return samples


def photo_crops(n: int, width: int, height: int, rng: np.random.Generator) -> list[Sample]:
    """`width` x `height` random crops of scikit-learn's sample photos, with 1-6 random boxes (16 px to half a side)."""
    photos = [Image.fromarray(image) for image in load_sample_images().images]  # 640 x 427 each
    samples = []
    for _ in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        scale = rng.uniform(0.5, 1.0)
        w, h = int(photo.width * scale), int(photo.height * scale)
        x, y = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        image = photo.crop((x, y, x + w, y + h)).resize((width, height), Image.BILINEAR)
        boxes, labels = [], []
        for _ in range(rng.integers(1, 7)):
            bw, bh = rng.uniform(16, width / 2), rng.uniform(16, height / 2)
            bx, by = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
            boxes.append([round(float(v), 1) for v in (bx, by, bw, bh)])
            labels.append(int(rng.integers(5)))  # cppe-5 has 5 classes
        samples.append((image, boxes, labels))
    return samples


def torchvision_steps(size: int) -> list:
    return [
        v2.ToImage(),
        v2.ColorJitter(**JITTER),
        v2.RandomZoomOut(fill=0, side_range=(1.0, 2.0), p=0.5),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.Resize((size, size)),
        v2.SanitizeBoundingBoxes(min_size=1, min_area=1),
    ]


def torchvision_target(sample: Sample) -> dict:
    image, boxes, labels = sample
    return {
        # float32: integer boxes are truncated (not rounded) by every geometric transform.
        # canvas_size is (height, width); PIL's .size is (width, height).
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            format="XYWH",
            canvas_size=(image.height, image.width),
        ),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def torchvision_output(image, target: dict) -> Output:
    return image.as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor), target["labels"]


def torchvision_pipeline(size: int) -> Callable[[Sample], Output]:
    transform = v2.Compose(torchvision_steps(size))

    def run(sample: Sample) -> Output:
        return torchvision_output(*transform(sample[0], torchvision_target(sample)))

    return run


def hf_ft_pipeline(size: int) -> Callable[[Sample], Output]:
    """The recipe's own training augmentation (`hf_ft.tasks.object_detection.train_augmentation`, default settings:
    colour jitter p 0.5, zoom out p 0.5, box-safe crop p 0.8, flip p 0.5; albumentations), then the resize its image
    processor does (here cv2's, in the same Compose)."""
    from hf_ft.tasks.object_detection import DetectionDataArguments, train_augmentation

    augment = train_augmentation(DetectionDataArguments(train_dir="benchmark"))
    transform = A.Compose([*augment.transforms, A.Resize(size, size), ToTensorV2()],
                          bbox_params=A.BboxParams(format="coco", label_fields=["labels"], clip=True,
                                                   filter_invalid_bboxes=True, min_width=1, min_height=1))

    def run(sample: Sample) -> Output:
        return albumentations_output(transform(**albumentations_input(sample)))

    return run


def albumentations_steps(size: int) -> list:
    return [
        A.ColorJitter(**JITTER, p=1.0),  # its defaults are hue=0.5 and p=0.5, unlike torchvision's
        A.Affine(scale=(0.5, 1.0), keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        A.RandomSizedBBoxSafeCrop(height=size, width=size, erosion_rate=0.0),
        A.HorizontalFlip(p=0.5),
        ToTensorV2(),
    ]


def albumentations_compose(steps: list) -> A.Compose:
    # clip + filter_invalid_bboxes: without them a box reaching past the image edge, or of zero width, in the
    # *input* raises ValueError (v2 clamps and SanitizeBoundingBoxes drops). min_visibility stays 0: v2 has no
    # visibility rule (RandomIoUCrop drops the boxes whose centre it cuts off, whatever is left of them).
    bbox_params = A.BboxParams(
        format="coco",
        label_fields=["labels"],
        min_width=1,
        min_height=1,
        min_area=1,
        clip=True,
        filter_invalid_bboxes=True,
    )
    return A.Compose(steps, bbox_params=bbox_params, seed=0)


def albumentations_input(sample: Sample) -> dict:
    image, boxes, labels = sample
    return {"image": np.asarray(image), "bboxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "labels": labels}


def albumentations_output(out: dict) -> Output:
    return (
        out["image"],
        torch.as_tensor(out["bboxes"], dtype=torch.float32).reshape(-1, 4),
        torch.as_tensor(np.asarray(out["labels"]), dtype=torch.int64),  # they come back as floats
    )


def albumentations_pipeline(size: int) -> Callable[[Sample], Output]:
    transform = albumentations_compose(albumentations_steps(size))

    def run(sample: Sample) -> Output:
        return albumentations_output(transform(**albumentations_input(sample)))

    return run


def breakdown(name: str, size: int, samples: list[Sample]) -> list[tuple[str, float]]:
    """Mean ms/image of each step run on its own (albumentations: each in its own Compose, so each pays the
    box bookkeeping a Compose does once: the steps add up to more than the pipeline)."""
    if name == "torchvision v2":
        steps = [(type(t).__name__, t) for t in torchvision_steps(size)]
        first = ("COCO lists -> BoundingBoxes", lambda sample: (sample[0], torchvision_target(sample)))
        steps = [first] + [(n, lambda state, t=t: t(*state)) for n, t in steps]
        steps.append(("unwrap to plain tensors", lambda state: torchvision_output(*state)))
    else:
        with warnings.catch_warnings():  # a Compose around a pixel-only transform warns that it has no box to move
            warnings.simplefilter("ignore", UserWarning)
            steps = [(type(t).__name__, albumentations_compose([t])) for t in albumentations_steps(size)]
        steps = [("PIL + COCO lists -> numpy", albumentations_input)] + [
            (n, lambda state, t=t: t(**state)) for n, t in steps
        ]
        steps.append(("boxes, labels -> tensors", albumentations_output))
    totals = [0.0] * len(steps)
    for sample in samples:
        state = sample
        for i, (_, step) in enumerate(steps):
            start = time.perf_counter()
            state = step(state)
            totals[i] += time.perf_counter() - start
    return [(n, 1000 * t / len(samples)) for (n, _), t in zip(steps, totals)]


def check(output: Output, sample: Sample, size: int, name: str) -> None:
    image, boxes, labels = output
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, size, size), (name, image.dtype, image.shape)
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4, (name, boxes.dtype, boxes.shape)
    assert len(labels) == len(boxes), (name, len(labels), len(boxes))
    assert set(labels.tolist()) <= set(sample[2]), (name, labels, sample[2])
    x, y, w, h = boxes.unbind(1)
    tol = 1e-3
    inside = (x >= -tol) & (y >= -tol) & (x + w <= size + tol) & (y + h <= size + tol) & (w > 0) & (h > 0)
    assert bool(torch.isfinite(boxes).all() and inside.all()), (name, boxes)


def time_pipeline(run, samples: list[Sample], size: int, name: str, warmup: int) -> dict:
    for sample in samples[:warmup]:
        check(run(sample), sample, size, name)
    times, outputs = [], []
    total = time.perf_counter()
    for sample in samples:
        start = time.perf_counter()
        output = run(sample)
        times.append(time.perf_counter() - start)
        outputs.append((output[0].shape, output[1], output[2]))  # not the pixels: 300 images at 640 px is 0.4 GB
    total = time.perf_counter() - total
    kept = 0
    for (shape, boxes, labels), sample in zip(outputs, samples):
        check((torch.empty(shape, dtype=torch.uint8), boxes, labels), sample, size, name)
        kept += len(boxes)
    ms = sorted(1000 * t for t in times)
    return {
        "median": statistics.median(ms),
        "p90": ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))],
        "per_s": len(samples) / total,
        "kept": kept / sum(len(s[1]) for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="timed images per pipeline and shape")
    parser.add_argument("--warmup", type=int, default=20, help="untimed images first")
    parser.add_argument("--quick", action="store_true", help="8 images after 2: a smoke run for the tests")
    parser.add_argument("--breakdown", action="store_true", help="also time each step alone (about doubles the run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.images, args.warmup = 8, 2
    torch.set_num_threads(1)
    if cv2 is not None:
        cv2.setNumThreads(1)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    n = max(args.images, args.warmup)
    shapes = [
        ("128 x 128 -> 128 (digits demo)", 128, digit_canvases(n, 128, rng)),
        ("640 x 480 -> 640 (photos)", 640, photo_crops(n, 640, 480, rng)),
    ]
    pipelines = [("torchvision v2", torchvision_pipeline), ("albumentations", albumentations_pipeline),
                 ("hf_ft recipe", hf_ft_pipeline)]
    rows, kept, steps = [], [], []
    for shape_name, size, samples in shapes:
        for name, build in pipelines:
            if name != "torchvision v2" and A is None:
                rows.append(f"| {name} | {shape_name} | not installed (`pip install albumentations`) | | |")
                continue
            result = time_pipeline(build(size), samples[: args.images], size, name, args.warmup)
            rows.append(
                f"| {name} | {shape_name} | {result['median']:.2f} | {result['p90']:.2f} | {result['per_s']:,.0f} |"
            )
            kept.append(f"{name} at {size} px {100 * result['kept']:.0f}%")
            if args.breakdown and name != "hf_ft recipe":
                steps += [(name, size, step, ms) for step, ms in breakdown(name, size, samples[: args.images])]

    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    if A is not None:
        versions += f", albumentations {A.__version__}, opencv {cv2.__version__}"
    else:
        versions += ", albumentations not installed"
    print(f"{args.images} timed images per row after {args.warmup}, one thread, {len(os.sched_getaffinity(0))} CPU cores; {versions}\n")
    print("| pipeline | image size | ms/image median | p90 | images/s |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nboxes kept after sanitizing: {'; '.join(kept)}; every output box checked inside the image")
    if steps:
        print("\n| pipeline | size | step, on its own | ms/image (mean) |")
        print("|---|---:|---|---:|")
        for name, size, step, ms in steps:
            print(f"| {name} | {size} | {step} | {ms:.2f} |")


if __name__ == "__main__":
    main()
