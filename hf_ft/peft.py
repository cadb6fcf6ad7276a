"""PEFT adapters for classifiers: build the config from `PeftArguments`, wrap the model, save, merge, reload.

Every recipe uses the same four calls: `apply_peft` after loading the model, `save_adapter` (and, if asked,
`save_merged`) after training, `load_adapter_model` to get the trained model back. Works for transformers
classifiers and timm models loaded through transformers' TimmWrapper.

Rules this module enforces, because PEFT alone gets them wrong for a freshly replaced head:
- The classification head is always in `modules_to_save`: trained in full, saved with the adapter, restored on
  reload (peft #577/#1070), and never itself given an adapter (peft #2027: `all-linear` caught the head).
- Every BatchNorm layer is in `modules_to_save` too: their running statistics change during training, and a
  reloaded model would otherwise use the base model's statistics and give other logits.
- `target_modules: [auto]` picks every Linear and (non-grouped) Conv2d inside the backbone's blocks, read from
  the model's own `named_modules()`; the stem/patch embedding and the head are left out.
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
from pathlib import Path
from typing import Callable

import torch
from peft import (
    IA3Config,
    LoHaConfig,
    LoKrConfig,
    LoraConfig,
    OFTConfig,
    PeftConfig,
    PeftModel,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils import ModulesToSaveWrapper
import transformers
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D
from transformers.utils import CONFIG_NAME

from .args import ModelArguments, PeftArguments
from .errors import InputError
from .hub import check_model_source
from .models import head_module_name, new_head_module_names, offline_hint, set_labels

logger = logging.getLogger(__name__)

# PEFT task types (`task_type`) and the transformers Auto class that builds their base model, as PEFT's own
# AutoPeftModelFor... classes pair them.
_AUTO_CLASS_OF_TASK_TYPE = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}

SUPPORTED_METHODS: dict[str, type[PeftConfig]] = {
    "lora": LoraConfig,
    "loha": LoHaConfig,
    "lokr": LoKrConfig,
    "ia3": IA3Config,
    "oft": OFTConfig,
}

# The PEFT methods that adapt transformers' `Conv1D` (GPT-2's linear layers).
_CONV1D_METHODS = ("lora", "ia3")
# A `target_modules` entry with any of these characters is a regex (the dot is not: `output.dense` is a suffix).
_REGEX_CHARS = set("^$*+?[](){}|\\")


def quantization_config(peft_args: PeftArguments):
    """The `BitsAndBytesConfig` for QLoRA (4-bit NF4, double quantization, bf16 compute), or None without it.

    Pass the result as `quantization_config=` to `from_pretrained`; `apply_peft` then prepares the 4-bit model.

    Raises:
        InputError: `load_in_4bit` is set but there is no CUDA GPU or bitsandbytes is not installed.
    """
    if not peft_args.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise InputError(
            "QLoRA needs a CUDA GPU and bitsandbytes; no CUDA GPU is available here. "
            "Remove --load_in_4bit to train a plain (unquantized) adapter."
        )
    try:
        import bitsandbytes  # noqa: F401  (optional: only QLoRA needs it)
    except ImportError:
        raise InputError(
            "QLoRA needs a CUDA GPU and bitsandbytes; bitsandbytes is not installed. "
            "Run `pip install bitsandbytes`, or remove --load_in_4bit."
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def auto_target_modules(model: PreTrainedModel, peft_method: str = "lora") -> list[str]:
    """Adapter targets chosen from the model's own modules: every Linear and Conv2d inside the backbone's blocks.

    The backbone's blocks are, for transformers models, the outermost `ModuleList`s (`vit.layers`,
    `bert.encoder.layer`, `model.layers`, `convnext.encoder.stages`); for timm models everything outside timm's
    own stem group (`group_matcher()["stem"]`) and the head. So the head, the pooler, and the stem/patch embedding
    (few input channels, nothing to gain) get no adapter. Grouped (depthwise) convolutions are skipped: their
    weights are tiny and PEFT cannot merge adapters on them. OFT takes only 1x1 convolutions (see `_adaptable`).

    Returns the shortest module-name suffixes that select exactly those modules, e.g. ViT
    `[fc1, fc2, k_proj, o_proj, q_proj, v_proj]`, BERT `[intermediate.dense, key, output.dense, query, value]`
    (`dense` alone would also catch the pooler), timm ResNet `[0.conv1, conv2, conv3, downsample.1]`.

    Raises:
        InputError: the model has no recognisable blocks, or none of their layers can take an adapter.
    """
    modules = dict(model.named_modules())
    inside = _backbone_filter(model)
    in_blocks = {name: module for name, module in modules.items() if inside(name)}
    # PEFT 0.21's OFT takes every 4-D input for a conv feature map, so it breaks Linear layers that convnets
    # (ConvNeXt's pointwise `pwconv`/`mlp.fc`) run on channels-last maps: in convnets OFT adapts convs only.
    skip_linear = peft_method == "oft" and any(isinstance(m, nn.Conv2d) for m in in_blocks.values())
    chosen = {
        name
        for name, module in in_blocks.items()
        if _adaptable(module, peft_method) and not (skip_linear and isinstance(module, nn.Linear))
    }
    if not chosen:
        oft_note = " (OFT adapts only Linear layers and 1x1 convolutions, and in convnets only the latter)"
        raise InputError(
            f"Found no layer in the blocks of {type(model).__name__} to put a {peft_method} adapter on"
            f"{oft_note if peft_method == 'oft' else ''}; pick another --peft_method, or set --target_modules to "
            "module names (see model.named_modules())."
        )
    return sorted(_shortest_suffixes(list(modules), chosen))


def build_peft_config(model: PreTrainedModel, peft_args: PeftArguments, task_type: str | None = None) -> PeftConfig:
    """The PEFT config for `peft_args.peft_method` on `model`, head and BatchNorm layers in `modules_to_save`.

    `task_type` is PEFT's name for the task ("SEQ_CLS", "TOKEN_CLS", ...; None where PEFT has none, as for images):
    PEFT then wraps the model in the matching `PeftModelFor...`, which passes `labels` through to the model.

    Knobs: `lora_r` is the rank (`r`) for lora/loha/lokr and the number of blocks (`r`) per layer for OFT (PEFT
    derives the block size, in_features / r, and rounds r to a divisor of in_features when it is not one);
    `lora_alpha` is the scaling numerator, `lora_dropout` the adapter dropout (lora) or module dropout
    (loha/lokr). IA3 rescales the inputs, not the outputs, of down-projections (in > out features: `fc2`,
    `output.dense`, `down_proj`, the IA3 paper's feed-forward case) and the outputs of every other target.

    Raises:
        InputError: unknown method, targets that match nothing, or a config PEFT refuses.
    """
    method = _check_method(peft_args.peft_method)
    targets = _resolve_targets(model, peft_args.target_modules, method)
    kwargs = {
        "target_modules": targets,
        "modules_to_save": _modules_to_save(model, peft_args.modules_to_save),
        "task_type": task_type,
    }
    if method in _CONV1D_METHODS and any(
        isinstance(module, Conv1D) and _matches(name, targets) for name, module in model.named_modules()
    ):
        kwargs["fan_in_fan_out"] = True  # GPT-2's Conv1D stores its weight as (in, out)
    if method == "lora":
        kwargs.update(
            r=peft_args.lora_r,
            lora_alpha=peft_args.lora_alpha,
            lora_dropout=peft_args.lora_dropout,
            use_dora=peft_args.use_dora,
            use_rslora=peft_args.use_rslora,
            init_lora_weights=_init_lora_weights(peft_args.init_lora_weights),
        )
    elif method in ("loha", "lokr"):
        kwargs.update(r=peft_args.lora_r, alpha=peft_args.lora_alpha, module_dropout=peft_args.lora_dropout)
    elif method == "oft":
        # r and oft_block_size are exclusive in PEFT 0.21; oft_block_size defaults to 32 and must be zeroed.
        kwargs.update(r=peft_args.lora_r, oft_block_size=0)
    elif method == "ia3":
        kwargs["target_modules"], kwargs["feedforward_modules"] = _ia3_modules(model, targets)
    try:
        config = SUPPORTED_METHODS[method](**kwargs)
    except ValueError as error:
        raise InputError(f"PEFT refused the {method} settings: {error}") from error
    config.base_model_name_or_path = _resolvable(model.name_or_path) or None
    return config


def apply_peft(model: PreTrainedModel, peft_args: PeftArguments, task_type: str | None = None) -> PeftModel:
    """Wrap `model` with the adapter `peft_args` asks for; only adapter, head and BatchNorm weights train.

    `task_type`: see `build_peft_config`.

    Logs the target modules and the trainable parameter count and share. A 4-bit (QLoRA) model is first
    prepared with PEFT's `prepare_model_for_kbit_training`; gradient checkpointing stays TrainingArguments'
    switch.

    Raises:
        InputError: see `build_peft_config`, or a setting PEFT refuses when wrapping (e.g. an unknown
            `init_lora_weights`).
    """
    config = build_peft_config(model, peft_args, task_type)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as error:
        raise InputError(f"Cannot apply {peft_args.peft_method} to {type(model).__name__}: {error}") from error
    trainable, total = peft_model.get_nb_trainable_parameters()
    # What PEFT really wraps: it adds its task type's default names ("classifier", "score") to modules_to_save,
    # whether the model has them or not.
    saved = {name.split("base_model.model.", 1)[-1] for name, module in peft_model.named_modules()
             if isinstance(module, ModulesToSaveWrapper)}
    logger.info(
        "PEFT %s on %s; also trained in full: %s",
        peft_args.peft_method, _as_text(config.target_modules), _as_text(saved),
    )
    logger.info("Trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return peft_model


def adapter_size_bytes(adapter_dir: str | Path) -> int:
    """Size on disk of the adapter files PEFT writes (`adapter_model.safetensors`, `adapter_config.json`).

    Only those: a recipe's output_dir also holds checkpoints and the report, which are not the adapter.
    """
    return sum(path.stat().st_size for path in Path(adapter_dir).glob("adapter_*") if path.is_file())


def save_adapter(model: PeftModel, output_dir: str | Path) -> None:
    """Save the adapter only: adapter weights plus head and BatchNorm layers, and `adapter_config.json`.

    `adapter_config.json` names the base checkpoint (`base_model_name_or_path`), so `load_adapter_model` can
    rebuild the model from the folder alone.
    """
    model.save_pretrained(str(output_dir))


def save_merged(model: PeftModel, output_dir: str | Path) -> None:
    """Save a plain model (no PEFT needed to load it) with the adapter merged into the base weights.

    Merges a copy, so `model` stays a usable PeftModel (merge_and_unload changes the model in place). The
    caller saves the image processor or tokenizer beside it.
    """
    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(str(output_dir))


def load_adapter_model(
    base_model_name_or_path: str | None, adapter_dir: str | Path, label_names: list[str] | None = None, **load_kwargs
) -> PeftModel:
    """Rebuild the base model with a head for `label_names` and load the trained adapter onto it.

    The base model's class (its head) is the one the adapter was trained on, recorded by PEFT in
    `adapter_config.json`, so this works for every task.

    Args:
        base_model_name_or_path: the base checkpoint; None takes the one recorded in `adapter_config.json`.
        adapter_dir: a folder written by `save_adapter`.
        label_names: the labels the adapter was trained with, in order; None reads them from the `config.json` the
            recipes save beside the adapter.
        load_kwargs: further `ModelArguments` fields (`cache_dir`, `token`, `trust_remote_code`, ...).

    Returns the PeftModel in eval mode; its head and BatchNorm layers are the trained ones.

    Raises:
        InputError: no base checkpoint is given or recorded; FileNotFoundError: it does not exist.
    """
    peft_config = PeftConfig.from_pretrained(str(adapter_dir))
    if base_model_name_or_path is None:
        base_model_name_or_path = peft_config.base_model_name_or_path
        if not base_model_name_or_path:
            raise InputError(f"{adapter_dir}/adapter_config.json names no base model; pass base_model_name_or_path.")
    if label_names is None:
        try:  # a local folder or a Hub repo
            config = AutoConfig.from_pretrained(str(adapter_dir))
        except (OSError, ValueError):
            raise InputError(f"{adapter_dir} holds no {CONFIG_NAME} with the label names; pass label_names.") from None
        label_names = [config.id2label[i] for i in range(config.num_labels)]
    model_class = _base_model_class(peft_config, adapter_dir)
    model_args = ModelArguments(model_name_or_path=base_model_name_or_path, **load_kwargs)
    source = model_args.model_name_or_path
    check_model_source(source, revision=model_args.model_revision, cache_dir=model_args.cache_dir)
    hub_kwargs = model_args.hub_kwargs()
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        set_labels(config, label_names)
        base = model_class.from_pretrained(
            source, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub_kwargs
        )
    return PeftModel.from_pretrained(base, str(adapter_dir))


def load_trained(
    source: str, load_full: Callable[..., PreTrainedModel], **load_kwargs
) -> tuple[PreTrainedModel, str]:
    """What an hf_ft run saved, for inference: an adapter-only dir as its adapter on the recorded base
    (`load_adapter_model`), anything else through `load_full(source, **load_kwargs)`; and which it was
    ("adapter" or "model").

    Raises:
        FileNotFoundError / InputError: the checkpoint (or the adapter's base) cannot be found; offline, not cached.
    """
    check_model_source(source, cache_dir=load_kwargs.get("cache_dir"))
    with offline_hint(source):
        if (Path(source) / "adapter_config.json").is_file():
            return load_adapter_model(None, source, **load_kwargs).eval(), "adapter"
        return load_full(source, **load_kwargs).eval(), "model"


def _base_model_class(peft_config: PeftConfig, adapter_dir: str | Path) -> type[PreTrainedModel]:
    """The class the adapter was trained on: PEFT's `task_type` names its Auto class; without one, PEFT records the
    class itself (`auto_mapping`)."""
    if peft_config.task_type in _AUTO_CLASS_OF_TASK_TYPE:
        return getattr(transformers, _AUTO_CLASS_OF_TASK_TYPE[peft_config.task_type])
    auto_mapping = getattr(peft_config, "auto_mapping", None)
    if not auto_mapping:
        raise InputError(
            f"{adapter_dir}/adapter_config.json records no base model class (`auto_mapping`, `task_type`); load the "
            "base model with its head yourself and call peft.PeftModel.from_pretrained(base, adapter_dir)."
        )
    return getattr(importlib.import_module(auto_mapping["parent_library"]), auto_mapping["base_model_class"])


def _resolvable(name_or_path: str) -> str:
    """A local checkpoint as an absolute path, so `adapter_config.json` finds it from any working directory; a Hub id
    as it is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if name_or_path and path.exists() else name_or_path


def _check_method(peft_method: str | None) -> str:
    if peft_method not in SUPPORTED_METHODS:
        raise InputError(
            f"Unknown --peft_method {peft_method!r}; supported: {', '.join(SUPPORTED_METHODS)}."
        )
    return peft_method


def _init_lora_weights(value: str) -> bool | str:
    """YAML/CLI strings to what LoraConfig wants: `true`/`false` as booleans, named schemes as they are."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return value


def _resolve_targets(model: PreTrainedModel, target_modules: list[str], method: str) -> list[str] | str:
    """`[auto]` → chosen from the model; one entry with regex characters → that regex; else the list as given."""
    if target_modules == ["auto"]:
        return auto_target_modules(model, method)
    is_regex = len(target_modules) == 1 and bool(_REGEX_CHARS & set(target_modules[0]))
    targets = target_modules[0] if is_regex else list(target_modules)
    names = [name for name, _ in model.named_modules()]
    if not any(_matches(name, targets) for name in names):
        layers = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if _adaptable(m, method)})
        raise InputError(
            f"--target_modules {targets} matches no module of {type(model).__name__}. Its adaptable layer names "
            f"are {layers}; or use `auto`."
        )
    return targets


def _modules_to_save(model: PreTrainedModel, extra: list[str]) -> list[str]:
    """The head's layers (and the new ones in front of it), every BatchNorm layer, and the user's extra modules."""
    modules = dict(model.named_modules())
    chosen = {name for name, module in modules.items() if isinstance(module, nn.modules.batchnorm._BatchNorm)}
    for head in new_head_module_names(model):
        # The head's layers that hold weights, not a container around them (transformers ResNet's
        # `classifier` is Sequential(Flatten, Linear)): PEFT's merge_and_unload for loha/lokr/ia3/oft reads
        # `.weight` from every saved module and fails on a Sequential.
        chosen |= {
            name
            for name, module in modules.items()
            if (name == head or name.startswith(f"{head}.")) and any(True for _ in module.parameters(recurse=False))
        }
    return sorted(_shortest_suffixes(list(modules), chosen)) + [name for name in extra if name not in chosen]


def _ia3_modules(model: PreTrainedModel, targets: list[str] | str) -> tuple[list[str], list[str]]:
    """IA3 (target_modules, feedforward_modules): feed-forward = targets that project down (in > out features).

    Both come back as suffix lists built from the matched module names, because PEFT requires
    feedforward_modules to be a subset of target_modules.
    """
    modules = dict(model.named_modules())
    matched = {name for name in modules if _matches(name, targets) and _adaptable(modules[name], "ia3")}
    feedforward = {name for name in matched if _in_out_features(modules[name])[0] > _in_out_features(modules[name])[1]}
    names = list(modules)
    feedforward_suffixes = _shortest_suffixes(names, feedforward)
    return sorted(_shortest_suffixes(names, matched - feedforward) | feedforward_suffixes), sorted(feedforward_suffixes)


def _matches(name: str, targets: list[str] | str) -> bool:
    """PEFT's target rule: a string is a regex (full match), a list matches whole names or dotted suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == target or name.endswith(f".{target}") for target in targets)


def _backbone_filter(model: PreTrainedModel):
    """A predicate on module names: is this module inside the backbone's blocks (not stem, not head)?"""
    head = head_module_name(model)

    def outside_head(name: str) -> bool:
        return head is None or not (name == head or name.startswith(f"{head}."))

    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        stem = _timm_stem_patterns(timm_model)
        return lambda name: (
            name.startswith("timm_model.")
            and outside_head(name)
            and not any(re.match(p, name[len("timm_model.") :]) for p in stem)
        )
    lists = [name for name, module in model.named_modules() if isinstance(module, nn.ModuleList)]
    outermost = [name for name in lists if not any(name.startswith(f"{other}.") for other in lists)]
    if not outermost:
        raise InputError(
            f"Cannot choose adapter targets for {type(model).__name__}: it has no ModuleList of blocks. "
            "Set --target_modules to module names (see model.named_modules())."
        )
    return lambda name: outside_head(name) and any(name.startswith(f"{blocks}.") for blocks in outermost)


def _timm_stem_patterns(timm_model: nn.Module) -> list[str]:
    """Regexes for timm's stem group (`^conv1|bn1|maxpool`, `^stem`, `^patch_embed|...`); empty if it has none."""
    if not hasattr(timm_model, "group_matcher"):
        return []
    stem = timm_model.group_matcher(coarse=True).get("stem")
    if stem is None:
        return []
    if isinstance(stem, str):
        return [stem]
    return [pattern for pattern, _ in stem]  # timm's other form: [(regex, ordinal), ...]


def _adaptable(module: nn.Module, method: str) -> bool:
    """Linear, or a non-grouped Conv2d; for OFT only 1x1 Conv2d; for LoRA and IA3 also transformers' `Conv1D`.

    PEFT 0.21's unmerged OFT Conv2d rotates unfolded, overlapping input patches: for kernels above 1x1 it
    disagrees with its own merged weights, and it fails outright on feature maps smaller than the kernel.
    `Conv1D` is the Linear layer of the GPT-2 family (weights stored transposed): PEFT adapts it for LoRA and IA3
    only (`fan_in_fan_out`); LoHa, LoKr and OFT refuse it.
    """
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, Conv1D):
        return method in _CONV1D_METHODS
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return method != "oft" or tuple(module.kernel_size) == (1, 1)
    return False


def _in_out_features(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    if isinstance(module, Conv1D):
        return tuple(module.weight.shape)  # (in, out): stored transposed
    return module.in_features, module.out_features


def _shortest_suffixes(all_names: list[str], chosen: set[str]) -> set[str]:
    """For each chosen module, the shortest dotted suffix of its name that selects only chosen modules.

    Selection is tested with a plain `endswith` (no dot), the loosest rule PEFT applies (modules_to_save,
    IA3 feed-forward), so the suffixes are exact under every PEFT matching rule. A name no suffix isolates is
    kept whole.
    """
    suffixes = set()
    for name in chosen:
        parts = name.split(".")
        for length in range(1, len(parts) + 1):
            suffix = ".".join(parts[-length:])
            if all(other in chosen for other in all_names if other.endswith(suffix)):
                break
        suffixes.add(suffix)
    return suffixes


def _as_text(names) -> str:
    return names if isinstance(names, str) else ", ".join(sorted(names or []))
