"""The image recipe end to end, run the way users run it: `accelerate launch recipes/image_cls.py --config ...`.

Tiny checkpoints (built in fixtures) on sklearn's real digits, on CPU, a few seconds of training each.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml

from . import recipe_runs
from .conftest import REPO
from .recipe_runs import TWO_PROCESS_CONFIG, offline_env, results, same_weights

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "image_cls.py"
launch = partial(recipe_runs.launch, RECIPE)
run_in_process = partial(recipe_runs.run_in_process, RECIPE)
kill_after = partial(recipe_runs.kill_after, RECIPE)
def recipe_config(tmp_path: Path, digits_dir: Path, checkpoint: Path, output_dir: Path, **overrides) -> Path:
    # dropout draws from the training process's random generator, so a resume that shifted it would show
    overrides = {"drop_rate": 0.1, **overrides}
    return write_config(tmp_path, digits_dir, output_dir, model_name_or_path=str(checkpoint), **overrides)


def write_config(tmp_path: Path, digits_dir: Path, output_dir: Path, **overrides) -> Path:
    """A quick CPU run's config on the digits (any recipe): data, augmentation and training keys + overrides."""
    config = {
        "train_dir": str(digits_dir / "train"),
        "validation_dir": str(digits_dir / "validation"),
        "test_dir": str(digits_dir / "test"),
        "image_size": 32,
        "scale": [0.7, 1.0],
        "hflip": 0.0,
        "color_jitter": None,
        "max_train_samples": 600,
        "output_dir": str(output_dir),
        "num_train_epochs": 3,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128,
        "learning_rate": 3.0e-3,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_steps": 5,
        "seed": 7,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
    }
    config.update(overrides)
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory, digits_dir, tiny_timm_dir):
    """One complete timm-based run through `accelerate launch`, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("timm_run")
    output_dir = tmp / "out"
    launch(recipe_config(tmp, digits_dir, tiny_timm_dir, output_dir))
    return output_dir


def test_timm_run_learns_and_beats_the_baseline(timm_run):
    test = results(timm_run)["test"]
    assert test["accuracy"] > 0.5
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.3
    history = json.loads((timm_run / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < losses[0]


def test_same_seed_gives_same_metrics_with_a_linear_probe_baseline_paired_with_the_run(tmp_path, digits_dir,
                                                                                      tiny_timm_dir, timm_run):
    """The same config and seed again, with `linear_probe_baseline`: a logistic regression on the frozen model's
    pooled features (the head's input), scored by the same report code on the same test images. The fine-tuned run
    is bit for bit the one without: the probe draws nothing from the training's random state."""
    output_dir = tmp_path / "probed"
    launch(recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, linear_probe_baseline=True))
    assert results(output_dir) == results(timm_run)
    probe, tuned = results(output_dir / "linear_probe")["test"], results(output_dir)["test"]
    assert probe["num_samples"] == tuned["num_samples"] and probe["accuracy"] > probe["majority_baseline_accuracy"] + 0.2
    section = (output_dir / "report.md").read_text().split("## What fine-tuning added: a linear probe baseline")[1]
    difference = 100 * (tuned["accuracy"] - probe["accuracy"])
    assert (f"| Accuracy | {100 * probe['accuracy']:.2f}% | {100 * tuned['accuracy']:.2f}% | {difference:+.2f} pp |"
            in section)
    assert "on 600 training feature vectors of size" in section
    assert (output_dir / "linear_probe" / "test_confusion_matrix.png").is_file()


def test_timm_run_writes_the_full_report(timm_run):
    for name in ("report.md", "README.md", "args.yaml", "validation_per_class.csv", "test_per_class.csv",
                 "test_confusion_matrix.png", "training_curves.png", "model.safetensors", "config.json"):
        assert (timm_run / name).is_file(), name
    assert f"Test accuracy {results(timm_run)['test']['accuracy']:.2%}" in (timm_run / "report.md").read_text()


def test_timm_output_loads_with_pipeline_and_timm_and_reproduces_the_report(timm_run, digits_dir):
    """The report's test accuracy is what `pipeline()` gives on the test images: same preprocessing, same model."""
    import timm
    import torch
    from PIL import Image
    from transformers import pipeline

    classifier = pipeline("image-classification", model=str(timm_run), device="cpu")
    files = sorted((digits_dir / "test").glob("*/*.png"))
    images = [Image.open(f).convert("RGB") for f in files]
    predictions = classifier(images, top_k=1, batch_size=64)
    accuracy = np.mean([p[0]["label"] == f.parent.name for p, f in zip(predictions, files)])
    assert accuracy == pytest.approx(results(timm_run)["test"]["accuracy"], abs=1e-9)

    timm_model = timm.create_model("local-dir:" + str(timm_run), pretrained=True).eval()
    config = timm.data.resolve_model_data_config(timm_model)
    assert config["input_size"] == (3, 32, 32)
    transform = timm.data.create_transform(**config)
    batch = torch.stack([transform(image) for image in images[:16]])
    with torch.no_grad():
        timm_logits = timm_model(batch)
        hf_logits = classifier.model(pixel_values=batch).logits
    torch.testing.assert_close(timm_logits, hf_logits)


