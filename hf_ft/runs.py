"""A run's lifecycle around `Trainer.train`, the same for every task: the checks before any work, the output dir, a
training that is never done twice, and the end of the run.

    run = runs.start(training_args, *arguments)         # logging, checks, push target, output dir, seed
    ...                                                 # data, model, trainer
    train_metrics = runs.train(trainer, run, run_args)  # trains, resumes, or reloads a finished training
    results = runs.finish(trainer, run, ...)            # predicts the eval splits; report, card, merged model, push

`output_dir` is one run's: empty or new starts fresh; the same arguments again resume from the last complete
checkpoint, or, when training already finished, reload the trained model so that a report, card or push that failed
is redone without training again; other arguments are refused, unless the earlier attempt saved nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

import datasets
import numpy as np
import transformers
import yaml
from transformers import Trainer, TrainerState, TrainingArguments, set_seed
from transformers.integrations.integration_utils import get_available_reporting_integrations

from . import hub, peft, report, speed
from .args import (
    ARGS_FILE,
    ModelArguments,
    PeftArguments,
    ReportArguments,
    check_peft_and_freezing,
    non_default,
    to_plain_dict,
)
from .bootstrap import BootstrapSettings
from .checkpoints import TRAINER_STATE_FILE, CheckpointError, is_complete_checkpoint, last_complete_checkpoint
from .errors import InputError

if TYPE_CHECKING:
    from .probe import LinearProbe

logger = logging.getLogger("hf_ft")

# Written by `train` after the model and trainer state: its presence means the training finished and was saved.
TRAIN_RESULTS_FILE = "train_results.json"
# The starting model's scores, taken before training (`baseline_scores`), kept so a resumed run need not redo them.
BASELINE_FILE = "base_model_results.json"
# What an attempt leaves once it has trained something worth keeping.
_TRAINED_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", TRAIN_RESULTS_FILE)
# Arguments that do not change what a run computes: a rerun that differs only in these is the same run.
_NOT_RESULT_AFFECTING = {
    "output_dir",
    "resume_from_checkpoint",
    "push_to_hub",
    "hub_model_id",
    "hub_strategy",
    "hub_private_repo",
    "hub_always_push",
    "hub_revision",
    "report_to",
    "run_name",
    "compare_with",
    "bootstrap_resamples",
    "confidence_level",
    "measure_forgetting",
    "logging_steps",
    "disable_tqdm",
    # speed only (hf_ft.speed); their defaults follow the machine, so a resume elsewhere must not be refused
    "use_cpu",
    "dataloader_num_workers",
    "dataloader_persistent_workers",
    "dataloader_pin_memory",
    "dataloader_prefetch_factor",
    "bf16",
    "tf32",
    "torch_compile",
    "torch_compile_backend",
    "torch_compile_mode",
    "gradient_checkpointing",  # SFT's default follows the machine too; it trades memory for time, not results
    "activation_checkpointing",
}
# How to install the trackers that do not install as `pip install <report_to name>`.
_TRACKER_INSTALLS = {
    "tensorboard": '`pip install -e ".[tensorboard]"` (or `pip install tensorboard`)',
    "azure_ml": "`pip install azureml-core`",
}


class Prediction(NamedTuple):
    """A split's model outputs (the logits, or the first of the outputs when the model returns several), its labels,
    and the Trainer's metrics of the split (`eval_loss` for validation, `<split>_loss` for the others, ...)."""

    predictions: np.ndarray
    label_ids: np.ndarray
    metrics: dict[str, float] = {}


class OutputDirError(InputError):
    """`output_dir` holds something this run must not overwrite, or cannot be written."""


@dataclass
class Run:
    """What `start` decided about this run's output dir and push."""

    output_dir: Path
    resume_from: str | None  # the checkpoint training resumes from, if any
    trained: bool  # training finished in an earlier attempt: reload its model instead of training again
    repo_id: str | None  # the Hub repo pushed to at the end (checked), or None
    chosen: dict[str, Any] = field(default_factory=dict)  # the settings that differ from the parser's defaults


