"""Data loading: sources, column and label mapping, splits, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_ft.data import sources
from hf_ft.errors import InputError
from hf_ft.tasks.image_classification import ImageDataArguments, load_image_classification_data
from hf_ft.vision import imagefolder


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
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\) \(1 in (train|validation)\): .*broken\.png"):
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


def write_broken(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return path


def test_unreadable_images_in_every_split_reported_at_once(tmp_path):
    for split in ("train", "validation", "test"):
        make_images(tmp_path / split, {"cat": 3, "dog": 3})
    write_broken(tmp_path / "train" / "cat" / "bad_train.png")
    write_broken(tmp_path / "validation" / "dog" / "bad_val1.png")
    write_broken(tmp_path / "validation" / "dog" / "bad_val2.png")
    write_broken(tmp_path / "test" / "cat" / "bad_test.png")
    dirs = {f"{split}_dir": str(tmp_path / split) for split in ("train", "validation", "test")}
    # One error for all three splits: counts per split, and the files shown take turns between splits.
    with pytest.raises(InputError, match=r"^4 unreadable image\(s\) \(1 in train, 2 in validation, 1 in test\): "
                       r".*bad_train\.png \(train\): .*bad_val1\.png \(validation\): .*bad_test\.png \(test\): "
                       r".*bad_val2\.png \(validation\): .*--skip_corrupt_images true") as err:
        load_image_classification_data(ImageDataArguments(**dirs), seed=0)
    assert "\n" not in str(err.value)
    data = load_image_classification_data(ImageDataArguments(**dirs, skip_corrupt_images=True), seed=0)
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 6, "validation": 6, "test": 6}


def test_skipping_every_image_of_a_split_is_refused(tmp_path):
    make_images(tmp_path / "train", {"cat": 3, "dog": 3})
    for label in ("cat", "dog"):
        (tmp_path / "val" / label).mkdir(parents=True)
        write_broken(tmp_path / "val" / label / "0.png")
    with pytest.raises(InputError, match=r"All 2 images of the validation split are unreadable, e\.g\. .*0\.png"):
        load_image_classification_data(
            ImageDataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val"),
                               skip_corrupt_images=True), seed=0,
        )


# ---- imagefolder layout: checked by a directory scan, before datasets reads anything ----

@pytest.fixture
def no_load_dataset(monkeypatch):
    """Fail the test if datasets is asked to load: the layout checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset ran before the directory checks")
    monkeypatch.setattr(sources, "load_dataset", refuse)


def test_images_without_class_folders(tmp_path, no_load_dataset):
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "train" / f"{i}.jpg")
    train = tmp_path / "train"
    with pytest.raises(InputError, match=rf"^--train_dir {train} holds 12 image files but no class sub-folders: "
                                         rf"put each class's images in {train}/<class name>/\.$"):
        load_image_classification_data(ImageDataArguments(train_dir=str(train)), seed=0)


def test_flat_test_dir_is_named(tmp_path, no_load_dataset):
    make_images(tmp_path / "train", {"cat": 3, "dog": 3})
    make_images(tmp_path, {"test": 4})  # tmp_path/test/0.png ...: a flat test folder
    with pytest.raises(InputError, match=r"^--test_dir .*test holds 4 image files but no class sub-folders"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test")), seed=0)


def test_images_beside_class_folders(tmp_path, no_load_dataset):
    make_images(tmp_path / "train", {"cat": 3, "dog": 3})
    make_images(tmp_path, {"train": 2})  # train/0.png, train/1.png beside train/cat/, train/dog/
    with pytest.raises(InputError, match=r"holds 2 image files directly inside it, beside the class sub-folders "
                                         r"cat, dog: move each into .*/train/<class name>/ \(imagefolder would label them `train`\)"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train")), seed=0)


def test_dir_with_no_images(tmp_path, no_load_dataset):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "0.heic").write_bytes(b"x")
    with pytest.raises(InputError, match=r"^--train_dir .*train holds no image files \(only 1 file\(s\) with other "
                                         r"extensions\): put each class's images in"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train")), seed=0)


def test_symlinked_class_folder_is_refused(tmp_path, no_load_dataset):
    make_images(tmp_path / "elsewhere", {"dog": 3})
    make_images(tmp_path / "train", {"cat": 3})
    (tmp_path / "train" / "dog").symlink_to(tmp_path / "elsewhere" / "dog", target_is_directory=True)
    with pytest.raises(InputError, match=r"^--train_dir .*train has sub-folders that are symbolic links \(dog\); "
                                         r"datasets' imagefolder skips their images without a word\. Copy them in"):
        load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train")), seed=0)


def test_datasets_still_skips_symlinked_folders_but_reads_symlinked_files(tmp_path):
    # Pins the datasets behaviour the check above exists for; if this fails, the check can go.
    from datasets import load_dataset

    paths = make_images(tmp_path / "elsewhere", {"dog": 3, "fox": 2})
    make_images(tmp_path / "train", {"cat": 3})
    (tmp_path / "train" / "dog").symlink_to(tmp_path / "elsewhere" / "dog", target_is_directory=True)
    (tmp_path / "train" / "fox").mkdir()
    for path in paths[3:]:
        (tmp_path / "train" / "fox" / path.name).symlink_to(path)
    loaded = load_dataset("imagefolder", data_files={"train": str(tmp_path / "train" / "**")}, drop_labels=False,
                          cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.features["label"].names == ["cat", "fox"]
    assert len(loaded) == 5


def test_flat_folder_with_metadata_file_still_loads(tmp_path):
    # imagefolder's other layout: labels from a metadata file, images in one folder. Not a missing-folders error.
    rows = ["file_name,label"]
    for i, label in enumerate(["cat", "dog"] * 4):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{label}")
    (tmp_path / "metadata.csv").write_text("\n".join(rows))
    data = load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path), train_val_split=0.5), seed=0)
    assert data.label_names == ["cat", "dog"]
    assert sum(len(s) for s in data.splits.values()) == 8