def test_predict_scores_a_labelled_folder_as_the_report_did_and_an_unlabelled_csv(timm_run, digits_dir, tmp_path):
    """`hf-ft predict` on the test folder gives the report's test metrics (same preprocessing, same metrics code);
    on a CSV of relative paths and no labels, the same classes for the same files, in the CSV's order."""
    test = results(timm_run)["test"]
    labelled = recipe_runs.predict(timm_run, digits_dir / "test", tmp_path / "test.jsonl", top_k=3)
    assert {key: labelled.metrics[key] for key in ("accuracy", "f1", "top5_accuracy")} == pytest.approx(
        {key: test[key] for key in ("accuracy", "f1", "top5_accuracy")}, abs=1e-9)
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert len(rows) == test["num_samples"] == labelled.metrics["num_samples"]
    assert all(len(row["top_k_labels"]) == 3 and row["top_k_labels"][0] == row["label"] for row in rows)
    assert all(Path(row["input"]).parent.name == row["reference"] for row in rows)
    assert json.loads((tmp_path / "test_metrics.json").read_text()) == labelled.metrics

    by_file = {Path(row["input"]).resolve(): row["label"] for row in rows}
    files = sorted(by_file, reverse=True)[:40]
    listing = tmp_path / "photos" / "list.csv"
    listing.parent.mkdir()
    listing.write_text("file\n" + "".join(f"{os.path.relpath(f, listing.parent)}\n" for f in files))
    unlabelled = recipe_runs.predict(timm_run, listing, tmp_path / "photos.csv")
    assert unlabelled.metrics is None and not (tmp_path / "photos_metrics.json").exists()
    with open(tmp_path / "photos.csv") as f:
        written = list(csv.DictReader(f))
    assert [row["label"] for row in written] == [by_file[file] for file in files]
    assert "reference" not in written[0] and len(written[0]["top_k_labels"].split("|")) == 5


def test_model_card_carries_the_results(timm_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(timm_run / "README.md")
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert values[("test", "accuracy")] == pytest.approx(results(timm_run)["test"]["accuracy"])


def test_cached_images_train_to_the_same_metrics(tmp_path, digits_dir, tiny_timm_dir, timm_run):
    """Digits are within the cache's size bound, so the cached pixels are the decoded ones: the same run."""
    output_dir = tmp_path / "cached"
    launch(recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, cache_images=True))
    assert results(output_dir) == results(timm_run)


def test_killed_run_resumes_to_the_same_metrics(tmp_path, digits_dir, tiny_timm_dir, timm_run):
    """kill -9 after the first checkpoint; the same command again resumes and ends where an unbroken run ends."""
    output_dir = tmp_path / "out"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir)
    kill_after(config, output_dir / "checkpoint-19")  # 600 / 32 = 19 steps an epoch

    result = launch(config)
    assert "Resuming the run" in result.stdout
    assert results(output_dir) == results(timm_run)
    assert same_weights(output_dir / "model.safetensors", timm_run / "model.safetensors")


def test_killed_vit_resumes_every_weight_past_an_incomplete_checkpoint(tmp_path, digits_dir, tiny_vit_dir):
    """transformers saves ViT checkpoints under legacy key names that its own resume does not map (every encoder
    weight silently restarted from the base); and a kill while a checkpoint is written leaves one without
    trainer_state.json. The rerun skips it, keeps it, resumes from the one before, and ends in the same bits."""
    unbroken = tmp_path / "unbroken"
    launch(recipe_config(tmp_path, digits_dir, tiny_vit_dir, unbroken))
    output_dir = tmp_path / "killed"
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir)
    kill_after(config, output_dir / "checkpoint-19")
    incomplete = output_dir / "checkpoint-38"
    if incomplete.is_dir():  # the kill came later: cut this one short instead
        (incomplete / "trainer_state.json").unlink(missing_ok=True)
    else:  # what a kill while writing it leaves: weights, no trainer state
        incomplete.mkdir()
        shutil.copy(output_dir / "checkpoint-19" / "model.safetensors", incomplete / "model.safetensors")

    result = launch(config)
    assert f"Skipping {incomplete}: it is incomplete" in result.stdout
    assert f"Resuming the run in {output_dir} from {output_dir / 'checkpoint-19'}" in result.stdout
    assert results(output_dir) == results(unbroken)
    assert same_weights(output_dir / "model.safetensors", unbroken / "model.safetensors")


