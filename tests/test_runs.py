"""The run lifecycle's checks before any work (`runs.start`) and its output-dir decisions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from transformers import TrainingArguments

from hf_ft import runs
from hf_ft.args import ModelArguments, PeftArguments, ReportArguments
from hf_ft.checkpoints import CheckpointError
from hf_ft.errors import InputError
from hf_ft.runs import OutputDirError, check_trackers, check_training_values, check_writable, prepare_output_dir


def _args(tmp_path: Path, **overrides) -> TrainingArguments:
    return TrainingArguments(str(tmp_path / "out"), use_cpu=True, report_to="none", **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate must be > 0, got -1.0."),
        ({"per_device_train_batch_size": 0}, "--per_device_train_batch_size must be > 0, got 0."),
        ({"per_device_eval_batch_size": 0}, "--per_device_eval_batch_size must be > 0, got 0."),
        ({"gradient_accumulation_steps": 0}, "--gradient_accumulation_steps must be > 0, got 0."),
        ({"num_train_epochs": 0}, "--num_train_epochs must be > 0 (or set --max_steps), got 0."),
        ({"weight_decay": -0.1}, "--weight_decay must be >= 0, got -0.1."),
    ],
)
def test_bad_training_values_are_refused(tmp_path, overrides, message):
    with pytest.raises(InputError) as error:
        check_training_values(_args(tmp_path, **overrides))
    assert str(error.value) == message


def test_max_steps_without_epochs_is_fine(tmp_path):
    check_training_values(_args(tmp_path, num_train_epochs=0, max_steps=10))


def test_a_tracker_that_is_not_installed_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(runs, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(InputError) as error:
        check_trackers(["tensorboard"])
    assert str(error.value) == (
        'report_to: tensorboard is not installed. Run `pip install -e ".[tensorboard]"` (or `pip install tensorboard`), '
        "or drop tensorboard from --report_to."
    )
    with pytest.raises(InputError, match=r"Run `pip install wandb`, or drop wandb from --report_to\.$"):
        check_trackers(["wandb"])
    monkeypatch.setattr(runs, "get_available_reporting_integrations", lambda: ["tensorboard"])
    check_trackers(["tensorboard"])


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("keep me")
    with pytest.raises(OutputDirError, match=r"results.txt is a file: point it at a directory"):
        check_writable(str(file))
    with pytest.raises(OutputDirError, match=r"lies under .*results.txt, which is a file"):
        check_writable(str(file / "run"))
    assert file.read_text() == "keep me"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write into, even as root (chattr +i) where the file system allows it."""
    path = tmp_path / "locked"
    path.mkdir()
    path.chmod(0o555)
    immutable = False
    try:
        check_writable(str(path))
    except OutputDirError:
        pass
    else:  # root ignores permissions
        immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("cannot make a directory read-only for this user here")
    yield path
    if immutable:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o755)


def test_output_dir_that_cannot_be_written_is_refused(read_only_dir):
    with pytest.raises(OutputDirError, match=r"locked/run cannot be written \(.*locked: (Permission denied|Operation not permitted)\)"):
        check_writable(str(read_only_dir / "run"))
    assert list(read_only_dir.iterdir()) == []


def test_start_checks_before_touching_the_output_dir(tmp_path):
    args = _args(tmp_path, learning_rate=-1.0)
    with pytest.raises(InputError, match="learning_rate"):
        runs.start(args)
    assert not (tmp_path / "out").exists()


def _write_run(path: Path, run_args: dict, *files: str) -> None:
    runs.write_args(path, run_args)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("{}")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            (ModelArguments("m", trainable_blocks=2), PeftArguments(peft_method="lora")),
            "--peft_method lora trains only the adapter",
        ),
        ((ModelArguments("m"), PeftArguments(peft_method="lora", load_in_4bit=True)), "QLoRA needs a CUDA GPU"),
        ((ReportArguments(compare_with=["no/such/run"]), ), "compare_with"),
    ],
)
def test_start_checks_the_recipe_arguments_against_each_other_first(tmp_path, arguments, message, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(InputError, match=message):
        runs.start(_args(tmp_path), *arguments)
    assert not (tmp_path / "out").exists()


def test_an_attempt_that_saved_nothing_does_not_block_its_corrected_rerun(tmp_path):
    output_dir = tmp_path / "out"
    _write_run(output_dir, {"skip_corrupt_images": False})
    assert prepare_output_dir(str(output_dir), {"skip_corrupt_images": True}) == (None, False)


def test_another_run_with_checkpoints_is_refused(tmp_path):
    output_dir = tmp_path / "out"
    _write_run(output_dir, {"learning_rate": 0.1}, "checkpoint-5/model.safetensors")
    with pytest.raises(OutputDirError, match=r"holds another run \(learning_rate: 0.1 -> 0.2\)"):
        prepare_output_dir(str(output_dir), {"learning_rate": 0.2})


def test_a_finished_training_is_reloaded_not_retrained(tmp_path):
    output_dir = tmp_path / "out"
    _write_run(output_dir, {"learning_rate": 0.1}, "model.safetensors", "train_results.json", "checkpoint-5/x")
    assert prepare_output_dir(str(output_dir), {"learning_rate": 0.1, "push_to_hub": True}) == (None, True)


def test_an_explicit_incomplete_checkpoint_is_refused(tmp_path):
    output_dir = tmp_path / "out"
    _write_run(output_dir, {}, "checkpoint-5/model.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint-5 is not a complete checkpoint"):
        prepare_output_dir(str(output_dir), {}, resume_from_checkpoint=str(output_dir / "checkpoint-5"))


def test_args_yaml_is_written_whole(tmp_path):
    runs.write_args(tmp_path, {"b": 1, "a": [1, 2]})
    assert yaml.safe_load((tmp_path / "args.yaml").read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.yaml"]


def test_baseline_scores_are_reused_for_the_same_key_only(tmp_path):
    from hf_ft.runs import BASELINE_FILE, baseline_scores

    calls = []

    def score():
        calls.append(1)
        return {"metrics": {"test": {"loss": 1.5 + len(calls)}}}

    first = baseline_scores(tmp_path, {"data": "a"}, score, should_save=True)
    assert baseline_scores(tmp_path, {"data": "a"}, score, should_save=True) == first and len(calls) == 1
    other = baseline_scores(tmp_path, {"data": "b"}, score, should_save=False)  # another evaluation: scored again
    assert other != first and len(calls) == 2
    assert json.loads((tmp_path / BASELINE_FILE).read_text())["key"] == {"data": "a"}  # not overwritten


def test_an_earlier_run_whose_data_is_gone_stops_before_training_with_the_way_out(tmp_path):
    """Continuing an hf_ft run measures forgetting on its test split: data that moved is one line naming both fixes."""
    from hf_ft.tasks import text_classification

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "args.yaml").write_text(f"train_file: {tmp_path / 'moved' / 'train.csv'}\nseed: 3\n")
    (earlier / "test_predictions.jsonl").write_text("{}\n")
    model_args = ModelArguments(model_name_or_path=str(earlier))
    with pytest.raises(InputError, match=r"earlier is an hf_ft run, .*moved.*measure_forgetting: false"):
        text_classification.earlier_test(model_args, None, [], None, 16)
    assert ReportArguments().measure_forgetting
    (earlier / "test_predictions.jsonl").unlink()  # a run that scored no test split: nothing to measure on
    assert text_classification.earlier_test(model_args, None, [], None, 16) is None
