"""The image recipe on the data shapes users have, and its reruns: after a failure before training, after a failure
after training, and with checks ordered by cost. Runs `main()` in this process on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from transformers import AutoConfig

from hf_ft.errors import InputError

from .test_image_cls_recipe import recipe_config, results, run_in_process

pytestmark = pytest.mark.slow


def digits_subset(digits_dir: Path, root: Path, num_classes: int, per_class: int) -> Path:
    """An imagefolder of the first `num_classes` digits, `per_class` train images each (a quarter for the others)."""
    for split, count in (("train", per_class), ("validation", max(per_class // 4, 2)), ("test", max(per_class // 4, 2))):
        for digit in range(num_classes):
            target = root / split / str(digit)
            target.mkdir(parents=True)
            for file in sorted((digits_dir / split / str(digit)).glob("*.png"))[:count]:
                shutil.copy(file, target / file.name)
    return root


def noise_classes(root: Path, num_classes: int) -> Path:
    """Many classes of random images (3 train, 1 validation, 1 test each): the shape, not the learning, is tested."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("validation", 1), ("test", 1)):
        for label in range(num_classes):
            target = root / split / f"class_{label:03d}"
            target.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(target / f"{i}.png")
    return root


def data_config(tmp_path: Path, data: Path, checkpoint: Path, output_dir: Path, **overrides) -> Path:
    folders = {f"{split}_dir": str(data / split) for split in ("train", "validation", "test")}
    return recipe_config(tmp_path, data, checkpoint, output_dir, **{"max_train_samples": None, **folders, **overrides})


@pytest.mark.parametrize("num_classes", [2, 3, 5, 6, 10])
def test_every_class_count_trains_reports_and_cards(num_classes, tmp_path, digits_dir, tiny_timm_dir):
    data = digits_subset(digits_dir, tmp_path / "data", num_classes, per_class=40)
    output_dir = tmp_path / "out"
    run_in_process(data_config(tmp_path, data, tiny_timm_dir, output_dir, num_train_epochs=4))
    test = results(output_dir)["test"]
    assert ("top5_accuracy" in test) == (num_classes > 5)
    assert test["accuracy"] > test["majority_baseline_accuracy"]
    assert len((output_dir / "test_per_class.csv").read_text().splitlines()) == num_classes + 1
    assert (output_dir / "README.md").is_file() and (output_dir / "test_confusion_matrix.png").is_file()
    assert AutoConfig.from_pretrained(output_dir).num_labels == num_classes
    resolved = yaml.safe_load((output_dir / "args.yaml").read_text())  # what ran, not what was left undecided
    assert resolved["bf16"] is False and resolved["torch_compile"] is False
    assert resolved["dataloader_persistent_workers"] is (resolved["dataloader_num_workers"] > 0)


def test_hundreds_of_classes(tmp_path, tiny_timm_dir, caplog):
    data = noise_classes(tmp_path / "data", 150)
    output_dir = tmp_path / "out"
    run_in_process(data_config(tmp_path, data, tiny_timm_dir, output_dir, num_train_epochs=1))
    assert results(output_dir)["test"]["num_samples"] == 150
    assert len((output_dir / "test_per_class.csv").read_text().splitlines()) == 151
    assert "looks like an ID" not in caplog.text
    assert (output_dir / "test_confusion_matrix.png").is_file()


def test_failure_after_training_costs_only_itself(tmp_path, digits_dir, tiny_timm_dir, monkeypatch, caplog):
    """The card fails after training; the same command again writes report, card and push without training."""
    import hf_ft.hub

    output_dir = tmp_path / "out"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, num_train_epochs=1, max_train_samples=64)

    def broken_card(*args, **kwargs):
        raise RuntimeError("the card failed")

    monkeypatch.setattr(hf_ft.hub, "write_model_card", broken_card)
    with pytest.raises(RuntimeError, match="the card failed"):
        run_in_process(config)
    monkeypatch.undo()
    trained = {name: (output_dir / name).read_bytes() for name in ("model.safetensors", "train_results.json")}
    checkpoints = sorted(p.name for p in output_dir.glob("checkpoint-*"))
    for written_before_the_failure in ("report.md", "training_curves.png", "eval_results.json"):
        (output_dir / written_before_the_failure).unlink()

    caplog.clear()
    run_in_process(config)
    assert "Training already finished" in caplog.text and "Resuming" not in caplog.text
    assert {name: (output_dir / name).read_bytes() for name in trained} == trained
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == checkpoints
    assert json.loads(trained["train_results.json"])["train_loss"] > 0
    assert (output_dir / "README.md").is_file() and results(output_dir)["test"]["num_samples"] == 359
    assert (output_dir / "training_curves.png").is_file()  # the reloaded trainer state still has the losses