def test_another_runs_output_dir_is_refused(tmp_path, digits_dir, tiny_timm_dir, timm_run):
    before = {p: p.stat().st_mtime for p in timm_run.rglob("*")}
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, timm_run, learning_rate=1.0e-2)
    result = launch(config, check=False)
    assert result.returncode != 0
    assert "error: output_dir" in result.stderr and "holds another run (learning_rate: 0.003 -> 0.01)" in result.stderr
    assert "hf_ft/runs.py" not in result.stderr  # one clear line, not a stack trace into our code
    assert {p: p.stat().st_mtime for p in timm_run.rglob("*")} == before

    stranger = tmp_path / "not_ours"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    result = launch(recipe_config(tmp_path, digits_dir, tiny_timm_dir, stranger), check=False)
    assert result.returncode != 0 and "holds no args.yaml from an hf_ft run" in result.stderr
    assert sorted(p.name for p in stranger.iterdir()) == ["notes.txt"]


def test_vit_with_python_and_freezing(tmp_path, digits_dir, tiny_vit_dir):
    """The transformers path, run with plain `python`, with the head warmed up before the backbone trains."""
    output_dir = tmp_path / "vit"
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir, freeze_backbone_epochs=1,
                           drop_rate=0.1, label_smoothing_factor=0.1, learning_rate=1.0e-3, max_train_samples=None)
    result = subprocess.run([sys.executable, str(RECIPE), "--config", str(config)], capture_output=True, text=True,
                            cwd=REPO, env=offline_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert model.config.id2label[0] == "0" and model.config.hidden_dropout_prob == 0.1
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"]
    # a transformers model's image processor (not timm's transforms) feeds hf-ft predict as it fed the report
    predicted = recipe_runs.predict(output_dir, digits_dir / "test", tmp_path / "vit.jsonl").metrics
    assert predicted["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)


def test_vit_with_mixup_cutmix_ema_and_layer_decay(tmp_path, digits_dir, tiny_vit_dir):
    """timm's regularization switches together on a transformers model: the run still learns, the saved model is the
    EMA (the last checkpoint's average, not its raw weights), and mixed targets leave the model single-label."""
    output_dir = tmp_path / "regularized"
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir, mixup_alpha=0.8, cutmix_alpha=1.0,
                           model_ema=True, model_ema_decay=0.9, layer_decay=0.75, learning_rate=2.0e-3,
                           per_device_train_batch_size=25)  # odd: each batch's last image stays unmixed
    run_in_process(config)
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    saved = AutoModelForImageClassification.from_pretrained(output_dir)
    average = load_file(last / "model_ema.safetensors")  # the in-memory names (save_pretrained writes the legacy ones)
    assert all(torch.equal(value, average[name]) for name, value in saved.state_dict().items())
    assert not same_weights(output_dir / "model.safetensors", last / "model.safetensors")
    assert saved.config.problem_type in (None, "single_label_classification")
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"]
    recorded = yaml.safe_load((output_dir / "args.yaml").read_text())
    assert (recorded["mixup_alpha"], recorded["model_ema"], recorded["layer_decay"]) == (0.8, True, 0.75)


def test_two_trial_search_writes_a_best_config_that_reruns_to_its_score(tmp_path, digits_dir, tiny_vit_dir):
    """Optuna trials through the recipe's own model loading: a model argument (drop_rate) and a TrainingArguments one
    searched; best.yaml, run as a config, trains to the best trial's validation score exactly."""
    output_dir = tmp_path / "search"
    space = {"learning_rate": {"type": "float", "low": 3.0e-3, "high": 2.0e-2, "log": True},
             "drop_rate": {"type": "categorical", "choices": [0.0, 0.3]}}
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir, max_train_samples=400,
                           n_trials=2, search_space=space)
    best = run_in_process(config)
    trials = recipe_runs.check_search_reruns(RECIPE, output_dir, best, "accuracy")
    assert len(trials) == 2 and float(trials[1]["accuracy"]) <= best["value"]
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "model.safetensors").exists()
    assert yaml.safe_load((output_dir / "best.yaml").read_text())["max_train_samples"] == 400

    # a rerun of the search goes on with the study: nothing retrains for trials already done
    assert run_in_process(config, "--n_trials", "2") == best


