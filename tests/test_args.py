"""The YAML + command-line parser: types, overrides, strict keys, and every shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from hf_ft.args import ConfigError, ModelArguments, PeftArguments, ReportArguments, parse_args
from hf_ft.compress.args import CompressionArguments, DistillationArguments
from hf_ft.tasks.image_classification import ImageDataArguments
from hf_ft.vision.regularization import RegularizationArguments

from .conftest import REPO

IMAGE_ARGS = (ModelArguments, ImageDataArguments, PeftArguments, DistillationArguments, RegularizationArguments,
              ReportArguments, TrainingArguments)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_values_are_typed_and_cli_wins(tmp_path):
    config = write(
        tmp_path,
        "model_name_or_path: m\ntrain_dir: d\noutput_dir: o\nlearning_rate: 1e-4\nscale: [0.5, 1.0]\n"
        "trainable_blocks: 2\nuse_cpu: true\n",
    )
    model, data, *_, training = parse_args(IMAGE_ARGS, ["--config", config, "--learning_rate", "3e-4"])
    assert training.learning_rate == pytest.approx(3e-4)
    assert model.trainable_blocks == 2 and isinstance(model.trainable_blocks, int)
    assert data.scale == [0.5, 1.0]
    assert training.use_cpu is True

    *_, training = parse_args(IMAGE_ARGS, [f"--config={config}"])
    assert training.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; it must become a float


def test_unknown_key_suggests_the_closest_field(tmp_path):
    config = write(tmp_path, "model_name_or_path: m\ntrain_dir: d\nlearning_rte: 0.1\n")
    with pytest.raises(ConfigError, match=r"Unknown key `learning_rte`.*Did you mean `learning_rate`"):
        parse_args(IMAGE_ARGS, ["--config", config])


def test_removed_transformers4_key_is_refused(tmp_path):
    config = write(tmp_path, "model_name_or_path: m\ntrain_dir: d\nevaluation_strategy: epoch\n")
    with pytest.raises(ConfigError, match="eval_strategy"):
        parse_args(IMAGE_ARGS, ["--config", config])


def test_env_section_is_exported(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_FT_TEST_VAR", raising=False)
    config = write(tmp_path, "env:\n  HF_FT_TEST_VAR: 7\nmodel_name_or_path: m\ntrain_dir: d\noutput_dir: o\n")
    parse_args(IMAGE_ARGS, ["--config", config])
    import os

    assert os.environ["HF_FT_TEST_VAR"] == "7"


def test_missing_data_source_and_bad_values():
    with pytest.raises(ConfigError, match="No training data"):
        ImageDataArguments()
    with pytest.raises(ConfigError, match="only one data source"):
        ImageDataArguments(train_dir="a", dataset_name="b")
    with pytest.raises(ConfigError, match="drop_rate"):
        ModelArguments(model_name_or_path="m", drop_rate=1.5)
    with pytest.raises(ConfigError, match="Config file not found"):
        parse_args(IMAGE_ARGS, ["--config", "nope.yaml"])


@pytest.mark.parametrize("config", sorted((REPO / "recipes" / "configs" / "image_cls").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_image_configs_parse(config, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    model, data, *_, training = parse_args(IMAGE_ARGS, ["--config", str(config), "--bf16", "false"])
    assert model.model_name_or_path and training.output_dir
    assert isinstance(training.learning_rate, float)


@pytest.mark.parametrize("config", sorted((REPO / "recipes" / "configs" / "compress").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_compress_configs_parse(config, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    types = (ModelArguments, ImageDataArguments, CompressionArguments, DistillationArguments, TrainingArguments)
    model, _, compression, distillation, training = parse_args(types, ["--config", str(config), "--bf16", "false"])
    assert model.model_name_or_path and compression.student_model_name_or_path and training.output_dir
    assert compression.pruning_method == "structured" and distillation.distillation_temperature > 0


def test_compression_arguments_are_checked():
    with pytest.raises(ConfigError, match="pruning_method"):
        CompressionArguments(pruning_method="magnitude")
    with pytest.raises(ConfigError, match="onnx_quantization"):
        CompressionArguments(onnx_quantization=["fp16"])
    with pytest.raises(ConfigError, match="needs --export_onnx"):
        CompressionArguments(export_onnx=False)


def test_a_value_trainingarguments_refuses_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    """TrainingArguments checks combinations in __post_init__ with ValueErrors (bf16 on a CPU-only machine)."""
    from hf_ft.cli import run_recipe

    def main(*arguments):
        raise AssertionError("main must not run")

    argv = ["--model_name_or_path", "x", "--train_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
            "--bf16", "true", "--use_cpu", "false"]
    if torch.cuda.is_available():
        pytest.skip("bf16 is supported on this machine")
    monkeypatch.setattr("sys.argv", ["recipe.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        run_recipe(main, IMAGE_ARGS)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bf16" in err and err.count("\n") == 1 and "Traceback" not in err


def test_hub_strategy_defaults_to_the_one_hf_ft_follows():
    args = parse_args(IMAGE_ARGS, ["--model_name_or_path", "x", "--train_dir", "d", "--output_dir", "o"])
    assert args[-1].hub_strategy.value == "end"
