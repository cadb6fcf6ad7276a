"""Measure any predictor the same way: a PyTorch model, an int8 model, an ONNX Runtime session.

A predictor is a function from float32 NCHW pixel values (numpy) to logits (numpy), so every variant of a
model is scored by the same metrics code on the same preprocessed images, and timed by the same clock.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from datasets import Dataset
from transformers import BaseImageProcessor

from ..vision.transforms import eval_transform

Predictor = Callable[[np.ndarray], np.ndarray]

# Files that hold a model's weights, whatever the format; configs and processor files are a few KB.
_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data", ".pt", ".bin")


def pixel_array(split: Dataset, processor: BaseImageProcessor, limit: int | None = None) -> np.ndarray:
    """The images of `split` (the first `limit`) preprocessed for evaluation by `processor`, as (N, C, H, W)."""
    transform = eval_transform(processor)
    images = split["image"] if limit is None else split.select(range(min(limit, len(split))))["image"]
    return np.stack([transform(image.convert("RGB")).numpy() for image in images]).astype(np.float32)


def predict_batches(predict: Predictor, pixel_values: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of `predict` over all of `pixel_values`, in batches."""
    return np.concatenate([predict(pixel_values[i : i + batch_size]) for i in range(0, len(pixel_values), batch_size)])


def weights_size_bytes(path: str | Path) -> int:
    """Bytes of the weight files of a saved model: a file, or the top level of a model directory.

    Trainer leftovers (`training_args.bin`, checkpoints in sub-directories) are not part of the model.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(
        f.stat().st_size
        for f in path.iterdir()
        if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES) and f.name != "training_args.bin"
    )


def measure_latency(
    predict: Predictor,
    sample: np.ndarray,
    *,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 10,
    warmup: int = 2,
) -> dict[int, float]:
    """Median milliseconds per call of `predict` on batches of each size, after `warmup` untimed calls.

    The median of `repeats` timed calls resists the outliers of a shared machine (a garbage collection, another
    process). The thread count is the caller's to set (torch.set_num_threads, ONNX Runtime session options)
    and to report beside the numbers.

    Args:
        predict: float32 NCHW pixel values in, logits out.
        sample: Preprocessed images (N, C, H, W); repeated when a batch needs more than N.
        batch_sizes: Batch sizes to time.
        repeats: Timed calls per batch size.
        warmup: Untimed calls first (allocations, lazy initialisation, caches).
    """
    timings = {}
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(np.resize(sample, (batch_size, *sample.shape[1:])), dtype=np.float32)
        for _ in range(warmup):
            predict(batch)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            predict(batch)
            seconds.append(time.perf_counter() - start)
        timings[batch_size] = 1000 * statistics.median(seconds)
    return timings


def cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo), for stating where latencies were measured."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