def test_continuing_on_new_classes_keeps_the_old_ones_and_measures_forgetting(tmp_path, digits_dir, tiny_vit_dir):
    """A run on digits 0-4, continued on all ten: the old classes keep their ids (and head rows), and the report
    scores the new model on the first run's test split, paired with that run's own scores."""
    first_digits = tmp_path / "digits_0_4"
    for split in ("train", "validation", "test"):
        for digit in "01234":
            shutil.copytree(digits_dir / split / digit, first_digits / split / digit)
    first = tmp_path / "first"
    run_in_process(recipe_config(tmp_path, first_digits, tiny_vit_dir, first, max_train_samples=300))
    second = tmp_path / "second"
    run_in_process(recipe_config(tmp_path, digits_dir, first, second, num_train_epochs=2))

    config = json.loads((second / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(10)] == list("0123456789")
    before, after = results(first)["test"], results(second / "forgetting")["test"]
    assert after["num_samples"] == before["num_samples"] == sum(1 for _ in (first_digits / "test").glob("*/*.png"))
    # the forgetting score is this model's on the first run's test images, as predict scores them
    predicted = recipe_runs.predict(second, first_digits / "test", tmp_path / "old.jsonl").metrics
    assert predicted["accuracy"] == pytest.approx(after["accuracy"], abs=1e-9)
    section = (second / "report.md").read_text().split("## Forgetting: the earlier run's test set")[1]
    assert f"| Accuracy | {100 * before['accuracy']:.2f}% | {100 * after['accuracy']:.2f}% |" in section
    assert "## Paired with" in (second / "forgetting" / "report.md").read_text()


def test_two_real_cpu_processes_through_the_hf_ft_command(tmp_path, digits_dir, tiny_timm_dir):
    """`--cpu --num_processes 2` silently runs one process; multi_cpu.yaml must really run two. Launched as
    `accelerate launch -m hf_ft train image_cls`, the installed command's way (the same recipe file)."""
    output_dir = tmp_path / "ddp"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, num_train_epochs=1)
    result = recipe_runs.launch(("-m", "hf_ft", "train", "image_cls"), config, accelerate_config=TWO_PROCESS_CONFIG)
    assert "Effective global batch size: 64 (2 processes)" in result.stdout
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == int(np.ceil(600 / 64))  # each process saw half of every batch of 64
    assert results(output_dir)["test"]["num_samples"] == 359


def test_push_to_hub_uploads_the_finished_run(tmp_path, digits_dir, tiny_timm_dir, fake_hub):
    events = fake_hub
    output_dir = tmp_path / "digits-resnet"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, num_train_epochs=1, max_train_samples=64)
    run_in_process(config, "--push_to_hub", "true")
    assert events[0] == "whoami" and events[1] == ("create_repo", "alice/digits-resnet")
    _, repo_id, files = events[2]
    assert {"model.safetensors", "config.json", "README.md", "report.md", "eval_results.json"} <= set(files)
    recorded = yaml.safe_load((output_dir / "args.yaml").read_text())
    assert recorded["push_to_hub"] is True and recorded["hub_model_id"] == "alice/digits-resnet"


def test_push_to_hub_offline_fails_before_any_work(tmp_path, digits_dir, tiny_timm_dir, monkeypatch):
    from hf_ft.hub import HubPushError

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    output_dir = tmp_path / "never"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir)
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE=1"):
        run_in_process(config, "--push_to_hub", "true")
    assert not output_dir.exists()


def test_tensorboard_logging(tmp_path, digits_dir, tiny_timm_dir):
    output_dir = tmp_path / "tb"
    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, output_dir, num_train_epochs=1, max_train_samples=64,
                           report_to="tensorboard")
    run_in_process(config)
    events = list(output_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert "eval/accuracy" in accumulator.Tags()["scalars"]


def lora_config(tmp_path: Path, digits_dir: Path, checkpoint: Path, output_dir: Path) -> Path:
    return recipe_config(tmp_path, digits_dir, checkpoint, output_dir, peft_method="lora", lora_r=4,
                         merge_adapter=True, learning_rate=1.0e-2, image_size=24)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, digits_dir, tiny_timm_dir):
    tmp = tmp_path_factory.mktemp("lora_run")
    output_dir = tmp / "lora"
    launch(lora_config(tmp, digits_dir, tiny_timm_dir, output_dir))
    return output_dir