# Where a continued run's scores on the earlier run's test set go (`EarlierTest`), and the split's metric prefix.
FORGETTING_DIR = "forgetting"
LINEAR_PROBE_DIR = "linear_probe"


@dataclass
class EarlierTest:
    """The test split of the hf_ft run a checkpoint comes from, prepared for this run's model: scored after training
    and paired with that run's own test results, to measure what continued training forgot (`finish`)."""

    run_dir: Path  # the earlier run's output dir: the checkpoint this run starts from
    split: datasets.Dataset  # its test split, as the trainer takes it
    evaluate: Callable[[Path, dict[str, Prediction]], report.TaskReport]  # the task's scoring of it


def load_earlier_data(
    model_args: ModelArguments, data_class: type, load: Callable[..., Any], label_names: Sequence[str]
) -> Any | None:
    """The data of the hf_ft run whose output dir the checkpoint is, loaded again by the task's
    `load(data_args, seed=, token=, cache_dir=)` with that run's data arguments (a `data_class`) and seed from its
    args.yaml, when that run scored a test split (its `test_predictions.jsonl`): its test split is then the same
    examples, carved from the same rows if it was. None for any other checkpoint, and when the model's labels
    (`label_names`) do not hold that run's (a new head, whose rows mean other classes, cannot be scored there).

    Raises:
        InputError: that run's data cannot be loaded as its args.yaml says (moved, deleted): naming the way out.
    """
    run_dir = Path(model_args.model_name_or_path or "")
    if not (run_dir / ARGS_FILE).is_file() or not (run_dir / report.PREDICTIONS_FILE.format(split="test")).is_file():
        return None
    config = run_dir / "config.json"
    saved = json.loads(config.read_text(encoding="utf-8")).get("id2label", {}) if config.is_file() else {}
    if not set(saved.values()) <= set(label_names):
        logger.info("Forgetting is not measured: the model's labels do not include %s's, so its head is new", run_dir)
        return None
    recorded = yaml.safe_load((run_dir / ARGS_FILE).read_text(encoding="utf-8")) or {}
    names = {f.name for f in dataclasses.fields(data_class) if f.init}
    try:
        data_args = data_class(**{name: value for name, value in recorded.items() if name in names})
        return load(data_args, seed=recorded.get("seed", 42), token=model_args.token, cache_dir=model_args.cache_dir)
    except (InputError, OSError) as error:  # ConfigError is an InputError
        raise InputError(
            f"{run_dir} is an hf_ft run, and measuring forgetting loads its test split again as its args.yaml says: "
            f"{error} Restore that data, or set measure_forgetting: false."
        ) from error


def setup_logging(training_args: TrainingArguments, chosen: dict[str, Any]) -> None:
    """INFO logs from hf_ft on the main process, warnings only from the libraries and other processes; then the
    arguments the user chose (`chosen`: those that differ from the parser's defaults)."""
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout, level=level)
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()
    logger.info("Arguments (non-default): %s", chosen)


def start(
    training_args: TrainingArguments,
    *arguments: Any,
    checkpoints: Sequence[tuple[str | None, str]] = (),
    cache_dir: str | None = None,
) -> Run:
    """Logging, the checks that need no data in the order of their cost, then the output dir and the seed.

    Call it first in a recipe, before any data or model is loaded. `arguments` are the recipe's argument dataclasses
    other than `training_args`: they are logged, checked against each other (`check_arguments`) and, as
    `to_plain_dict` gives them, compared with an earlier run's `args.yaml`. `checkpoints` are the
    (name_or_path, revision) pairs the run loads (None names are skipped), found locally or, offline, in the Hub
    cache (`cache_dir`). `training_args.push_to_hub` is switched off for the Trainer: hf_ft pushes once, at the end,
    with the report and card (`Run.repo_id`).

    Raises:
        InputError: arguments that contradict each other, a training value that cannot work, a tracker that is not
            installed, a checkpoint that cannot be found (or FileNotFoundError), a push that cannot succeed
            (`hub.HubPushError`), or an output dir that is a file, cannot be written or holds another run.
    """
    # As given, before any speed option is decided for this machine: the base of a search's best.yaml (hf_ft.search)
    chosen = non_default(*arguments, training_args, defaults=speed.parser_defaults())
    setup_logging(training_args, chosen)
    check_arguments(*arguments)
    check_training_values(training_args)
    check_trackers(training_args.report_to)
    for name_or_path, revision in checkpoints:
        if name_or_path:
            hub.check_model_source(name_or_path, revision=revision, cache_dir=cache_dir)
    repo_id = None
    if training_args.push_to_hub:
        hub.check_hub_strategy(training_args.hub_strategy)
        repo_id = hub.preflight_push(
            training_args.hub_model_id, training_args.output_dir, training_args.hub_token, training_args.hub_private_repo
        )
        training_args.push_to_hub = False
    check_writable(training_args.output_dir)
    with training_args.main_process_first(desc="output_dir check"):
        resume_from, trained = prepare_output_dir(
            training_args.output_dir,
            to_plain_dict(*arguments, training_args),
            resume_from_checkpoint=training_args.resume_from_checkpoint,
        )
    set_seed(training_args.seed)
    return Run(Path(training_args.output_dir), resume_from, trained, repo_id, chosen)


