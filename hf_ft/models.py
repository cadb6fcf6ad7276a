"""One path to a classifier: any transformers image checkpoint or timm checkpoint, head sized to the data.

timm checkpoints (`timm/<name>` Hub ids, `timm.models.save_for_hf` dirs, transformers' own TimmWrapper
saves) load through transformers' TimmWrapper, so the output loads both with `pipeline()` and with
`timm.create_model("local-dir:...")`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from huggingface_hub import constants
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    BaseImageProcessor,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperConfig,
    TimmWrapperImageProcessor,
)

from .args import ModelArguments
from .errors import InputError
from .hub import check_model_source, offline_message

logger = logging.getLogger(__name__)

# transformers config attributes that hold dropout / drop-path rates, by the timm name we expose.
_DROPOUT_ATTRIBUTES = {
    "drop_rate": ("hidden_dropout_prob", "classifier_dropout", "classifier_dropout_prob", "dropout"),
    "drop_path_rate": ("drop_path_rate",),
}


def load_image_classifier(
    model_args: ModelArguments,
    label_names: list[str],
    *,
    image_size: int | None = None,
    quantization_config: Any = None,
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """Load a checkpoint with a classification head for `label_names`, and its image processor.

    The head is replaced when its size differs (`ignore_mismatched_sizes`); `id2label`/`label2id` come from
    the data. `image_size` changes the resolution recorded in the saved preprocessing config, so the saved
    model is used at the size it was trained at. `quantization_config` (QLoRA's 4-bit `BitsAndBytesConfig`)
    goes to `from_pretrained`.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        InputError: a Hub checkpoint is asked for while offline and is not cached, or a dropout setting the
            model does not have.
    """
    source = model_args.model_name_or_path
    check_model_source(source, revision=model_args.model_revision, cache_dir=model_args.cache_dir)
    hub_kwargs = {
        "revision": model_args.model_revision,
        "cache_dir": model_args.cache_dir,
        "token": model_args.token,
        "trust_remote_code": model_args.trust_remote_code,
    }
    with _offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        if _is_structurally_pruned(config):
            return _load_pruned_for_training(source, config, label_names, hub_kwargs)
        _set_labels(config, label_names)
        _set_regularisation(config, model_args)
        if image_size is not None:
            _set_image_size(config, image_size)
        model = AutoModelForImageClassification.from_pretrained(
            source,
            config=config,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            quantization_config=quantization_config,
            **hub_kwargs,
        )
        processor = _image_processor(source, config, image_size, hub_kwargs)
    return model, processor


def load_saved_classifier(
    source: str,
    *,
    revision: str = "main",
    token: str | None = None,
    cache_dir: str | None = None,
) -> PreTrainedModel:
    """Load a classifier exactly as it was saved (its own head and labels), in eval mode.

    A structurally pruned checkpoint (`hf_ft.pruning.save_pruned`) is rebuilt at its pruned shapes and loaded
    strictly; any other loads with `from_pretrained`.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        InputError: a Hub checkpoint is asked for while offline and is not cached, or a pruned checkpoint's
            weights do not match the architecture it records.
    """
    check_model_source(source, revision=revision, cache_dir=cache_dir)
    hub_kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir}
    with _offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        _drop_timm_num_classes(config)
        return _model_as_saved(source, config, hub_kwargs)


def load_finetuned_classifier(
    source: str,
    *,
    revision: str = "main",
    token: str | None = None,
    cache_dir: str | None = None,
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """`load_saved_classifier` plus the checkpoint's image processor.

    For models that are used, not re-headed: a distillation teacher, the model a compression run starts from.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        InputError: as `load_saved_classifier`.
    """
    model = load_saved_classifier(source, revision=revision, token=token, cache_dir=cache_dir)
    hub_kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir}
    with _offline_hint(source):
        processor = _image_processor(source, model.config, None, hub_kwargs)
    return model, processor


def _model_as_saved(source: str, config: PretrainedConfig, hub_kwargs: dict) -> PreTrainedModel:
    if _is_structurally_pruned(config):
        from .pruning import load_pruned_weights  # pruning builds on this module

        return load_pruned_weights(source, config, hub_kwargs)
    return AutoModelForImageClassification.from_pretrained(source, config=config, **hub_kwargs).eval()


def _is_structurally_pruned(config: PretrainedConfig) -> bool:
    from .pruning import is_structurally_pruned

    return is_structurally_pruned(config)


def _load_pruned_for_training(
    source: str, config: PretrainedConfig, label_names: list[str], hub_kwargs: dict
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """A structurally pruned checkpoint trains on as it is: its layers cannot be rebuilt from the config, so
    re-initialising mismatched weights (`ignore_mismatched_sizes`) would silently throw the pruned ones away."""
    saved = [config.id2label[i] for i in range(config.num_labels)]
    if saved != list(label_names):
        raise InputError(
            f"{source} is structurally pruned (hf_ft.pruning) for the labels {saved[:10]}, not the data's "
            f"{list(label_names)[:10]}: its head cannot be replaced. Prune a model fine-tuned on this data instead."
        )
    _drop_timm_num_classes(config)
    return _model_as_saved(source, config, hub_kwargs), _image_processor(source, config, None, hub_kwargs)


class _offline_hint:
    """Turn 'cannot find it' errors raised while offline into one line that says what to do."""

    def __init__(self, source: str):
        self.source = source

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and isinstance(exc, OSError) and constants.HF_HUB_OFFLINE:
            raise InputError(offline_message(self.source)) from exc
        return False


def _set_labels(config: PretrainedConfig, label_names: list[str]) -> None:
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    if isinstance(config, TimmWrapperConfig):
        _drop_timm_num_classes(config)
        config.label_names = list(label_names)


def _drop_timm_num_classes(config: PretrainedConfig) -> None:
    # timm 1.0.3x `save_for_hf` records num_classes in model_args as well; TimmWrapper passes both to
    # timm.create_model, which then fails with "got multiple values for keyword argument 'num_classes'".
    if isinstance(config, TimmWrapperConfig):
        config.model_args = {k: v for k, v in (config.model_args or {}).items() if k != "num_classes"}


def _set_regularisation(config: PretrainedConfig, model_args: ModelArguments) -> None:
    for name in ("drop_rate", "drop_path_rate"):
        value = getattr(model_args, name)
        if value is None:
            continue
        if isinstance(config, TimmWrapperConfig):
            config.model_args = {**(config.model_args or {}), name: value}
            continue
        attributes = [a for a in _DROPOUT_ATTRIBUTES[name] if hasattr(config, a)]
        if not attributes:
            raise InputError(
                f"--{name} is not supported by {type(config).__name__} (it has none of {_DROPOUT_ATTRIBUTES[name]}); "
                f"remove it from the config."
            )
        for attribute in attributes:
            setattr(config, attribute, value)


def _set_image_size(config: PretrainedConfig, image_size: int) -> None:
    if isinstance(config, TimmWrapperConfig):
        pretrained_cfg = copy.deepcopy(config.pretrained_cfg)
        pretrained_cfg["input_size"] = [3, image_size, image_size]
        pretrained_cfg.pop("test_input_size", None)  # evaluate at the size we train at
        config.pretrained_cfg = pretrained_cfg
    elif hasattr(config, "image_size"):
        config.image_size = image_size


def _image_processor(source: str, config: PretrainedConfig, image_size: int | None, hub_kwargs: dict) -> BaseImageProcessor:
    if isinstance(config, TimmWrapperConfig):
        # TimmWrapper keeps its preprocessing in config.json (pretrained_cfg); build it from the edited config.
        return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg, architecture=config.architecture)
    processor = AutoImageProcessor.from_pretrained(source, **hub_kwargs)
    if image_size is not None:
        if processor.size.get("shortest_edge"):
            processor.size = {"shortest_edge": image_size}
        else:
            processor.size = {"height": image_size, "width": image_size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": image_size, "width": image_size}
    return processor


# Head attribute names of transformers classifiers (`score` for decoder-only sequence classifiers).
_TRANSFORMERS_HEAD_NAMES = ("classifier", "score")


def head_module_name(model: PreTrainedModel) -> str | None:
    """Name (in `model.named_modules()`) of the classification head, or None for a model without one.

    timm models (TimmWrapper) name it through timm's `get_classifier()` (`timm_model.fc`, `timm_model.head.fc`,
    ...); transformers classifiers call it `classifier` or `score`.

    Raises:
        InputError: a `...Classification` model whose head is not found (its new head would not be trained).
    """
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        head = timm_model.get_classifier()
        return next(name for name, module in model.named_modules() if module is head)
    for name in _TRANSFORMERS_HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    if "Classification" in type(model).__name__:
        raise InputError(
            f"Cannot find the classification head of {type(model).__name__} (none of {_TRANSFORMERS_HEAD_NAMES}); "
            "name it in --modules_to_save."
        )
    return None


def is_timm(model: nn.Module) -> bool:
    """Whether `model` is a timm model behind transformers' TimmWrapper (a PeftModel forwards the attribute)."""
    return hasattr(model, "timm_model")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
