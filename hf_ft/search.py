"""Hyperparameter search: `Trainer.hyperparameter_search` with Optuna, the search space in the recipe's YAML.

    n_trials: 12
    search_space:
      learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      per_device_train_batch_size: {type: categorical, choices: [16, 32]}
      lora_r: {type: int, low: 4, high: 32, step: 4}
    search_metric: accuracy            # a validation metric; default: the task's headline one

Every trial loads its model afresh through the recipe's own loading (`model_init`), with the trial's values in
TrainingArguments and in the recipe's model and PEFT arguments, trains under the run's `--seed`, and is scored on the
validation split once its training is over. Optuna's TPE sampler is seeded (`--search_seed`, default `--seed`), and
no trial is pruned. The output dir gets:

- `optuna.db`: the study (SQLite); a rerun with the same arguments goes on with it, running only the missing trials;
- `trials.csv` and `search.md` (the trials, best first) with `search.png` (the score by trial, and by each value);
- `best.yaml`: the run's own settings with the best trial's values, `n_trials: 0` and `output_dir: <output_dir>/best`:
  `hf-ft train <recipe> --config <output_dir>/best.yaml` trains it, and its validation score is the trial's.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments, set_seed

from . import markdown as md
from .args import ConfigError
from .runs import Run, write_args

logger = logging.getLogger("hf_ft")

STUDY_FILE = "optuna.db"
STUDY_NAME = "hf_ft"
TRIALS_FILE = "trials.csv"
REPORT_FILE = "search.md"
PLOT_FILE = "search.png"
BEST_CONFIG_FILE = "best.yaml"

DISTRIBUTIONS = ("float", "int", "categorical")
# What says where a run comes from or goes, not how it trains, and the seed (trials differ in the searched values
# only): one value for every trial.
UNSEARCHABLE = frozenset(
    {"output_dir", "model_name_or_path", "model_revision", "cache_dir", "token", "trust_remote_code",
     "resume_from_checkpoint", "push_to_hub", "hub_model_id", "hub_token", "seed"}
)
# Metrics a search minimises unless told otherwise.
LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "perplexity")


@dataclass
class SearchArguments:
    """Hyperparameter search with Optuna (`Trainer.hyperparameter_search`)."""

    n_trials: int = field(
        default=0,
        metadata={
            "help": "Run a hyperparameter search of this many trials instead of one training, then write the best "
            "configuration to `output_dir/best.yaml` (runnable with --config). 0: no search."
        },
    )
    search_space: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "The space, a mapping of argument name to Optuna distribution: `{type: float, low: 1.0e-5, high: "
            "1.0e-3, log: true}`, `{type: int, low: 4, high: 32, step: 4}` or `{type: categorical, choices: [16, "
            "32]}`. Any TrainingArguments key, or a model or PEFT key (`drop_path_rate`, `trainable_blocks`, "
            "`lora_r`, ...). On the command line: the same mapping as JSON."
        },
    )
    search_metric: str | None = field(
        default=None,
        metadata={
            "help": "The validation metric a trial is scored by (`accuracy`, `f1`, `micro_f1`, `mse`, `loss`, ...). "
            "Unset: the task's headline metric."
        },
    )
    search_direction: str | None = field(
        default=None,
        metadata={"help": "`maximize` or `minimize` the metric. Unset: minimize losses and errors, maximize the rest."},
    )
    search_seed: int | None = field(
        default=None, metadata={"help": "The seed of Optuna's TPE sampler. Unset: --seed."}
    )

    def __post_init__(self):
        if self.n_trials < 0:
            raise ConfigError(f"--n_trials must be >= 0, got {self.n_trials}")
        if isinstance(self.search_space, str):
            try:
                self.search_space = json.loads(self.search_space)
            except json.JSONDecodeError as err:
                raise ConfigError(f"--search_space must be a mapping (JSON on the command line): {err}") from None
        if self.n_trials and not self.search_space:
            raise ConfigError("--n_trials needs a search_space: the arguments to search and their ranges.")
        self.search_space = {name: _as_numbers(spec) for name, spec in (self.search_space or {}).items()}
        for name, spec in self.search_space.items():
            _check_distribution(name, spec)
        if self.search_direction not in (None, "maximize", "minimize"):
            raise ConfigError(f"--search_direction must be `maximize` or `minimize`, got {self.search_direction!r}")


def _as_numbers(spec: Any) -> Any:
    """PyYAML reads `1e-5` (no dot) as a string: the bounds as numbers, as argparse makes `learning_rate: 1e-5`."""
    if not isinstance(spec, dict):
        return spec
    numbers = {}
    for key in ("low", "high", "step"):
        if isinstance(spec.get(key), str):
            try:
                numbers[key] = float(spec[key])
            except ValueError:
                pass
    return {**spec, **numbers}


def _check_distribution(name: str, spec: Any) -> None:
    where = f"search_space.{name}"
    if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
        raise ConfigError(f"{where} must be a mapping with `type: {' | '.join(DISTRIBUTIONS)}`, got {spec!r}")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise ConfigError(f"{where} (categorical) needs a non-empty `choices` list, got {spec!r}")
        unknown = set(spec) - {"type", "choices"}
    else:
        low, high = spec.get("low"), spec.get("high")
        numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (low, high))
        if not numbers or low > high:
            raise ConfigError(f"{where} ({spec['type']}) needs numbers `low` <= `high`, got {spec!r}")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where} has `log: true`, so `low` must be > 0, got {low}")
        unknown = set(spec) - {"type", "low", "high", "log", "step"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")


def check_search(search_args: SearchArguments, training_args: TrainingArguments, *model_side: Any) -> None:
    """Before any work: every searched key is a TrainingArguments field or a field of the `model_side` dataclasses
    (those `model_init` is given), and the trials can be scored on a validation split.

    Raises:
        ConfigError: naming the key and what can be searched, or the setting that makes the search impossible.
    """
    if not search_args.n_trials:
        return
    searchable = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    for arguments in model_side:
        searchable |= {f.name for f in dataclasses.fields(arguments)}
    for name in search_args.search_space:
        if name in UNSEARCHABLE or name not in searchable:
            if name in UNSEARCHABLE:
                why = "is one for every trial: where the run comes from or goes, or its seed"
            else:
                why = ("is not a TrainingArguments, model or PEFT argument (the data, its augmentation and the "
                       "Trainer's setup are built once for every trial)")
            raise ConfigError(f"search_space.{name} cannot be searched: it {why}.")
    if training_args.load_best_model_at_end:
        raise ConfigError(
            "--n_trials with --load_best_model_at_end: a trial is scored on its final weights, which best.yaml "
            "reproduces; drop load_best_model_at_end for the search."
        )


def model_init(
    trainer: Trainer,
    space: dict[str, dict[str, Any]],
    build: Callable[..., tuple[PreTrainedModel, list[TrainerCallback]]],
    model_side: tuple[Any, ...],
    callbacks: list[TrainerCallback],
) -> Callable[[Any], PreTrainedModel]:
    """`Trainer.model_init`: the model (and its callbacks, freezing say) of `build(*model_side)`, with the trial's
    values in those dataclasses (model, PEFT). The trial's callbacks replace the previous model's on `trainer`, at
    first `callbacks`, those of the recipe's own build.

    The Trainer calls this before it asks `hp_space` for the trial's values, so it suggests them itself (Optuna gives
    a trial the same value for the same name again). The recipe loads its model and then builds its Trainer, which
    seeds: a trial seeds again after its model is built, so its training draws what the rerun of best.yaml draws.
    """
    current = list(callbacks)

    def init(trial: Any = None) -> PreTrainedModel:
        params = suggest(trial, space) if trial is not None else {}
        model, trial_callbacks = build(*(_with_values(arguments, params) for arguments in model_side))
        for callback in current:
            trainer.remove_callback(callback)
        for callback in trial_callbacks:
            trainer.add_callback(callback)
        current[:] = trial_callbacks
        set_seed(trainer.args.seed)
        return model

    return init


def _with_values(arguments: Any, params: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(arguments)}
    return dataclasses.replace(arguments, **{name: value for name, value in params.items() if name in names})


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every key of `space` suggested on the Optuna trial."""
    values = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                             log=spec.get("log", False))
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"),
                                               log=spec.get("log", False))
    return values