def recorded_args(run: Run, training_args: TrainingArguments, *arguments: Any) -> dict[str, Any]:
    """The arguments as the run really goes (pass `training_args` as resolved by `speed.resolve_training_args`):
    pushed to `run.repo_id` at the end, since the Trainer itself never pushes. They go to args.yaml and the report."""
    run_args = to_plain_dict(*arguments, training_args)
    if run.repo_id is None:
        return run_args
    return {**run_args, "push_to_hub": True, "hub_model_id": run.repo_id}


def check_arguments(*arguments: Any) -> None:
    """The checks between hf_ft's argument dataclasses, and those that need the machine, before any work.

    Raises:
        InputError: an adapter with freezing options, QLoRA without a GPU, or a `compare_with` dir without results.
    """
    given = {type(argument): argument for argument in arguments}
    model_args, peft_args = given.get(ModelArguments), given.get(PeftArguments)
    if model_args is not None and peft_args is not None:
        check_peft_and_freezing(model_args, peft_args)
    if peft_args is not None:
        peft.quantization_config(peft_args)  # QLoRA: fails here, not after loading, without a GPU
    if ReportArguments in given:
        report.check_compare_with(given[ReportArguments].compare_with)


def check_training_values(training_args: TrainingArguments) -> None:
    """Refuse TrainingArguments values that TrainingArguments accepts but that fail or mislead later.

    Raises:
        InputError: naming the flag and the value.
    """
    positive = {
        "learning_rate": training_args.learning_rate,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "per_device_eval_batch_size": training_args.per_device_eval_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
    }
    for name, value in positive.items():
        if not value > 0:
            raise InputError(f"--{name} must be > 0, got {value}.")
    if training_args.max_steps <= 0 and not training_args.num_train_epochs > 0:
        raise InputError(f"--num_train_epochs must be > 0 (or set --max_steps), got {training_args.num_train_epochs}.")
    for name in ("weight_decay", "warmup_steps"):
        if getattr(training_args, name) < 0:
            raise InputError(f"--{name} must be >= 0, got {getattr(training_args, name)}.")


def check_trackers(report_to: list[str]) -> None:
    """Fail now, not after the model has loaded, when a `report_to` tracker is not installed.

    Raises:
        InputError: naming the tracker and the install command.
    """
    available = set(get_available_reporting_integrations())
    for name in report_to:
        if name not in available:
            install = _TRACKER_INSTALLS.get(name, f"`pip install {name}`")
            raise InputError(f"report_to: {name} is not installed. Run {install}, or drop {name} from --report_to.")


def check_writable(output_dir: str) -> None:
    """`output_dir` is a directory, or can become one, that this process can write into.

    A probe file is created and removed in its nearest existing ancestor, so permissions, read-only mounts and
    immutable folders all count; nothing else is created.

    Raises:
        OutputDirError: it is a file, lies under a file, or cannot be written.
    """
    path = Path(output_dir).absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise OutputDirError(f"--output_dir {output_dir} {where}: point it at a directory.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputDirError(
            f"--output_dir {output_dir} cannot be written ({existing}: {err.strerror}): choose a directory you can "
            "write to."
        ) from None


