"""What every task does to a checkpoint: labels mapped by name, dropout settings, the head found, parameters counted.

Task modules load their own Auto class (`hf_ft.tasks.<task>`); the fixes for places where the libraries disagree
about a saved config live here, so every task gets them (transformers' TimmWrapper vs timm's `save_for_hf`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from huggingface_hub import constants
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .args import ModelArguments
from .errors import InputError
from .hub import offline_message

logger = logging.getLogger("hf_ft")

# `TimmWrapperConfig.model_type`: compared by name, since importing the class imports timm.
_TIMM_WRAPPER = "timm_wrapper"

# transformers config attributes that hold dropout / drop-path rates, by the timm name we expose.
_DROPOUT_ATTRIBUTES = {
    "drop_rate": ("hidden_dropout_prob", "classifier_dropout", "classifier_dropout_prob", "dropout"),
    "drop_path_rate": ("drop_path_rate",),
}


class offline_hint:
    """Turn 'cannot find it' errors raised while offline into one line that says what to do."""

    def __init__(self, source: str):
        self.source = source

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and isinstance(exc, OSError) and constants.HF_HUB_OFFLINE:
            raise InputError(offline_message(self.source)) from exc
        return False


def set_labels(config: PretrainedConfig, label_names: list[str]) -> None:
    """Size `config`'s head for `label_names` and map ids to names both ways (`id2label`, `label2id`)."""
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    if _is_timm_wrapper(config):
        drop_timm_num_classes(config)
        config.label_names = list(label_names)


def match_labels(config: PretrainedConfig, label_names: Sequence[str]) -> list[str]:
    """Give `config` a head for `label_names`, matched with the checkpoint's own labels by name; return the label
    order the model will use.

    A checkpoint already trained on exactly these names (a continued fine-tune) keeps its head and its order, which
    is returned: re-encode the data to it (`hf_ft.data.labels.reorder_labels`), or its rows would be read under the
    wrong names. Data that adds labels to a checkpoint's (`added_labels`) gets the checkpoint's labels in its order,
    then the new ones: call `keep_head_rows` once the model is loaded. Other names get a head sized and named for
    them, in the data's order (`set_labels`); call `reset_relabelled_head` once the model is loaded.
    """
    saved = saved_label_names(config)
    if len(saved) == len(label_names) and sorted(saved) == sorted(label_names):
        if saved != list(label_names):
            logger.info("The checkpoint was trained on these labels: keeping its order %s", saved[:30])
        return saved
    added = added_labels(saved, label_names)
    set_labels(config, saved + added if added else list(label_names))
    return saved_label_names(config)


def added_labels(saved: Sequence[str], label_names: Sequence[str]) -> list[str]:
    """The labels of `label_names` that a checkpoint trained on `saved` (all of them among `label_names`) lacks, in
    the data's order; empty when the data does not extend the checkpoint's named labels."""
    named = saved and saved != [f"LABEL_{i}" for i in range(len(saved))]
    if not named or not set(saved) < set(label_names):
        return []
    return [name for name in label_names if name not in set(saved)]


def load_for_labels(
    auto_class: type,
    config: PretrainedConfig,
    label_names: Sequence[str],
    model_args: ModelArguments,
    *,
    quantization_config: Any = None,
) -> tuple[PreTrainedModel, list[str]]:
    """`auto_class.from_pretrained` of `model_args`' checkpoint (with `config`, read from it) and a head for
    `label_names`, as every task loads its model: labels matched with the checkpoint's by name (`match_labels`),
    the dropout settings applied, and a head whose rows meant other labels re-initialised (`reset_relabelled_head`).

    Returns:
        The model, and the label order it uses (the checkpoint's own when it was trained on these names).
    """
    source = model_args.model_name_or_path
    saved = saved_label_names(config)
    label_names = match_labels(config, label_names)
    added = added_labels(saved, label_names)
    set_regularisation(config, model_args)
    with offline_hint(source):
        model = auto_class.from_pretrained(
            source,
            config=config,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes or bool(added),
            quantization_config=quantization_config,
            **model_args.hub_kwargs(),
        )
    if added:
        keep_head_rows(model, source, len(saved), model_args.hub_kwargs())
        logger.info("The data adds %d labels to the checkpoint's %d: its head rows are kept, new ones added for %s",
                    len(added), len(saved), added[:30])
    reset_relabelled_head(model, saved)
    return model, label_names