def hp_space(space: dict[str, dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """`hyperparameter_search(hp_space=...)`: the trial's TrainingArguments values, for the Trainer to set."""
    training_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    return lambda trial: {name: value for name, value in suggest(trial, space).items() if name in training_fields}


def metric_and_direction(search_args: SearchArguments, default_metric: str) -> tuple[str, str]:
    """The `eval_` key a trial is scored by, and whether to maximize or minimize it."""
    metric = search_args.search_metric or default_metric
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    direction = search_args.search_direction or (
        "minimize" if any(word in key for word in LOWER_IS_BETTER) else "maximize")
    return key, direction


def run_search(
    trainer: Trainer,
    run: Run,
    search_args: SearchArguments,
    *,
    build: Callable[..., tuple[PreTrainedModel, list[TrainerCallback]]],
    model_side: tuple[Any, ...],
    callbacks: list[TrainerCallback],
    default_metric: str,
    run_args: dict[str, Any],
) -> dict[str, Any]:
    """Run the trials on `trainer`, each on a model and callbacks from `build(*model_side)` with the trial's values in
    those dataclasses (`callbacks`: those of the run's own build; see `model_init`), then write the trials' table,
    report and plot and `best.yaml` (the run's own settings, `Run.chosen`, with the best values) into
    `run.output_dir`. Returns the best trial: number, value, params.

    Raises:
        ConfigError: `search_metric` is not among the validation metrics.
    """
    import optuna

    if trainer.eval_dataset is None:
        raise ConfigError("--n_trials needs a validation split to score the trials; the data has none.")
    key, direction = metric_and_direction(search_args, default_metric)
    if search_args.search_metric:  # one validation pass now, rather than a failed search after its first trial
        _objective(key)(trainer.evaluate())
    seed = trainer.args.seed if search_args.search_seed is None else search_args.search_seed
    output_dir = run.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    if trainer.args.should_save:
        write_args(output_dir, run_args)
    storage = f"sqlite:///{(output_dir / STUDY_FILE).resolve()}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction=direction, load_if_exists=True)
    done = sum(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials)
    remaining = max(0, search_args.n_trials - done)
    logger.info("Hyperparameter search: %d trials (%d done), %s %s on validation; training seed %d, sampler seed %d",
                search_args.n_trials, done, direction, key, trainer.args.seed, seed)

    trainer.args.save_strategy = "no"  # a trial's model is not kept: best.yaml retrains the best one
    trainer.model_init = model_init(trainer, search_args.search_space, build, model_side, callbacks)
    trainer.add_callback(_ScoreFinalWeights(trainer))
    if remaining:
        trainer.hyperparameter_search(
            hp_space=hp_space(search_args.search_space),
            compute_objective=_objective(key),
            n_trials=remaining,
            direction=direction,
            backend="optuna",
            study_name=STUDY_NAME,
            storage=storage,
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.NopPruner(),
        )
    if not trainer.args.should_save:
        return {}
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    trials = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    best_config = write_best_config(output_dir, run.chosen, best.params, search_args)
    write_trials(output_dir, trials, key, direction, seeds=(trainer.args.seed, seed), best_config=best_config)
    logger.info("Best trial %d: %s %.6g with %s; retrain it with --config %s", best.number, key, best.value,
                best.params, best_config)
    return {"number": best.number, "value": best.value, "params": best.params}


class _ScoreFinalWeights(TrainerCallback):
    """Scores a trial on its final weights (after an EMA swap, say), as best.yaml's rerun reports them: the Trainer
    would keep the last in-training evaluation's score, and evaluates after training only when there was none."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer.objective = None


def _objective(key: str) -> Callable[[dict[str, float]], float]:
    def objective(metrics: dict[str, float]) -> float:
        if key not in metrics:
            known = sorted(name for name in metrics if name.startswith("eval_") and isinstance(metrics[name], float))
            raise ConfigError(f"--search_metric {key.removeprefix('eval_')} is not a validation metric of this run; "
                              f"it has {', '.join(name.removeprefix('eval_') for name in known)}.")
        return metrics[key]

    return objective


def write_best_config(output_dir: Path, chosen: dict[str, Any], params: dict[str, Any],
                      search_args: SearchArguments) -> Path:
    """best.yaml: the run's settings with the best values, no search, and its own output dir."""
    search_keys = {f.name for f in dataclasses.fields(SearchArguments)}
    config = {name: value for name, value in chosen.items() if name not in search_keys}
    config.update(params)
    config["output_dir"] = str(output_dir / "best")
    path = output_dir / BEST_CONFIG_FILE
    header = (f"# The best of {search_args.n_trials} trials of the search in {output_dir}: its values over the run's "
              "settings.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_trials(output_dir: Path, trials: list, key: str, direction: str, *, seeds: tuple[int, int],
                 best_config: Path) -> None:
    """trials.csv, search.md and search.png: every completed trial, best first."""
    names = sorted({name for trial in trials for name in trial.params})
    ranked = sorted(trials, key=lambda trial: trial.value, reverse=direction == "maximize")
    metric = key.removeprefix("eval_")
    with open(output_dir / TRIALS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", *names, metric, "seconds"])
        for trial in ranked:
            writer.writerow([trial.number, *(trial.params.get(name) for name in names), trial.value,
                             f"{trial.duration.total_seconds():.1f}"])
    _plot(output_dir / PLOT_FILE, trials, names, metric, direction)
    rows = [[str(trial.number), *(md.cell(_shown(trial.params.get(name))) for name in names), f"{trial.value:.4f}",
             f"{trial.duration.total_seconds():.0f}"] for trial in ranked]
    text = (
        f"# Hyperparameter search: {md.cell(output_dir.name)}\n\n"
        f"**Best: trial {ranked[0].number}, validation {metric} {ranked[0].value:.4f}** ({direction}d over "
        f"{len(trials)} trials). Retrain it: `--config {best_config}`.\n\n"
        f"Every trial trains from the checkpoint under seed {seeds[0]} and is scored on the validation split after "
        f"training; Optuna's TPE sampler has seed {seeds[1]}, and no trial is pruned. A score over few validation "
        "examples is noisy: compare close trials on the test set (retrain each) before trusting their order.\n\n"
        + md.table(["trial", *names, metric, "seconds"], rows)
        + f"\n\n![Trials]({PLOT_FILE})\n"
    )
    (output_dir / REPORT_FILE).write_text(text, encoding="utf-8")


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot(path: Path, trials: list, names: list[str], metric: str, direction: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = [trial.number for trial in trials]
    values = [trial.value for trial in trials]
    best_so_far = list(itertools.accumulate(values, max if direction == "maximize" else min))
    columns = 1 + len(names)
    figure, axes = plt.subplots(1, columns, figsize=(4 * columns, 3.2), squeeze=False)
    history = axes[0][0]
    history.plot(numbers, values, "o", label="trial")
    history.step(numbers, best_so_far, where="post", label="best so far")
    history.set(xlabel="trial", ylabel=f"validation {metric}", title="Search history")
    history.legend()
    for ax, name in zip(axes[0][1:], names):
        shown = [(trial.params[name], trial.value) for trial in trials if name in trial.params]
        xs = [x for x, _ in shown]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.plot(xs, [y for _, y in shown], "o")
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.plot([labels.index(str(x)) for x in xs], [y for _, y in shown], "o")
            ax.set_xticks(range(len(labels)), labels)
        ax.set(xlabel=name, title=f"{metric} by {name}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

