"""The decoded-image cache: same pixels as the original images, PPM on disk, reused, and
refused before writing when the disk is too small."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import timm
import torch
from datasets import Image, load_dataset
from PIL import Image as PILImage

from hf_ft.vision import cache
from hf_ft.vision.cache import cache_decoded_images, estimated_cache_bytes
from hf_ft.errors import InputError

# (width, height) of the JPEG crops; with MAX_SIZE, three are shrunk (shorter sides 100,
# 96, 90) and three are kept (60, 75, 64). No size is a rounding tie.
PHOTO_SIZES = [(60, 90), (120, 100), (75, 110), (118, 64), (110, 96), (90, 120)]
MAX_SIZE = 80


def load_imagefolder(data_dir: Path, cache_dir: Path) -> datasets.Dataset:
    return load_dataset("imagefolder", data_dir=str(data_dir), cache_dir=str(cache_dir))["train"]


@pytest.fixture
def digits(digits_dir, tmp_path) -> datasets.Dataset:
    """The 1,258 training digits (8x8 grey PNGs), backed by cache files in tmp_path."""
    return load_imagefolder(digits_dir / "train", tmp_path / "hf")


@pytest.fixture
def photos(tmp_path) -> datasets.Dataset:
    """Six JPEG crops of sklearn's sample photos, sizes PHOTO_SIZES, in two classes."""
    from sklearn.datasets import load_sample_images

    samples = load_sample_images().images  # two 427x640 photos
    for i, (width, height) in enumerate(PHOTO_SIZES):
        folder = tmp_path / "photos" / ("flower" if i % 2 else "china")
        folder.mkdir(parents=True, exist_ok=True)
        crop = samples[i % 2][40 * i : 40 * i + height, 50 * i : 50 * i + width]
        PILImage.fromarray(crop).save(folder / f"{i}.jpg", quality=90)
    return load_imagefolder(tmp_path / "photos", tmp_path / "hf")


def expected_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIZE / min(width, height))
    return round(width * scale), round(height * scale)


def raw_images(split: datasets.Dataset) -> list[dict]:
    return split.cast_column("image", Image(decode=False))["image"]


def low_disk(calls: list[Path]):
    def disk_usage(path):
        calls.append(Path(path))
        return SimpleNamespace(total=10**12, used=10**12 - 1000, free=1000)

    return disk_usage


def test_images_within_the_bound_keep_their_exact_pixels_as_ppm(digits):
    # The digits are 8x8: exactly at the bound.
    cached = cache_decoded_images(digits, max_size=8)

    assert cached.features == digits.features
    assert cached["label"] == digits["label"]
    for original, image in zip(digits["image"], cached["image"]):
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), np.asarray(original.convert("RGB")))
    entries = raw_images(cached)
    assert all(e["bytes"].startswith(b"P6\n") and e["path"] is None for e in entries)


@pytest.mark.parametrize("max_size, shrunk", [(MAX_SIZE, 3), (24, 6)])
def test_images_above_the_bound_are_shrunk_like_pil_bicubic(photos, max_size, shrunk):
    # 24 px shrinks by 2.5x-5x, where PIL's default reducing_gap would change pixels.
    cached = cache_decoded_images(photos, max_size=max_size)

    assert cached["label"] == photos["label"]
    for original, image in zip(photos["image"], cached["image"]):
        original = original.convert("RGB")
        width, height = original.size
        shorter = min(width, height)
        if shorter <= max_size:
            assert np.array_equal(np.asarray(image), np.asarray(original))
            continue
        shrunk -= 1
        assert min(image.size) == max_size
        assert abs(image.width - width * max_size / shorter) < 1
        assert abs(image.height - height * max_size / shorter) < 1
        reference = original.resize(image.size, PILImage.Resampling.BICUBIC, reducing_gap=None)
        assert np.array_equal(np.asarray(image), np.asarray(reference))
    assert shrunk == 0


def test_timm_train_transform_gives_the_same_tensors(digits):
    transform = timm.data.create_transform(32, is_training=True)
    cached = cache_decoded_images(digits, max_size=8)

    for i in range(0, len(digits), 50):
        tensors = []
        for split in (digits, cached):
            random.seed(i)  # timm's random resized crop draws from `random`
            torch.manual_seed(i)  # flip and colour jitter draw from torch
            tensors.append(transform(split[i]["image"].convert("RGB")))
        assert torch.equal(*tensors)


def test_a_second_call_reuses_the_cache_without_checking_the_disk(digits, digits_dir, tmp_path, monkeypatch):
    first = cache_decoded_images(digits, max_size=8, num_proc=2)

    def decode_again(*args):
        raise RuntimeError("decoded again")

    monkeypatch.setattr(cache, "_to_ppm", decode_again)
    with pytest.raises(RuntimeError, match="decoded again"):  # so a recompute shows
        cache_decoded_images(digits, max_size=4)
    # A new run: the split loaded again, and the disk now full (the cache takes it).
    calls = []
    monkeypatch.setattr(cache.shutil, "disk_usage", low_disk(calls))
    again = cache_decoded_images(load_imagefolder(digits_dir / "train", tmp_path / "hf"), max_size=8, num_proc=2)

    assert again.cache_files == first.cache_files
    assert len(again.cache_files) == 2  # num_proc=2 shards
    assert calls == []
    assert raw_images(again) == raw_images(first)


def test_estimate_is_the_size_of_the_cached_ppm_bytes(photos, caplog):
    estimate = estimated_cache_bytes(photos, max_size=MAX_SIZE)
    with caplog.at_level("INFO", logger="hf_ft"):
        cached = cache_decoded_images(photos, max_size=MAX_SIZE)

    sizes = [expected_size(*image.size) for image in photos["image"]]
    header = "P6\n{} {}\n255\n"
    assert estimate == sum(w * h * 3 + len(header.format(w, h)) for w, h in sizes)
    assert estimate == sum(len(e["bytes"]) for e in raw_images(cached))
    assert [image.size for image in cached["image"]] == sizes
    assert f"Caching {len(photos)} decoded images" in caplog.text


def test_not_enough_disk_refuses_before_writing(digits, monkeypatch):
    directory = Path(digits.cache_files[0]["filename"]).parent
    before = sorted(directory.iterdir())
    calls = []
    monkeypatch.setattr(cache.shutil, "disk_usage", low_disk(calls))

    with pytest.raises(InputError, match="--cache_images false") as error:
        cache_decoded_images(digits, max_size=8, num_proc=2)

    assert calls == [directory]
    assert str(directory) in str(error.value)
    assert "HF_DATASETS_CACHE" in str(error.value)
    assert sorted(directory.iterdir()) == before


def test_an_in_memory_split_is_cached_on_disk(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "home"))
    in_memory = datasets.Dataset.from_dict(
        {"image": raw_images(photos), "label": photos["label"]},
        features=photos.features,
    )
    assert in_memory.cache_files == []

    cached = cache_decoded_images(in_memory, max_size=MAX_SIZE)

    assert len(cached.cache_files) == 1
    cache_file = Path(cached.cache_files[0]["filename"])
    assert cache_file.is_relative_to(tmp_path / "home")
    assert [image.size for image in cached["image"]] == [expected_size(*image.size) for image in photos["image"]]