def keep_head_rows(model: PreTrainedModel, source: str, count: int, hub_kwargs: dict[str, Any]) -> None:
    """Copy the first `count` rows (the checkpoint's classes) of each class-sized head weight from the checkpoint
    `source` into `model`'s larger head, which `from_pretrained` re-initialised for its new size: the old classes
    start where training left them, the new ones from the model's initialisation.

    Raises:
        InputError: the checkpoint's files do not hold the head under the model's names.
    """
    head = head_module_name(model)
    if head is None:  # detectors: class weights over several layers, which start fresh at a new class count
        return
    rows = {f"{head}.{name}": parameter for name, parameter in model.get_submodule(head).named_parameters()
            if parameter.shape[0] == model.config.num_labels}
    saved = checkpoint_tensors(source, list(rows), hub_kwargs)
    for name, parameter in rows.items():
        old = saved.get(name)
        if old is None or old.shape[0] != count or old.shape[1:] != parameter.shape[1:]:
            raise InputError(f"{source}: no {count}-row `{name}` in its weights to keep the old classes' head rows "
                             "from; train on its labels, or on the new ones only.")
        with torch.no_grad():
            parameter[:count] = old.to(parameter.dtype)


def checkpoint_tensors(source: str, names: list[str], hub_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors `names` (in-memory parameter names) of a safetensors checkpoint (a dir or a Hub id, sharded or
    not), read without loading the rest. A file may name a tensor without the model's wrapper prefix (TimmWrapper
    saves `fc.weight` for `timm_model.fc.weight`, in timm's layout): the longest saved suffix of a name is taken."""
    from safetensors import safe_open
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

    kwargs = {key: hub_kwargs.get(key) for key in ("revision", "cache_dir", "token")}
    kwargs["_raise_exceptions_for_missing_entries"] = False
    index = cached_file(source, SAFE_WEIGHTS_INDEX_NAME, **kwargs)
    if index is not None:
        file_of = json.loads(Path(index).read_text())["weight_map"]
    else:
        single = cached_file(source, SAFE_WEIGHTS_NAME, **kwargs)
        if single is None:
            return {}
        with safe_open(single, framework="pt") as weights:
            file_of = dict.fromkeys(weights.keys(), SAFE_WEIGHTS_NAME)
    saved_name = {}
    for name in names:
        parts = name.split(".")
        saved_name[name] = next((".".join(parts[i:]) for i in range(len(parts)) if ".".join(parts[i:]) in file_of),
                                None)
    tensors = {}
    for name, key in saved_name.items():
        if key is not None:
            with safe_open(cached_file(source, file_of[key], **kwargs), framework="pt") as weights:
                tensors[name] = weights.get_tensor(key)
    return tensors


def saved_label_names(config: PretrainedConfig) -> list[str]:
    """The label names a checkpoint's config records, by id (transformers' `LABEL_<i>` when it names none)."""
    return [str(config.id2label[i]) for i in range(len(config.id2label))] if config.id2label else []


def reset_relabelled_head(model: PreTrainedModel, saved: Sequence[str]) -> None:
    """Re-initialise the head of a checkpoint whose head had as many rows as the new labels but other names
    (`saved`, as `saved_label_names` read them before `match_labels`): `from_pretrained` keeps weights whose shape
    fits, and those rows mean other classes. Heads of another size are re-initialised by `ignore_mismatched_sizes`."""
    names = saved_label_names(model.config)
    if len(saved) != len(names) or sorted(saved) == sorted(names) or saved == [f"LABEL_{i}" for i in range(len(saved))]:
        return
    head = head_module_name(model)
    if head is None:  # detectors spread their classes over several layers (decoder, encoder, denoising embeddings)
        logger.info("New labels for the checkpoint's %d classes: %s's class weights start from the old classes' and "
                    "are trained for the new ones", len(names), type(model).__name__)
        return
    logger.info("New labels for the checkpoint's %d-class head: re-initialising `%s`", len(names), head)
    for module in model.get_submodule(head).modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def drop_timm_num_classes(config: PretrainedConfig) -> None:
    """Make a timm `save_for_hf` config loadable by transformers' TimmWrapper (a no-op for other configs)."""
    # timm 1.0.3x `save_for_hf` records num_classes in model_args as well; TimmWrapper passes both to
    # timm.create_model, which then fails with "got multiple values for keyword argument 'num_classes'".
    if _is_timm_wrapper(config):
        config.model_args = {k: v for k, v in (config.model_args or {}).items() if k != "num_classes"}


def _is_timm_wrapper(config: PretrainedConfig) -> bool:
    return getattr(config, "model_type", None) == _TIMM_WRAPPER


def set_regularisation(config: PretrainedConfig, model_args: ModelArguments) -> None:
    """Put `--drop_rate`/`--drop_path_rate` where the model family reads them (timm's `model_args` for TimmWrapper).

    Raises:
        InputError: the config has no attribute for a rate the user set.
    """
    for name in ("drop_rate", "drop_path_rate"):
        value = getattr(model_args, name)
        if value is None:
            continue
        if _is_timm_wrapper(config):
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


# Head attribute names of transformers classifiers (`score` for decoder-only sequence classifiers).
HEAD_NAMES = ("classifier", "score")
# Layers a transformers classification class puts between the backbone and its head that the pre-trained checkpoints
# do not hold (DistilBERT's `pre_classifier`): as new as the head, so they train with it, or head-only training would
# keep them at their random initialisation (PEFT's SEQ_CLS task type already trains and saves them with an adapter).
NEW_LAYERS_BEFORE_HEAD = ("pre_classifier",)


def head_module_name(model: PreTrainedModel, names: Sequence[str] = HEAD_NAMES) -> str | None:
    """Name (in `model.named_modules()`) of the prediction head, or None for a model without one.

    The first of `names` (attribute names, given by the task) that is a module of `model`; timm models
    (transformers' TimmWrapper) name theirs through timm's `get_classifier()` (`timm_model.fc`,
    `timm_model.head.fc`, ...).

    Raises:
        InputError: a `...Classification` model whose head is not found (its new head would not be trained).
    """
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        head = timm_model.get_classifier()
        return next(name for name, module in model.named_modules() if module is head)
    for name in names:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    if "Classification" in type(model).__name__:
        raise InputError(
            f"Cannot find the classification head of {type(model).__name__} (none of {tuple(names)}); "
            "name it in --modules_to_save."
        )
    return None


def new_head_module_names(model: PreTrainedModel) -> list[str]:
    """The head (`head_module_name`) and the new layers in front of it (`NEW_LAYERS_BEFORE_HEAD`) the model has."""
    head = head_module_name(model)
    if head is None:
        return []
    return [name for name in NEW_LAYERS_BEFORE_HEAD if isinstance(getattr(model, name, None), nn.Module)] + [head]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def log_model_size(model: nn.Module) -> tuple[int, int]:
    """Log the model's class and its trainable and total parameter counts; return the counts (`count_parameters`)."""
    trainable, total = count_parameters(model)
    logger.info(
        "Model %s: %s trainable of %s parameters (%.1f%%)",
        type(model).__name__, f"{trainable:,}", f"{total:,}", 100 * trainable / total,
    )
    return trainable, total
