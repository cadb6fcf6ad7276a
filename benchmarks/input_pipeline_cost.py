"""CPU milliseconds per training image, step by step, on one core: what the image recipe's loader spends where.

    python benchmarks/input_pipeline_cost.py                  # 200 JPEGs of 300-500 px, 224 px training
    python benchmarks/input_pipeline_cost.py --images 50 --resolution 64

The images are the throughput benchmark's (`image_cls_throughput.write_jpegs`: crops of scikit-learn's sample
photos). Each row is the median over `--repeats` passes of the mean time per image, one thread. Rows:
- JPEG decode (PIL, what a plain split pays every epoch) against reading the same pixels back from PPM (what
  `cache_images: true` stores);
- timm's training transform (random-resized-crop, flip, colour jitter) ending in a normalised float tensor (the
  usual way) against ending in uint8 (hf_ft's way: normalised on the device);
- both whole paths: decode + float transform (plain) and PPM + uint8 transform (hf_ft with the cache).
Divide 1,000 by a path's ms to get the images/s one loader worker can feed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from timm.data import create_transform

sys.path.insert(0, str(Path(__file__).parent))
from image_cls_throughput import write_jpegs  # noqa: E402 - the same images as the throughput benchmark


def per_image_ms(step, items, repeats: int) -> float:
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            step(item)
        passes.append(1000 * (time.perf_counter() - start) / len(items))
    return statistics.median(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--jpeg_size", nargs=2, type=int, default=[300, 500], help="side length range, px")
    parser.add_argument("--resolution", type=int, default=224, help="training resolution")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data_dir", default=str(Path(tempfile.gettempdir()) / "hf_ft_bench_jpegs"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    train_dir = write_jpegs(Path(args.data_dir), args.images, tuple(args.jpeg_size))
    jpegs = [path.read_bytes() for path in sorted(train_dir.glob("*/*.jpg"))]
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs]
    ppms = []
    for image in decoded:
        buffer = io.BytesIO()
        image.save(buffer, format="PPM")
        ppms.append(buffer.getvalue())

    common = {
        "input_size": args.resolution,
        "is_training": True,
        "color_jitter": 0.4,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    to_float, to_uint8 = create_transform(**common), create_transform(**common, use_prefetcher=True)

    def decode(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    rows = [
        ("JPEG decode", per_image_ms(decode, jpegs, args.repeats)),
        ("PPM read (cache_images)", per_image_ms(decode, ppms, args.repeats)),
        ("timm train transform -> float, normalised", per_image_ms(to_float, decoded, args.repeats)),
        ("timm train transform -> uint8 (hf_ft)", per_image_ms(to_uint8, decoded, args.repeats)),
        ("plain path: JPEG + float transform", per_image_ms(lambda d: to_float(decode(d)), jpegs, args.repeats)),
        ("hf_ft path: JPEG + uint8 transform", per_image_ms(lambda d: to_uint8(decode(d)), jpegs, args.repeats)),
        ("hf_ft + cache: PPM + uint8 transform", per_image_ms(lambda d: to_uint8(decode(d)), ppms, args.repeats)),
    ]
    sizes = f"{args.jpeg_size[0]}-{args.jpeg_size[1]} px"
    print(
        f"{len(jpegs)} JPEGs of {sizes} (mean {sum(map(len, jpegs)) / len(jpegs) / 1e3:.0f} KB), "
        f"training at {args.resolution} px, one thread, median of {args.repeats} passes\n"
    )
    print("| step | ms per image | images/s per core |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {1000 / ms:,.0f} |")


if __name__ == "__main__":
    main()