def test_lora_run_saves_adapter_and_merged_model(lora_run, digits_dir):
    """LoRA through `accelerate launch`: a small adapter folder, and a merged model whose pipeline() accuracy
    is the report's; the adapter reloaded onto a fresh base gives the merged model's logits."""
    import torch
    from PIL import Image
    from transformers import pipeline

    from hf_ft.peft import load_adapter_model

    output_dir = lora_run
    assert (output_dir / "adapter_model.safetensors").is_file() and not (output_dir / "model.safetensors").exists()
    assert "Adapter | lora," in (output_dir / "report.md").read_text()
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.2

    classifier = pipeline("image-classification", model=str(output_dir / "merged"), device="cpu")
    files = sorted((digits_dir / "test").glob("*/*.png"))
    images = [Image.open(f).convert("RGB") for f in files]
    predictions = classifier(images, top_k=1, batch_size=64)
    accuracy = np.mean([p[0]["label"] == f.parent.name for p, f in zip(predictions, files)])
    assert accuracy == pytest.approx(test["accuracy"], abs=1e-9)

    # hf-ft predict on the adapter-only folder: base + adapter, at the 24 px it was trained at
    predicted = recipe_runs.predict(output_dir, digits_dir / "test", output_dir.parent / "adapter.jsonl")
    assert predicted.metrics["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)

    adapter_model = load_adapter_model(None, output_dir).eval()  # labels from the config saved beside it
    batch = torch.stack([classifier.image_processor.val_transforms(image) for image in images[:8]])
    with torch.no_grad():
        torch.testing.assert_close(adapter_model(pixel_values=batch).logits, classifier.model(pixel_values=batch).logits,
                                   atol=1e-4, rtol=1e-4)


def test_adapter_folder_reloads_on_its_own_from_another_directory(lora_run, tiny_timm_dir, tmp_path, monkeypatch):
    """adapter_config.json names the base by an absolute path, and the folder carries the labels and the
    resolution it was trained at (24 px; the base checkpoint, saved for 5 classes, says 32)."""
    from peft import PeftConfig
    from transformers import AutoImageProcessor

    from hf_ft.peft import load_adapter_model

    assert PeftConfig.from_pretrained(str(lora_run)).base_model_name_or_path == str(tiny_timm_dir.resolve())
    monkeypatch.chdir(tmp_path)
    model = load_adapter_model(None, lora_run)
    assert model.config.id2label == {i: str(i) for i in range(10)}
    processor = AutoImageProcessor.from_pretrained(lora_run)
    assert processor.data_config["input_size"] == (3, 24, 24)


def test_killed_lora_run_resumes_to_the_same_adapter(tmp_path, digits_dir, tiny_timm_dir, lora_run):
    output_dir = tmp_path / "lora"
    config = lora_config(tmp_path, digits_dir, tiny_timm_dir, output_dir)
    kill_after(config, output_dir / "checkpoint-19")
    assert "Resuming the run" in launch(config).stdout
    assert results(output_dir) == results(lora_run)
    assert same_weights(output_dir / "adapter_model.safetensors", lora_run / "adapter_model.safetensors")


def test_peft_with_freezing_is_refused(tmp_path, digits_dir, tiny_timm_dir):
    from hf_ft.args import ConfigError

    config = recipe_config(tmp_path, digits_dir, tiny_timm_dir, tmp_path / "x", peft_method="lora", trainable_blocks=1)
    with pytest.raises(ConfigError, match="drop\n?.*--trainable_blocks"):
        run_in_process(config)


def test_distillation_from_a_finetuned_teacher_under_ddp(tmp_path, digits_dir, tiny_vit_dir, timm_run):
    """A ViT student learns from the timm run's model (another architecture and normalisation) and the labels,
    in two DDP processes (each holds the teacher on its own device)."""
    output_dir = tmp_path / "distilled"
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir, teacher_model_name_or_path=str(timm_run),
                           distillation_alpha=0.5, distillation_temperature=2.0, max_train_samples=None,
                           per_device_train_batch_size=16, num_train_epochs=6)  # a ViT from scratch learns slowly
    result = launch(config, accelerate_config=TWO_PROCESS_CONFIG)
    assert "(2 processes)" in result.stdout
    test = results(output_dir)["test"]
    assert test["accuracy"] > test["majority_baseline_accuracy"] + 0.2
    assert f"| Distilled from | `{timm_run}` |" in (output_dir / "report.md").read_text()


def test_teacher_with_other_labels_is_refused_before_training(tmp_path, digits_dir, tiny_vit_dir, tiny_timm_dir):
    output_dir = tmp_path / "refused"
    config = recipe_config(tmp_path, digits_dir, tiny_vit_dir, output_dir, teacher_model_name_or_path=str(tiny_timm_dir))
    result = launch(config, check=False)
    assert result.returncode != 0
    assert "error: Teacher" in result.stderr and "fine-tuned on other labels" in result.stderr
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "model.safetensors").exists()
