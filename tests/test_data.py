"""Data loading: sources, column and label mapping, splits, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_ft.args import ImageDataArguments
from hf_ft.data import load_image_classification_data


def make_images(root: Path, labels: dict[str, int], size: int = 12, seed: int = 0) -> list[Path]:
    """Write `count` small RGB PNGs per label under root/<label>/."""
    rng = np.random.default_rng(seed)
    paths = []
    for label, count in labels.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / label / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def test_imagefolder_digits_splits_and_labels(digits_dir):
    data = load_image_classification_data(
        ImageDataArguments(train_dir=str(digits_dir / "train"), validation_dir=str(digits_dir / "validation"),
                           test_dir=str(digits_dir / "test")),
        seed=0,
    )
    assert data.label_names == [str(d) for d in range(10)]
    assert sum(len(s) for s in data.splits.values()) == 1797
    assert set(data.splits["train"].column_names) == {"image", "label"}


def test_stratified_validation_split_and_max_samples(digits_dir):
    args = ImageDataArguments(train_dir=str(digits_dir / "train"), train_val_split=0.2, max_eval_samples=50)
    data = load_image_classification_data(args, seed=0)
    train, validation = data.splits["train"], data.splits["validation"]
    assert len(validation) == 50
    full = load_image_classification_data(ImageDataArguments(train_dir=str(digits_dir / "train"), train_val_split=0.2), seed=0)
    counts = np.bincount(full.splits["validation"]["label"], minlength=10) / len(full.splits["validation"])
    train_counts = np.bincount(full.splits["train"]["label"], minlength=10) / len(full.splits["train"])
    np.testing.assert_allclose(counts, train_counts, atol=0.02)  # stratified: same class mix on both sides
    capped = load_image_classification_data(
        ImageDataArguments(train_dir=str(digits_dir / "train"), max_train_samples=100), seed=0
    )
    assert len(capped.splits["train"]) == 100
    assert len(train) > 100


def test_csv_with_string_labels_and_relative_paths(tmp_path):
    paths = make_images(tmp_path / "imgs", {"cat": 6, "dog": 6})
    rows = ["file,species"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in paths]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    (tmp_path / "test.csv").write_text("\n".join(rows[:1] + rows[1:3] + rows[-2:]))
    data = load_image_classification_data(
        ImageDataArguments(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"),
                           label_column_name="species", train_val_split=0.34),
        seed=0,
    )
    assert data.label_names == ["cat", "dog"]
    assert data.splits["test"]["label"] == [0, 0, 1, 1]
    assert data.splits["test"][0]["image"].size == (12, 12)


def test_integer_labels_sorted_numerically(tmp_path):
    paths = make_images(tmp_path / "imgs", {"a": 4, "b": 4, "c": 4})
    codes = {"a": 10, "b": 2, "c": 7}
    rows = ["image_path,label"] + [f"{p},{codes[p.parent.name]}" for p in paths]
    (tmp_path / "train.json").write_text("")
    (tmp_path / "train.csv").write_text("\n".join(rows))
    data = load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.csv"), train_val_split=0.25), seed=0)
    assert data.label_names == ["2", "7", "10"]


# ---- bad input: each a clear error, before any model is loaded ----

def test_misnamed_columns_list_the_real_ones(tmp_path):
    paths = make_images(tmp_path / "imgs", {"cat": 3, "dog": 3})
    (tmp_path / "train.csv").write_text("\n".join(["picture,kind"] + [f"{p},{p.parent.name}" for p in paths]))
    with pytest.raises(ValueError, match=r"set --label_column_name to one of \['picture', 'kind'\]"):
        load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.csv"), image_column_name="picture"), seed=0)
    with pytest.raises(ValueError, match=r"--image_column_name `img` not found; the data has columns \['picture', 'kind'\]"):
        load_image_classification_data(
            ImageDataArguments(train_file=str(tmp_path / "train.csv"), image_column_name="img", label_column_name="kind"), seed=0
        )


def test_eval_label_unseen_in_train(tmp_path):
    make_images(tmp_path / "train", {"cat": 4, "dog": 4})
    make_images(tmp_path / "test", {"cat": 2, "dog": 2, "fox": 2})
    with pytest.raises(ValueError, match=r"Labels \['fox'\] appear in the test split but never in train"):
        load_image_classification_data(
            ImageDataArguments(train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"), train_val_split=0.5), seed=0
        )


def test_corrupt_image_is_named_or_skipped(tmp_path, caplog):
    make_images(tmp_path / "train", {"cat": 5, "dog": 5})
    bad = tmp_path / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    args = dict(train_dir=str(tmp_path / "train"), train_val_split=0.4)
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\) in the (train|validation) split: .*broken\.png"):
        load_image_classification_data(ImageDataArguments(**args), seed=0)
    with caplog.at_level("WARNING"):
        data = load_image_classification_data(ImageDataArguments(**args, skip_corrupt_images=True), seed=0)
    assert sum(len(s) for s in data.splits.values()) == 10
    assert "Skipping 1 unreadable image(s)" in caplog.text


def test_truncated_image_is_caught(tmp_path):
    paths = make_images(tmp_path / "train", {"cat": 5, "dog": 5}, size=64)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(paths[0].with_suffix(".jpg"))
    paths[0].unlink()
    jpg = paths[0].with_suffix(".jpg")
    jpg.write_bytes(jpg.read_bytes()[:200])  # header survives, pixel data does not
    with pytest.raises(ValueError, match=r"0\.jpg"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train"), train_val_split=0.4), seed=0)


def test_empty_split(tmp_path):
    make_images(tmp_path / "train", {"cat": 4, "dog": 4})
    (tmp_path / "train.csv").write_text("image,label\n")
    with pytest.raises(ValueError, match="The train split is empty"):
        load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.csv")), seed=0)


def test_single_class(tmp_path):
    make_images(tmp_path / "train", {"cat": 6})
    (tmp_path / "val").mkdir()
    make_images(tmp_path / "val", {"cat": 2})
    with pytest.raises(ValueError, match=r"only one class \(\['cat'\]\)"):
        load_image_classification_data(
            ImageDataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val")), seed=0
        )


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="--train_dir .*nope does not exist"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "nope")), seed=0)


def test_hub_dataset_while_offline(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1 forbids downloading it"):
        load_image_classification_data(ImageDataArguments(dataset_name="someone/not-cached-anywhere"), seed=0)