def test_a_run_stopped_by_bad_data_does_not_block_its_corrected_rerun(tmp_path, digits_dir, tiny_timm_dir):
    data = digits_subset(digits_dir, tmp_path / "data", 3, per_class=20)
    (data / "train" / "0" / "broken.png").write_bytes(b"not a png")
    output_dir = tmp_path / "out"
    config = data_config(tmp_path, data, tiny_timm_dir, output_dir, num_train_epochs=1)
    with pytest.raises(InputError, match="unreadable image.*--skip_corrupt_images true"):
        run_in_process(config)
    run_in_process(config, "--skip_corrupt_images", "true")
    assert results(output_dir)["test"]["num_samples"] == 15


def test_an_uncached_hub_model_offline_is_reported_before_the_data_is_read(tmp_path, digits_dir, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    data = digits_subset(digits_dir, tmp_path / "data", 3, per_class=8)
    (data / "train" / "0" / "broken.png").write_bytes(b"not a png")  # the data check would stop at this
    output_dir = tmp_path / "out"
    config = data_config(tmp_path, data, Path("google/vit-base-patch16-224-in21k"), output_dir)
    with pytest.raises(InputError, match="google/vit-base-patch16-224-in21k` is not a local directory and not in the"):
        run_in_process(config)
    assert not output_dir.exists()


def _imbalanced_digits(digits_dir: Path, root: Path) -> Path:
    """Digits 0-4, with digit 4 down to 6 training images (of ~145); validation and test whole."""
    for split in ("train", "validation", "test"):
        for digit in "01234":
            files = sorted((digits_dir / split / digit).glob("*.png"))
            target = root / split / digit
            target.mkdir(parents=True)
            for file in files[:6] if (split, digit) == ("train", "4") else files:
                shutil.copy(file, target / file.name)
    return root


@pytest.mark.parametrize("fix", [{"class_weight": "balanced"}, {"class_balanced_sampling": True}])
def test_a_rare_class_is_learnt_with_class_weights_or_balanced_sampling(tmp_path, digits_dir, tiny_timm_dir, fix):
    """Unweighted, the model learns to skip digit 4 (6 training images of ~145 per digit); weighing it up in the loss,
    or drawing it as often as the others, recalls most of it at little cost to the others."""
    import csv

    data = _imbalanced_digits(digits_dir, tmp_path / "imbalanced")
    recall = {}
    for name, overrides in (("plain", {}), ("fixed", fix)):
        output_dir = tmp_path / name
        run_in_process(data_config(tmp_path, data, tiny_timm_dir, output_dir, drop_rate=0.0, eval_strategy="no",
                                   save_strategy="no", **overrides))
        with open(output_dir / "test_per_class.csv", encoding="utf-8") as f:
            recall[name] = {row["class_name"]: float(row["recall"]) for row in csv.DictReader(f)}
    assert recall["plain"]["4"] < 0.3 and recall["fixed"]["4"] > 0.7, recall
    assert min(recall["fixed"][digit] for digit in "0123") > 0.85, recall


def test_balanced_sampling_resumes_to_the_same_bits(tmp_path, digits_dir, tiny_timm_dir):
    """The sampler draws from (seed, epoch): a run resumed from its first checkpoint ends where the unbroken run ends."""
    from .recipe_runs import same_weights

    data = _imbalanced_digits(digits_dir, tmp_path / "imbalanced")
    whole = tmp_path / "whole"
    config = data_config(tmp_path, data, tiny_timm_dir, whole, num_train_epochs=2, class_balanced_sampling=True)
    run_in_process(config)
    first = min(whole.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(whole / "args.yaml", resumed / "args.yaml")
    shutil.copytree(first, resumed / first.name)
    run_in_process(config, "--output_dir", str(resumed))
    assert same_weights(resumed / "model.safetensors", whole / "model.safetensors")