def prepare_output_dir(
    output_dir: str, run_args: dict[str, Any], *, resume_from_checkpoint: str | None = None
) -> tuple[str | None, bool]:
    """Decide how this run uses `output_dir`; nothing is written.

    - empty or new: a fresh run;
    - holds a run with the same arguments (the same command again, e.g. after a crash): resume from its last
      complete checkpoint, or reload the trained model if training finished;
    - holds an attempt with other arguments that saved nothing (no checkpoint, no model), e.g. one stopped by bad
      input: a fresh run;
    - holds anything else: refuse, so no earlier result is overwritten.

    Returns:
        (the checkpoint to resume from or None, whether training already finished).

    Raises:
        OutputDirError: `output_dir` holds files of another run, or files hf_ft did not write.
        CheckpointError: `resume_from_checkpoint` names an incomplete checkpoint.
    """
    path = Path(output_dir)
    if not (path.is_dir() and any(path.iterdir())):
        return _explicit_checkpoint(resume_from_checkpoint, path), False
    earlier = _read_args(path)
    if earlier is None:
        raise OutputDirError(
            f"output_dir {path} is not empty and holds no {ARGS_FILE} from an hf_ft run. Choose a new "
            "--output_dir; nothing was changed."
        )
    differences = _differences(earlier, run_args)
    if differences and _holds_training(path):
        shown = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences[:5])
        raise OutputDirError(
            f"output_dir {path} holds another run ({shown}). Choose a new --output_dir, or delete that one; "
            "nothing was changed."
        )
    if differences:
        logger.info("output_dir %s holds an attempt with other arguments that saved nothing: starting afresh", path)
        return _explicit_checkpoint(resume_from_checkpoint, path), False
    if (path / TRAIN_RESULTS_FILE).is_file():
        logger.info("Training already finished in %s: its model is reloaded, not trained again", path)
        return None, True
    resume = _explicit_checkpoint(resume_from_checkpoint, path) or last_complete_checkpoint(path)
    if resume:
        logger.info("Resuming the run in %s from %s", path, resume)
    return resume, False


def baseline_scores(
    output_dir: Path, key: dict[str, Any], score: Callable[[], dict[str, Any]], *, should_save: bool
) -> dict[str, Any]:
    """The model a run starts from, scored by `score` before training (plain JSON data), or the scores an earlier
    attempt at this run saved in `output_dir` under the same `key` (what was scored, and how), so a resumed or
    reloaded run shows the numbers of the model it started from without scoring it again. Written when
    `should_save` (the main process)."""
    path = output_dir / BASELINE_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["scores"]
    scores = score()
    if should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "scores": scores}, indent=2), encoding="utf-8")
    return scores


def train(trainer: Trainer, run: Run, run_args: dict[str, Any]) -> dict[str, float]:
    """Train (resuming `run.resume_from`), save the model and state, and return the training metrics.

    When an earlier attempt finished training (`run.trained`), nothing is trained: the saved model and trainer state
    are loaded back and the recorded training metrics returned, so a report, card or push that failed after
    training costs only itself. `run_args` (resolved) go to `args.yaml` before training starts.
    """
    output_dir = run.output_dir
    if run.trained:
        trainer._load_from_checkpoint(str(output_dir))  # the final save loads like a checkpoint (StrictResumeTrainer)
        trainer.state = TrainerState.load_from_json(str(output_dir / TRAINER_STATE_FILE))
        return json.loads((output_dir / TRAIN_RESULTS_FILE).read_text(encoding="utf-8"))
    if trainer.args.should_save:
        write_args(output_dir, run_args)
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    trainer.save_model()
    base_model = getattr(trainer.model, "get_base_model", None)
    if base_model is not None and trainer.args.should_save:
        # A PEFT adapter folder holds no config.json; its base's carries the labels and, for timm, the preprocessing
        # the adapter was trained with (TimmWrapper keeps it there), so the folder reloads on its own.
        base_model().config.save_pretrained(output_dir)
    trainer.save_state()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)  # last: it marks the training as finished
    return result.metrics


