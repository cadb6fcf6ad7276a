"""Decode training images once and keep them as uncompressed PPM in the datasets cache.

Decoding a JPEG costs about five times as much as reading the same pixels from PPM, and a
plain split decodes every image again each epoch. The cached column is still an `Image`
feature, so transforms receive the same PIL images as before.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import datasets
from datasets import Dataset, Image
from datasets.fingerprint import Hasher
from PIL import Image as PILImage
from transformers import BaseImageProcessor

from ..errors import InputError
from .images import open_undecoded
from .transforms import data_config

logger = logging.getLogger(__name__)


def cache_decoded_images(split: Dataset, *, max_size: int, num_proc: int | None = None) -> Dataset:
    """`split` with each image stored once as RGB PPM, its shorter side at most `max_size`.

    Columns, features and row order are unchanged; an image already within the bound
    keeps exactly its decoded pixels. The cache file sits next to the split's own cache
    files (in-memory splits: under HF_DATASETS_CACHE), and a later call on the same data
    with the same `max_size` reads it back instead of decoding again.

    Raises:
        InputError: the estimated cache does not fit in the free space of its directory;
            checked before anything is written.
        OSError: an image cannot be read (run the image check first).
    """
    feature = split.features["image"]
    directory = _cache_directory(split)
    # Our own fingerprint names the cache file before mapping, so a rerun that finds it
    # skips the header scan and the disk check (which the cache's own size could fail).
    fingerprint = Hasher.hash((split._fingerprint, "decoded-images", max_size))
    cache_file = directory / f"cache-{fingerprint}.arrow"
    if any(directory.glob(f"cache-{fingerprint}*.arrow")):  # *: num_proc shards
        logger.info("Reusing the decoded images cached in %s.", directory)
    else:
        _check_free_space(split, max_size, directory)
    raw = split.cast_column("image", Image(decode=False))
    cached = raw.map(
        _to_ppm_batch,
        batched=True,
        # Decoded images are large (~0.5 MB at 448 px): hold 100 per process, not 1,000.
        batch_size=100,
        writer_batch_size=100,
        fn_kwargs={"feature": feature, "max_size": max_size},
        features=raw.features,
        num_proc=num_proc,
        cache_file_name=str(cache_file),
        new_fingerprint=fingerprint,
        desc="Caching decoded images",
    )
    return cached.cast_column("image", feature)


def cached_size_for(processor: BaseImageProcessor) -> int:
    """The shorter-side bound for training at `processor`'s resolution: twice that resolution.

    A random-resized crop covering a quarter of the image or more then still comes from full-detail pixels;
    images within the bound (most photos for 224 px training) are cached exactly.
    """
    return 2 * max(data_config(processor)["input_size"][1:])


def estimated_cache_bytes(split: Dataset, *, max_size: int) -> int:
    """PPM bytes of the images of `split` once cached with `max_size`, from image headers only.

    Raises:
        OSError: an image cannot be opened (run the image check first).
    """
    raw = split.select_columns(["image"]).cast_column("image", Image(decode=False))
    total = 0
    for row in raw:  # row by row: a column of image bytes may not fit in memory
        with open_undecoded(row["image"]) as img:  # reads the header, not the pixels
            # EXIF rotation may swap width and height; the byte count is the same.
            width, height = _cached_size(img.size, max_size)
        total += len(_ppm_header(width, height)) + width * height * 3
    return total


def _cache_directory(split: Dataset) -> Path:
    if split.cache_files:  # where datasets itself would write the map's output
        return Path(split.cache_files[0]["filename"]).parent
    # An in-memory split would keep the mapped pixels in RAM; put them on disk instead.
    directory = Path(datasets.config.HF_DATASETS_CACHE) / "decoded_images"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _check_free_space(split: Dataset, max_size: int, directory: Path) -> None:
    needed = estimated_cache_bytes(split, max_size=max_size)
    free = shutil.disk_usage(directory).free
    logger.info(
        "Caching %d decoded images (shorter side at most %d px): about %.2f GB in %s.",
        len(split),
        max_size,
        needed / 1e9,
        directory,
    )
    if needed > free:
        raise InputError(
            f"Caching the {len(split)} decoded training images needs about "
            f"{needed / 1e9:.2f} GB in {directory}, which has {free / 1e9:.2f} GB free. "
            "Set --cache_images false, or set HF_DATASETS_CACHE to a directory on a "
            "bigger disk."
        )


def _to_ppm_batch(batch: dict, feature: Image, max_size: int) -> dict:
    # The column's own decoder (EXIF rotation, mode), so that an image within the bound
    # decodes from the cache to exactly the pixels it had before.
    ppm = [_to_ppm(feature.decode_example(raw), max_size) for raw in batch["image"]]
    return {"image": ppm}


def _to_ppm(image: PILImage.Image, max_size: int) -> dict:
    image = image.convert("RGB")
    size = _cached_size(image.size, max_size)
    if size != image.size:
        # PIL's bicubic filter widens with the scale factor, so it antialiases when
        # shrinking; reducing_gap=None resizes in one exact pass instead of a box prefilter.
        image = image.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=None)
    buffer = io.BytesIO()
    image.save(buffer, format="PPM")
    return {"bytes": buffer.getvalue(), "path": None}


def _cached_size(size: tuple[int, int], max_size: int) -> tuple[int, int]:
    width, height = size
    shorter = min(width, height)
    if shorter <= max_size:
        return size
    # Integer rounding (half up), so the estimate and the resize agree to the pixel.
    return (
        (width * max_size + shorter // 2) // shorter,
        (height * max_size + shorter // 2) // shorter,
    )


def _ppm_header(width: int, height: int) -> bytes:
    return b"P6\n%d %d\n255\n" % (width, height)  # what PIL writes for RGB
