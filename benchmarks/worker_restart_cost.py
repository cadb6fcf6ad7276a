"""What non-persistent data loader workers cost: the wait for each epoch's first batch, restarted vs persistent.

    python benchmarks/worker_restart_cost.py                          # 1 and 2 workers; 0 and 4 GiB of ballast
    python benchmarks/worker_restart_cost.py --workers 15 --ballast_gib 0 8

A DataLoader that is not persistent forks all its workers again at every epoch and every evaluation, and the
fork of a training process grows with its resident memory (model, optimizer state, CUDA's host-side libraries):
`--ballast_gib` adds that much touched memory to this process to stand in for it. The loader is the image
recipe's own training split (`attach_transforms` + `BatchSeededDataset`) over the throughput benchmark's JPEGs.
Each cell is the median, over epochs 2 to `--epochs`, of the seconds from `iter(loader)` to the first batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from torch.utils.data import DataLoader
from transformers import ViTImageProcessor

from hf_ft.tasks.image_classification import ImageDataArguments, load_image_classification_data
from hf_ft.vision.seeding import BatchSeededDataset
from hf_ft.vision.transforms import attach_transforms, collate

sys.path.insert(0, str(Path(__file__).parent))
from image_cls_throughput import write_jpegs  # noqa: E402 - the same images as the throughput benchmark


def first_batch_seconds(dataset, workers: int, persistent: bool, batch_size: int, epochs: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=persistent,
    )
    waits = []
    for _ in range(epochs):
        start = time.perf_counter()
        batches = iter(loader)
        next(batches)
        waits.append(time.perf_counter() - start)
        for _ in batches:
            pass
    return statistics.median(waits[1:])  # the first epoch starts its workers either way


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--ballast_gib", nargs="+", type=float, default=[0, 4], help="extra resident memory, GiB")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--jpeg_size", nargs=2, type=int, default=[300, 500], help="side length range, px")
    parser.add_argument("--resolution", type=int, default=224, help="training resolution")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data_dir", default=str(Path(tempfile.gettempdir()) / "hf_ft_bench_jpegs"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch starts its workers either way")

    train_dir = write_jpegs(Path(args.data_dir), args.images, tuple(args.jpeg_size))
    data_args = ImageDataArguments(train_dir=str(train_dir))
    data = load_image_classification_data(data_args, seed=0)
    processor = ViTImageProcessor(size={"height": args.resolution, "width": args.resolution})
    train = BatchSeededDataset(attach_transforms(data.splits, processor, data_args)["train"], seed=0)

    rows, ballast = [], []
    for gib in sorted(args.ballast_gib):
        ballast[:] = [torch.ones(int(gib * 2**28))]  # float32: 2**28 of them per GiB; ones() touches every page
        rss = psutil.Process().memory_info().rss / 2**30
        for workers in args.workers:
            restarted, persistent = (
                first_batch_seconds(train, workers, persistent, args.batch_size, args.epochs)
                for persistent in (False, True)
            )
            rows.append((rss, workers, restarted, persistent))

    print(
        f"{len(train)} JPEGs of {args.jpeg_size[0]}-{args.jpeg_size[1]} px, batch {args.batch_size} at "
        f"{args.resolution} px, {len(psutil.Process().cpu_affinity())} CPU cores; median of epochs 2-{args.epochs}\n"
    )
    print(
        "| training process RSS (GiB) | workers | first batch, restarted (s) | first batch, persistent (s) | "
        "restart cost per epoch (s) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for rss, workers, restarted, persistent in rows:
        print(f"| {rss:.1f} | {workers} | {restarted:.3f} | {persistent:.3f} | {restarted - persistent:.3f} |")


if __name__ == "__main__":
    main()