def finish(
    trainer: Trainer,
    run: Run,
    *,
    splits: Mapping[str, datasets.Dataset],
    evaluate: Callable[[Path, dict[str, Prediction]], report.TaskReport],
    about: report.About,
    card: hub.CardFacts,
    run_args: dict[str, Any],
    train_metrics: dict[str, float],
    peft_args: PeftArguments,
    report_args: ReportArguments,
    save_with_model: Callable[[str], None] | None = None,
    earlier_test: EarlierTest | None = None,
    linear_probe: LinearProbe | None = None,
    predict_splits: bool = True,
) -> dict[str, dict[str, float]]:
    """End a run: predict `eval_splits`, then, on the main process, the report, the card, the merged model, the push.

    Args:
        trainer: The trained (or reloaded) Trainer.
        run: What `start` decided (output dir, push target).
        splits: The prepared splits, as the trainer takes them: "validation" and "test" (those there are) are
            predicted and scored.
        evaluate: The task's scoring: writes its own files into the output dir and returns its `TaskReport`.
        about: What the report says about the run beyond the trainer's state.
        card: What the model card says about the model.
        run_args: The resolved arguments (`recorded_args`), shown in the report.
        train_metrics: What `train` returned.
        peft_args: The PEFT method trained, if any (`output_dir` then holds an adapter), and `merge_adapter`: also
            write `output_dir/merged`, the adapter merged into its base (loads without PEFT).
        report_args: `compare_with`, the output dirs of earlier runs shown side by side in the report, and how the
            intervals are computed.
        save_with_model: Writes what the model needs beside it (processor, tokenizer) into a dir: called for
            `output_dir` and the merged model.
        earlier_test: The test split of the run the checkpoint comes from: scored too, into `output_dir/forgetting`
            (a report paired with that run's), and summed up in a "Forgetting" section of the report.
        linear_probe: The frozen-backbone baseline (`hf_ft.probe`, main process): scored by `evaluate` into
            `output_dir/linear_probe`, and paired with this run in a section of the report.
        predict_splits: False when the task's `evaluate` scores the splits itself (SFT: per sample, from the
            model): the trainer does not predict them first, and `evaluate` is given no predictions.

    Returns:
        Per split metrics (empty on other processes).
    """
    predictions, earlier_predictions = {}, {}
    if predict_splits:
        predictions = predict(trainer, {name: splits[name] for name in ("validation", "test") if name in splits})
        if earlier_test is not None:
            earlier_predictions = {"test": predict(trainer, {FORGETTING_DIR: earlier_test.split})[FORGETTING_DIR]}
    peft_method = peft_args.peft_method
    results: dict[str, dict[str, float]] = {}
    if trainer.is_world_process_zero():
        output_dir = run.output_dir
        task_report = evaluate(output_dir, predictions)
        settings = BootstrapSettings(report_args.bootstrap_resamples, report_args.confidence_level, seed=trainer.args.seed)
        adapter = {"method": peft_method, "size_bytes": peft.adapter_size_bytes(output_dir)} if peft_method else None
        summary = {
            "run_name": trainer.args.run_name,
            "model": card.base_model,
            "dataset": about.dataset,
            "task": card.task,
            "config": run_args,
            "num_samples": about.num_samples,
            "trainable_parameters": about.parameters[0],
            "total_parameters": about.parameters[1],
            "train_runtime_s": train_metrics.get("train_runtime"),
            "adapter": adapter,
            "teacher": about.teacher,
        }
        if earlier_test is not None:
            forgetting = earlier_test.evaluate(output_dir / FORGETTING_DIR, earlier_predictions)
            report.write_report(output_dir / FORGETTING_DIR, forgetting, summary, [], [earlier_test.run_dir], settings)
            task_report.sections.append(
                report.forgetting_section(forgetting, earlier_test.run_dir, FORGETTING_DIR, settings)
            )
        if linear_probe is not None:
            probe_report = evaluate(output_dir / LINEAR_PROBE_DIR, linear_probe.predictions)
            probe_summary = {**summary, "run_name": "linear probe", "trainable_parameters": None,
                             "train_runtime_s": None}
            report.write_report(output_dir / LINEAR_PROBE_DIR, probe_report, probe_summary, [], [], settings)
            task_report.sections.append(report.linear_probe_section(
                task_report, probe_report, LINEAR_PROBE_DIR, settings,
                f"C={linear_probe.C:g}, on {linear_probe.train_examples:,} training feature vectors of size "
                f"{linear_probe.feature_size:,}",
            ))
        results = report.write_report(
            output_dir, task_report, summary, trainer.state.log_history, report_args.compare_with, settings
        )
        hub.write_model_card(
            output_dir,
            dataclasses.replace(card, library_name="peft") if peft_method else card,
            task_report,
            training_args=_card_hyperparameters(trainer.args),
            repo_id=run.repo_id,
        )
        saved_dirs = [str(output_dir)]
        if peft_method and peft_args.merge_adapter:
            saved_dirs.append(str(output_dir / "merged"))
            peft.save_merged(trainer.model, saved_dirs[-1])
            logger.info("Merged model (loads with pipeline(), no PEFT) in %s", saved_dirs[-1])
        if save_with_model is not None:
            for directory in saved_dirs:
                save_with_model(directory)
        if run.repo_id:
            args = trainer.args
            url = hub.push_to_hub(output_dir, run.repo_id, token=args.hub_token, private=args.hub_private_repo)
            logger.info("Pushed to %s", url)
        logger.info("Model, report and card in %s (open %s first)", output_dir, report.REPORT_FILE)
    trainer.end()
    return results