def test_non_image_files_are_counted_not_skipped_silently(tmp_path, caplog):
    make_images(tmp_path / "train", {"cat": 3, "dog": 3})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("todo")
    (tmp_path / "train" / "dog" / "labels.csv").write_text("a,b")
    (tmp_path / "train" / "dog" / "IMG_1.HEIC").write_bytes(b"x")
    # OS clutter that datasets' glob never sees (hidden files, __MACOSX): not the user's data, not counted.
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "train" / "cat" / "._0.png").write_bytes(b"x")
    (tmp_path / "train" / "__MACOSX").mkdir()
    (tmp_path / "train" / "__MACOSX" / "junk.txt").write_text("x")
    with caplog.at_level("WARNING"):
        data = load_image_classification_data(ImageDataArguments(train_dir=str(tmp_path / "train"), train_val_split=0.5), seed=0)
    assert sum(len(s) for s in data.splits.values()) == 6
    warnings = [r.getMessage() for r in caplog.records if "non-image" in r.getMessage()]
    assert warnings == [
        f"Ignoring 3 non-image file(s) in --train_dir {tmp_path / 'train'} (.csv: 1, .heic: 1, .txt: 1): "
        "cat/notes.txt, dog/IMG_1.HEIC, dog/labels.csv. imagefolder reads only image extensions (.jpg, .png, "
        ".webp, ...); convert any that are images, or remove them to silence this."
    ]


def test_image_extensions_come_from_datasets():
    # Pins datasets' public list the scan relies on: if it moves or changes, the scan must follow.
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    assert imagefolder.IMAGE_EXTENSIONS == set(ImageFolder.EXTENSIONS)
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif"} <= imagefolder.IMAGE_EXTENSIONS
    assert not {".txt", ".csv", ".json", ".heic", ".avif"} & imagefolder.IMAGE_EXTENSIONS
    assert set(ImageFolder.METADATA_FILENAMES) == {"metadata.csv", "metadata.jsonl", "metadata.parquet"}


# ---- label values ----

def test_id_like_label_column_warns(tmp_path, caplog):
    image = make_images(tmp_path / "imgs", {"cat": 1})[0]
    rows = ["image,id,species"] + [f"{image},{i},{'cat' if i % 2 else 'dog'}" for i in range(150)]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    files = dict(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "train.csv"), verify_images=False)
    with caplog.at_level("WARNING"):
        data = load_image_classification_data(ImageDataArguments(**files, label_column_name="id"), seed=0)
    assert len(data.label_names) == 150  # only a warning: some data sets really have this many classes
    assert (
        "Label column `id` has 150 distinct values in 150 train rows (100%): it looks like an ID, file name or "
        "measured value, not class labels (a class needs several examples to be learned). If it is not the label, "
        "set --label_column_name to one of ['species']; if these really are classes, ignore this."
    ) in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_image_classification_data(ImageDataArguments(**files, label_column_name="species"), seed=0)
    assert "looks like an ID" not in caplog.text


def test_small_all_unique_label_column_warns_before_the_split_fails(tmp_path, caplog):
    paths = make_images(tmp_path / "imgs", {"cat": 10, "dog": 10})
    (tmp_path / "train.csv").write_text("\n".join(["image,label"] + [f"{p},{p.parent.name}{p.stem}" for p in paths]))
    with caplog.at_level("WARNING"), pytest.raises(InputError, match="Cannot hold out a stratified"):
        load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.csv")), seed=0)
    assert "Label column `label` has 20 distinct values in 20 train rows (100%)" in caplog.text
    assert "check --label_column_name" in caplog.text  # no other column to suggest


def test_many_real_classes_do_not_warn(digits_dir, caplog):
    with caplog.at_level("WARNING"):
        load_image_classification_data(ImageDataArguments(train_dir=str(digits_dir / "train"), verify_images=False), seed=0)
    assert "looks like an ID" not in caplog.text


def test_mixed_label_types(tmp_path):
    paths = make_images(tmp_path / "imgs", {"a": 4})
    values = ["1", '"cat"', "2", '"dog"']
    (tmp_path / "train.jsonl").write_text("\n".join(f'{{"image": "{p}", "label": {v}}}' for p, v in zip(paths, values)))
    with pytest.raises(InputError, match=r"^Column `label` of the train split mixes label types \(int 1, str 'cat'\): "
                                         r"make every label a string \(quote the numbers in the data file\)"):
        load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.jsonl")), seed=0)


def test_empty_string_labels(tmp_path):
    paths = make_images(tmp_path / "imgs", {"a": 6})
    values = ["", "cat", " ", "dog", "cat", "dog"]
    (tmp_path / "train.jsonl").write_text("\n".join(f'{{"image": "{p}", "label": "{v}"}}' for p, v in zip(paths, values)))
    with pytest.raises(InputError, match=r"^2 rows of the train split have an empty label \(''\) in column `label`; "
                                         r"drop or fill them\.$"):
        load_image_classification_data(ImageDataArguments(train_file=str(tmp_path / "train.jsonl")), seed=0)
