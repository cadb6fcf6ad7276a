"""Argument dataclasses shared by the recipes, and the YAML-with-CLI-overrides parser.

Every field is settable from a YAML config (``--config path.yaml``) and overridable on the command line
(``--learning_rate 3.0e-4``); the command line wins. Names follow transformers' example scripts, so a
command that works with ``run_image_classification.py`` works here unchanged.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments
from .errors import InputError

# Every run's output dir holds its resolved arguments under this name.
ARGS_FILE = "args.yaml"

__all__ = [
    "ModelArguments",
    "DataArguments",
    "PeftArguments",
    "ReportArguments",
    "ConfigError",
    "parse_args",
    "check_peft_and_freezing",
    "to_plain_dict",
    "non_default",
]


# Fields that two argument dataclasses of one recipe may both have, because they mean the same thing in both: TRL's
# SFTConfig has its own `trust_remote_code` next to ModelArguments'. One `--trust_remote_code` sets both.
SHARED_FIELDS = frozenset({"trust_remote_code"})


class ConfigError(InputError):
    """A config file or command line that cannot be turned into arguments."""


@dataclass
class ModelArguments:
    """Which checkpoint to start from and how to adapt it."""

    model_name_or_path: str = field(
        metadata={
            "help": "Checkpoint to fine-tune: a Hub id (`google/vit-base-patch16-224-in21k`, `timm/resnet50.a1_in1k`) "
            "or a local directory (a `save_pretrained` or `timm.models.save_for_hf` output)."
        }
    )
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a Hub checkpoint."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded checkpoints are cached."})
    token: str | None = field(
        default=None,
        metadata={"help": "Hub token for private checkpoints/datasets; defaults to the one from `hf auth login`."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modelling code shipped with a Hub checkpoint. Only for repos you trust."},
    )
    ignore_mismatched_sizes: bool = field(
        default=True,
        metadata={
            "help": "Re-initialise weights whose shape differs from the checkpoint's: the classifier head when the "
            "dataset has other labels than the checkpoint (the usual fine-tuning case)."
        },
    )
    trainable_blocks: int | None = field(
        default=None,
        metadata={
            "help": "Train only the classifier head plus the last K blocks of the backbone (transformer layers, or "
            "stages for convnets). 0 trains the head only (linear probe). Unset trains everything."
        },
    )
    freeze_backbone_epochs: float = field(
        default=0.0,
        metadata={
            "help": "Train only the head for the first N epochs (a warm-up for the new head), then unfreeze the "
            "backbone (as far as `trainable_blocks` allows)."
        },
    )
    drop_rate: float | None = field(
        default=None,
        metadata={
            "help": "Dropout probability: timm's `drop_rate` (before the head), transformers' `hidden_dropout_prob` "
            "or `classifier_dropout`. Unset keeps the checkpoint's."
        },
    )
    drop_path_rate: float | None = field(
        default=None,
        metadata={"help": "Stochastic depth (drop-path) rate for models that support it. Unset keeps the checkpoint's."},
    )

    def __post_init__(self):
        if self.trainable_blocks is not None and self.trainable_blocks < 0:
            raise ConfigError(f"--trainable_blocks must be >= 0, got {self.trainable_blocks}")
        if self.freeze_backbone_epochs < 0:
            raise ConfigError(f"--freeze_backbone_epochs must be >= 0, got {self.freeze_backbone_epochs}")
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"--{name} must be in [0, 1), got {value}")

    def hub_kwargs(self) -> dict[str, Any]:
        """What every `from_pretrained` of this checkpoint (config, model, processor, tokenizer) is given."""
        return {
            "revision": self.model_revision,
            "cache_dir": self.cache_dir,
            "token": self.token,
            "trust_remote_code": self.trust_remote_code,
        }


@dataclass
class DataArguments:
    """Where the data comes from and how it is split. Shared by every recipe."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset id (`beans`, `ethz/food101`) or a local dataset directory."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of a Hub dataset."})
    train_dir: str | None = field(default=None, metadata={"help": "An imagefolder for training: `<dir>/<label>/*.jpg`."})
    validation_dir: str | None = field(default=None, metadata={"help": "An imagefolder for validation."})
    test_dir: str | None = field(default=None, metadata={"help": "An imagefolder for the final test."})
    train_file: str | None = field(
        default=None,
        metadata={"help": "A csv/json/jsonl/parquet file for training: one row per example, paths relative to the file."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Like `train_file`, for validation."})
    test_file: str | None = field(default=None, metadata={"help": "Like `train_file`, for the final test."})
    train_split_name: str = field(default="train", metadata={"help": "The dataset's training split."})
    validation_split_name: str | None = field(
        default=None,
        metadata={"help": "The dataset's validation split; found automatically (`validation`, `valid`, `val`, `dev`)."},
    )
    test_split_name: str | None = field(
        default=None, metadata={"help": "The dataset's test split; `test` is used automatically when it exists."}
    )
    train_val_split: float = field(
        default=0.15,
        metadata={"help": "Fraction of train held out (stratified by label) when the data has no validation split."},
    )
    label_column_name: str | None = field(
        default=None,
        metadata={"help": "The label column; found automatically when obvious (a ClassLabel, or `label`/`labels`)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training examples (for quick runs and debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many validation and test examples."}
    )
    class_weight: str | None = field(
        default=None,
        metadata={
            "help": "`balanced`: weigh each class in the loss by n_samples / (n_classes * its training count) "
            "(scikit-learn's class_weight), so rare classes count as much as common ones. Unset: every example "
            "weighs the same. Single-label classes and tags only; the eval loss is weighted too."
        },
    )
    class_balanced_sampling: bool = field(
        default=False,
        metadata={
            "help": "Draw each epoch's training examples with replacement, an example's chance inversely proportional "
            "to its class's training count, so every class is seen about equally often (the epoch keeps its length). "
            "Single-label classes only (image and text)."
        },
    )

    def __post_init__(self):
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"--class_weight must be `balanced` or unset, got {self.class_weight!r}")
        sources = {
            "dataset_name": self.dataset_name,
            "train_dir": self.train_dir,
            "train_file": self.train_file,
        }
        given = [name for name, value in sources.items() if value]
        if not given:
            raise ConfigError("No training data: set one of --dataset_name, --train_dir or --train_file.")
        if len(given) > 1:
            raise ConfigError(f"Set only one data source, got {', '.join('--' + g for g in given)}.")
        if not 0.0 < self.train_val_split < 1.0:
            raise ConfigError(f"--train_val_split must be in (0, 1), got {self.train_val_split}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name} must be > 0, got {value}")


@dataclass
class PeftArguments:
    """Parameter-efficient fine-tuning with PEFT: which adapter, where, and what is saved."""

    peft_method: str | None = field(
        default=None,
        metadata={
            "help": "Adapter method: `lora`, `loha`, `lokr`, `ia3`, `oft` (PEFT names). Unset trains the model itself "
            "(full fine-tuning or freezing options)."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "Adapter rank (`r`) for lora/loha/lokr; block count for oft."})
    lora_alpha: float = field(default=16.0, metadata={"help": "Scaling numerator (`alpha`) for lora/loha/lokr."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input (lora; module dropout for loha/lokr)."})
    use_dora: bool = field(default=False, metadata={"help": "DoRA: weight-decomposed LoRA (lora only)."})
    use_rslora: bool = field(default=False, metadata={"help": "rsLoRA: scale by alpha/sqrt(r) instead of alpha/r (lora only)."})
    init_lora_weights: str = field(
        default="true",
        metadata={"help": "LoRA init: `true` (PEFT default), `gaussian`, `pissa`, `olora`, ... (lora only)."},
    )
    target_modules: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={
            "help": "Modules that get adapters: `auto` (chosen from the model's own modules per family), a list of "
            "module-name suffixes, or one regex (full match on module names)."
        },
    )
    modules_to_save: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra modules trained and saved in full beside the adapter (the head and BatchNorm layers always are)."},
    )
    merge_adapter: bool = field(
        default=False,
        metadata={"help": "Also save a merged plain model in `output_dir/merged` (loads with `pipeline()`, no PEFT)."},
    )
    load_in_4bit: bool = field(
        default=False, metadata={"help": "QLoRA: load the base weights in 4-bit NF4 with bitsandbytes (CUDA GPU only)."}
    )

    def __post_init__(self):
        if self.peft_method is not None:
            self.peft_method = self.peft_method.lower()
        if self.lora_r <= 0:
            raise ConfigError(f"--lora_r must be > 0, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if (self.use_dora or self.use_rslora) and self.peft_method != "lora":
            raise ConfigError("--use_dora/--use_rslora are LoRA options; set --peft_method lora.")
        if self.load_in_4bit and self.peft_method is None:
            raise ConfigError("--load_in_4bit (QLoRA) needs an adapter: set --peft_method lora.")
        if self.merge_adapter and self.peft_method is None:
            raise ConfigError("--merge_adapter needs --peft_method.")


@dataclass
class ReportArguments:
    """The evaluation report written after training."""

    compare_with: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Output dirs of earlier runs whose results go side by side with this one in report.md; on the same "
            "test set, also the paired difference of each headline metric with its interval, and the examples "
            "whose prediction changed, regressions first."
        },
    )
    bootstrap_resamples: int = field(
        default=1000,
        metadata={
            "help": "Resamples of the test examples behind each headline metric's confidence interval and each paired "
            "difference (percentile bootstrap, seeded by --seed); 0 computes no intervals."
        },
    )
    confidence_level: float = field(default=0.95, metadata={"help": "Confidence level of those intervals."})
    measure_forgetting: bool = field(
        default=True,
        metadata={
            "help": "When the checkpoint is an hf_ft output dir (a continued fine-tune), also score the model on that "
            "run's test split, loaded as its args.yaml says, and report the change from that run's scores: what the "
            "new data made it forget (`output_dir/forgetting/`). false: skip it."
        },
    )
    linear_probe_baseline: bool = field(
        default=False,
        metadata={
            "help": "Classification: before training, also fit a logistic regression on the pretrained model's frozen "
            "features (its head's input) and report what fine-tuning added beyond it, paired on the same test "
            "examples (`output_dir/linear_probe/`). Costs one inference pass over the training split."
        },
    )

    def __post_init__(self):
        if self.bootstrap_resamples < 0:
            raise ConfigError(f"--bootstrap_resamples must be >= 0, got {self.bootstrap_resamples}")
        if not 0.0 < self.confidence_level < 1.0:
            raise ConfigError(f"--confidence_level must be in (0, 1), got {self.confidence_level}")