def predict(trainer: Trainer, splits: Mapping[str, datasets.Dataset]) -> dict[str, Prediction]:
    """Each split's predictions, with its metrics logged (prefixed "eval" for validation, else the split's name)."""
    # `predict`, never `evaluate(split)`: with persistent workers, Trainer.get_eval_dataloader caches its loader
    # under the dataset's name, and every dataset object is named "eval": it would evaluate validation again.
    predictions = {}
    for name, split in splits.items():
        output = trainer.predict(split, metric_key_prefix="eval" if name == "validation" else name)
        trainer.log_metrics(name, output.metrics)
        outputs = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        predictions[name] = Prediction(np.asarray(outputs), np.asarray(output.label_ids), output.metrics)
    return predictions


def _card_hyperparameters(args: TrainingArguments) -> dict[str, Any]:
    return {
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "seed": args.seed,
        "mixed_precision": args.mixed_precision,
    }


def write_args(output_dir: str | Path, run_args: dict[str, Any]) -> None:
    """Write `args.yaml` whole or not at all (another process may read it while it is written)."""
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    temporary = path / f".{ARGS_FILE}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        yaml.safe_dump(run_args, f, sort_keys=True)
    os.replace(temporary, path / ARGS_FILE)


def _explicit_checkpoint(resume_from_checkpoint: str | None, output_dir: Path) -> str | None:
    """`--resume_from_checkpoint`: `true` means the last complete checkpoint; a path must be a complete one."""
    if not resume_from_checkpoint:
        return None
    if str(resume_from_checkpoint).lower() == "true":
        return last_complete_checkpoint(output_dir)
    if not is_complete_checkpoint(resume_from_checkpoint):
        raise CheckpointError(
            f"--resume_from_checkpoint {resume_from_checkpoint} is not a complete checkpoint (no readable "
            f"{TRAINER_STATE_FILE} or no weights). Pass another checkpoint-N folder, or `true` for the last complete one."
        )
    return str(resume_from_checkpoint)


def _holds_training(path: Path) -> bool:
    # At any depth: the compression recipe trains its variants in sub-folders.
    return any(next(path.rglob(pattern), None) for pattern in (*_TRAINED_FILES, "checkpoint-*"))


def _read_args(path: Path) -> dict[str, Any] | None:
    file = path / ARGS_FILE
    if not file.is_file():
        return None
    with open(file, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = sorted((set(old) | set(new)) - _NOT_RESULT_AFFECTING)
    return [(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]
