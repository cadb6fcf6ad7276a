"""The hyperparameter search's space, checks and Optuna wiring (the recipes' searches run in their recipe tests)."""

from __future__ import annotations

import json

import optuna
import pytest
from transformers import TrainingArguments

from hf_ft import search
from hf_ft.args import ConfigError, ModelArguments, PeftArguments, parse_args
from hf_ft.search import SearchArguments

SPACE = {
    "learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True},
    "per_device_train_batch_size": {"type": "categorical", "choices": [16, 32]},
    "lora_r": {"type": "int", "low": 4, "high": 32, "step": 4},
}


def training_args(tmp_path, **values) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **values)


def test_the_space_reads_from_yaml_or_json_on_the_command_line(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text(f"n_trials: 3\nsearch_space: {json.dumps(SPACE)}\n")
    (from_yaml,) = parse_args((SearchArguments,), ["--config", str(config)])
    (from_cli,) = parse_args((SearchArguments,), ["--n_trials", "3", "--search_space", json.dumps(SPACE)])
    assert from_yaml.search_space == from_cli.search_space == SPACE


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rate": {"type": "uniform", "low": 0, "high": 1}}, r"search_space.learning_rate must be .*type"),
        ({"learning_rate": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "`low` must be > 0"),
        ({"learning_rate": {"type": "float", "low": 1.0, "high": 0.1}}, "`low` <= `high`"),
        ({"warmup_steps": {"type": "int", "low": 0, "high": 10, "steps": 2}}, r"unknown keys \['steps'\]"),
        ({"optim": {"type": "categorical", "choices": []}}, "non-empty `choices`"),
        ({"optim": "adamw_torch"}, "search_space.optim must be a mapping"),
    ],
)
def test_a_bad_distribution_is_refused_when_parsed(space, message):
    with pytest.raises(ConfigError, match=message):
        SearchArguments(n_trials=2, search_space=space)


def test_trials_need_a_space_and_a_known_direction():
    with pytest.raises(ConfigError, match="needs a search_space"):
        SearchArguments(n_trials=2)
    with pytest.raises(ConfigError, match="maximize"):
        SearchArguments(n_trials=2, search_space=SPACE, search_direction="max")
    with pytest.raises(ConfigError, match="must be a mapping"):
        SearchArguments(n_trials=2, search_space="{learning_rate: 1}")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("output_dir", "is one for every trial"),
        ("seed", "is one for every trial"),
        ("model_name_or_path", "is one for every trial"),
        ("image_size", "is not a TrainingArguments, model or PEFT argument"),
    ],
)
def test_only_training_model_and_peft_arguments_are_searched(tmp_path, name, message):
    arguments = SearchArguments(n_trials=2, search_space={name: {"type": "categorical", "choices": [1, 2]}})
    with pytest.raises(ConfigError, match=f"search_space.{name} cannot be searched: it {message}"):
        search.check_search(arguments, training_args(tmp_path), ModelArguments(model_name_or_path="m"), PeftArguments())


def test_model_and_peft_keys_are_searchable_and_best_model_reloading_is_refused(tmp_path):
    arguments = SearchArguments(n_trials=2, search_space={**SPACE, "drop_path_rate": {"type": "float", "low": 0,
                                                                                       "high": 0.2}})
    model_side = (ModelArguments(model_name_or_path="m"), PeftArguments())
    search.check_search(arguments, training_args(tmp_path), *model_side)
    reloading = training_args(tmp_path, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    with pytest.raises(ConfigError, match="load_best_model_at_end"):
        search.check_search(arguments, reloading, *model_side)


def test_hp_space_returns_the_training_values_and_model_init_gets_the_rest():
    """The Trainer calls model_init before hp_space: both must see one value per name for a trial."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    everything = search.suggest(trial, SPACE)
    assert search.hp_space(SPACE)(trial) == {name: everything[name] for name in
                                             ("learning_rate", "per_device_train_batch_size")}
    assert search.suggest(trial, SPACE) == everything and everything["lora_r"] in range(4, 33, 4)
    peft_args = search._with_values(PeftArguments(), everything)
    assert peft_args.lora_r == everything["lora_r"]


@pytest.mark.parametrize(
    ("metric", "direction", "expected"),
    [(None, None, ("eval_accuracy", "maximize")), ("mse", None, ("eval_mse", "minimize")),
     ("eval_loss", None, ("eval_loss", "minimize")), ("loss", "maximize", ("eval_loss", "maximize"))],
)
def test_the_metric_and_its_direction(metric, direction, expected):
    arguments = SearchArguments(search_metric=metric, search_direction=direction)
    assert search.metric_and_direction(arguments, "accuracy") == expected


def test_an_unknown_metric_names_the_ones_there_are():
    objective = search._objective("eval_acc")
    with pytest.raises(ConfigError, match="search_metric acc is not a validation metric.*accuracy, loss"):
        objective({"eval_loss": 0.5, "eval_accuracy": 0.9, "epoch": 1.0})