def check_peft_and_freezing(model_args: ModelArguments, peft_args: PeftArguments) -> None:
    """An adapter decides what trains; freezing options on top of it would silently do nothing.

    Raises:
        ConfigError: both are set.
    """
    if peft_args.peft_method and (model_args.trainable_blocks is not None or model_args.freeze_backbone_epochs):
        raise ConfigError(
            f"--peft_method {peft_args.peft_method} trains only the adapter, head and BatchNorm layers; drop "
            "--trainable_blocks/--freeze_backbone_epochs, or --peft_method for full fine-tuning."
        )


def parse_args(
    dataclass_types: tuple[type, ...], args: list[str] | None = None, *, defaults: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """Parse `--config file.yaml` plus command-line overrides into `dataclass_types` instances.

    The YAML's values become defaults and the command line wins, with argparse's type conversion applied to
    both (so `learning_rate: 1e-4` is a float, not a string). `defaults` replace the dataclasses' own defaults,
    under the YAML (the recipes pass `hf_ft.speed.parser_defaults()`). An `env:` mapping in the YAML is exported
    to the environment first. Unknown keys are refused with the closest valid name.

    Raises:
        ConfigError: the config file is missing or not a mapping, or holds a key no dataclass has.
    """
    argv = list(sys.argv[1:] if args is None else args)
    config_path, argv = _pop_config_path(argv)
    parser = HfArgumentParser(dataclass_types, conflict_handler=_conflict_handler(dataclass_types))  # fresh each time
    if any(issubclass(kind, TrainingArguments) for kind in dataclass_types):
        # hf_ft pushes once, at the end (hf_ft.hub); Trainer's default `every_save` would be a strategy it ignores.
        parser.set_defaults(hub_strategy="end")
    parser.set_defaults(**(defaults or {}))
    if config_path is not None:
        config = _read_config(config_path)
        for key, value in (config.pop("env", None) or {}).items():
            os.environ[str(key)] = str(value)
        _check_keys(config, parser, config_path)
        parser.set_defaults(**{key: _as_cli_default(value) for key, value in config.items()})
        for action in parser._actions:
            if action.dest in config:
                action.required = False
    namespace, remaining = parser.parse_known_args(args=argv)
    if remaining:
        raise ValueError(f"Some specified arguments are not used by the HfArgumentParser: {remaining}")
    # As HfArgumentParser.parse_args_into_dataclasses does, except that a SHARED_FIELDS value goes to every
    # dataclass that has the field (it hands each name to the first one only).
    values = vars(namespace)
    return tuple(
        kind(**{f.name: values[f.name] for f in dataclasses.fields(kind) if f.init and f.name in values})
        for kind in dataclass_types
    )


def _conflict_handler(dataclass_types: tuple[type, ...]) -> str:
    """argparse's "resolve" when two dataclasses share a field that means the same in both (`SHARED_FIELDS`): the
    one option fills both, since HfArgumentParser gives each dataclass its fields from one namespace.

    Raises:
        ConfigError: two dataclasses share any other field name (one of them would silently take the other's value).
    """
    seen: dict[str, str] = {}
    shared = set()
    for kind in dataclass_types:
        for name in (f.name for f in dataclasses.fields(kind) if f.init):
            if name in seen and name not in SHARED_FIELDS:
                raise ConfigError(f"--{name} is a field of both {seen[name]} and {kind.__name__}: rename one.")
            if name in seen:
                shared.add(name)
            seen[name] = kind.__name__
    return "resolve" if shared else "error"


def _pop_config_path(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, arg in enumerate(argv):
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a path to a YAML file.")
            return argv[i + 1], argv[:i] + argv[i + 2 :]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1 :]
    return None, argv


def _read_config(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"Config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping of argument names to values, got {type(config).__name__}.")
    return config


def _check_keys(config: dict[str, Any], parser: HfArgumentParser, path: str) -> None:
    known = {action.dest for action in parser._actions if action.dest != "help"}
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(f"Unknown key `{key}` in {path}.{hint}")


def _as_cli_default(value: Any) -> Any:
    # argparse converts string defaults with the field's type, so YAML scalars go through the same
    # conversion as command-line strings (YAML reads `1e-4` as a string, and `true` for a str field as bool).
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def to_plain_dict(*dataclass_objs: Any) -> dict[str, Any]:
    """Merge dataclass instances into one YAML-safe dict of their fields (TrainingArguments included).

    Secrets (`token`, `hub_token`) are dropped: this dict is written to `args.yaml` and the report.
    """
    merged: dict[str, Any] = {}
    for obj in dataclass_objs:
        values = obj.to_dict() if isinstance(obj, TrainingArguments) else dataclasses.asdict(obj)
        merged.update(values)
    plain = {key: _plain(value) for key, value in merged.items() if not key.endswith("token")}
    return plain


def non_default(*dataclass_objs: Any, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields set away from their defaults: what the user chose, for the log (args.yaml has them all).

    `defaults` are the parser's replacements for the dataclasses' own (`parse_args(defaults=...)`). TrainingArguments
    fields whose own default is None are left out: `__post_init__` resolves most of them, so a resolved value says
    nothing about the user's choice (and building a default TrainingArguments to compare with would touch the
    distributed state).
    """
    defaults = defaults or {}
    chosen = {}
    for obj in dataclass_objs:
        for f in dataclasses.fields(obj):
            if not f.init or f.name.endswith("token"):
                continue
            if f.name in defaults:
                default = defaults[f.name]
            elif f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING  # required: always the user's choice
            if default is None and isinstance(obj, TrainingArguments) and f.name not in defaults:
                continue
            value = _plain(getattr(obj, f.name))
            if value != _plain(default):
                chosen[f.name] = value
    return chosen


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # IntervalStrategy & co. are str enums: take the plain value
        return _plain(value.value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
