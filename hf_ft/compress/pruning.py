"""Pruning of fine-tuned image classifiers: zeros in the weights (unstructured) or a truly smaller model (structured).

Unstructured: L1-magnitude pruning with `torch.nn.utils.prune` sets the smallest Conv/Linear weights to zero.
The masks stay attached, so a fine-tune between pruning steps keeps the pruned weights at zero;
`make_permanent` folds them into the plain weights before saving. Shapes do not change, so the result saves
and loads like any checkpoint.

Structured: torch-pruning (DepGraph) removes whole channels of convnets, MLP neurons and per-head attention
dimensions of transformers, until the model has at most a target number of parameters. Its config.json
still describes the unpruned architecture, so `save_pruned` records every tensor shape and module size
attribute that differs from what the config builds (`pruned_structure` in config.json), and
`load_saved_classifier` (via `load_pruned_weights`) builds the architecture from the config,
shrinks it as recorded and loads the weights strictly. `from_pretrained` alone cannot load such a checkpoint (transformers 5 has no
`pruned_heads`; the config has no per-layer widths) and must not be used with `ignore_mismatched_sizes`,
which would re-initialise every pruned layer.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_model, save_model
from torch import nn
from torch.nn.utils import prune
from transformers import AutoConfig, AutoModelForImageClassification, BaseImageProcessor, PretrainedConfig, PreTrainedModel

from ..errors import InputError
from ..hub import check_model_source
from ..models import count_parameters, drop_timm_num_classes, head_module_name, offline_hint
from ..vision.models import load_image_processor

logger = logging.getLogger(__name__)

_PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_SCOPES = ("global", "layer")

# config.json attribute that records how a structurally pruned model differs from what its config builds.
_STRUCTURE_KEY = "pruned_structure"
_WEIGHTS_NAME = "model.safetensors"

# Structured pruning removes 1% of every prunable group's channels per step, so it stops within about 2% of
# the total parameter count below its target; 95% is as far as it goes (a layer keeps at least 5%).
_MAX_CHANNEL_RATIO = 0.95
_STEPS = 95
# check_structured_support removes this share of every group's channels on a copy, so every group is cut.
_TRIAL_RATIO = 0.25
# Operations that mix channels across tokens as attention does (grad_fn names, lower case): channels that
# flow through them belong to attention heads, which are pruned only where the head layout is known.
_ATTENTION_OPS = ("scaleddotproduct", "bmm", "softmax")
# Normalisations across channels: removing a channel changes the statistics of all the others.
_CROSS_CHANNEL_NORMS = (nn.LayerNorm, nn.GroupNorm)


# ---------------------------------------------------------------- unstructured


def check_sparsity(sparsities: Sequence[float]) -> None:
    """Check pruning targets before any work: each in [0, 1), strictly increasing (each step prunes further).

    Raises:
        InputError: the list is empty, a value is outside [0, 1), or a value does not exceed the one before.
    """
    if not sparsities:
        raise InputError("No pruning sparsity given: set --pruning_sparsities to targets in [0, 1), e.g. [0.3, 0.5].")
    for value in sparsities:
        if not 0 <= value < 1:
            raise InputError(
                f"Pruning sparsity {value} is not in [0, 1) (the share of weights removed); use e.g. 0.5 for half."
            )
    for previous, value in zip(sparsities, sparsities[1:]):
        if value <= previous:
            raise InputError(
                f"Pruning sparsities must increase: {value} follows {previous} in {list(sparsities)}; sort them and "
                "drop duplicates."
            )


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear layers whose weights pruning removes: all but the classification head.

    The head is kept whole: it has one row per class and few weights, and each of them carries class evidence
    directly, so pruning it costs accuracy for almost no saving (structured pruning could not shrink its
    outputs anyway: they are the classes).
    """
    head = head_module_name(model)
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, _PRUNABLE_TYPES) and not _is_within(name, head)
    ]


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros among the weights of `prunable_weights(model)`, with or without masks attached."""
    # With a mask attached, `weight` is the masked weight of the last forward pass: its zeros are the mask's.
    weights = [module.weight for _, module in prunable_weights(model)]
    return sum(int((weight == 0).sum()) for weight in weights) / sum(weight.numel() for weight in weights)


def prune_unstructured(model: nn.Module, sparsity: float, *, scope: str = "global") -> None:
    """Set the smallest-magnitude weights of `prunable_weights(model)` to zero, in place, with masks attached.

    `scope="global"` ranks all weights together (one threshold, so layers end up with different sparsities);
    `"layer"` prunes each layer to `sparsity`. On a model pruned before (masks attached or made permanent),
    `sparsity` is the new total: the weights already at zero count towards it.

    Args:
        model: the model; a fine-tune after this keeps the pruned weights at zero (the masks are re-applied
            in every forward pass) until `make_permanent`.
        sparsity: share of the prunable weights set to zero, in [0, 1).
        scope: `global` or `layer`.

    Raises:
        InputError: an unknown scope, a sparsity outside [0, 1), or one below what the masks already prune.
    """
    if scope not in _SCOPES:
        raise InputError(f"Unknown pruning scope {scope!r}; use one of {list(_SCOPES)}.")
    check_sparsity([sparsity])
    modules = [module for _, module in prunable_weights(model)]
    if scope == "global":
        amount = _additional_zeros(modules, sparsity)
        prune.global_unstructured([(module, "weight") for module in modules], prune.L1Unstructured, amount=amount)
    else:
        for module in modules:
            prune.l1_unstructured(module, "weight", amount=_additional_zeros([module], sparsity))


def make_permanent(model: nn.Module) -> None:
    """Fold every pruning mask into its plain parameter, so `save_pretrained` writes the zeros under the usual names."""
    for module, hook in _pruning_masks(model):
        prune.remove(module, hook._tensor_name)


def _pruning_masks(model: nn.Module) -> list[tuple[nn.Module, prune.BasePruningMethod]]:
    # torch.nn.utils.prune keeps each mask's method as a forward pre-hook of its module (as prune.is_pruned reads it).
    return [
        (module, hook)
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, prune.BasePruningMethod)
    ]


def _is_within(name: str, parent: str | None) -> bool:
    return parent is not None and (name == parent or name.startswith(parent + "."))


def _additional_zeros(modules: list[nn.Module], sparsity: float) -> int:
    """How many more weights to prune so `sparsity` of all of them are pruned.

    torch's pruning methods apply `amount` to the weights the attached masks have not pruned yet, so the
    weights they already prune are subtracted.
    """
    total = sum(module.weight.numel() for module in modules)
    masked = sum(int((module.weight_mask == 0).sum()) for module in modules if hasattr(module, "weight_mask"))
    amount = round(sparsity * total) - masked
    if amount < 0:
        raise InputError(
            f"Pruning sparsity {sparsity} is below the {masked / total:.4f} the model is already pruned to; "
            "give a higher target."
        )
    return amount


# ---------------------------------------------------------------- structured


def check_structured_support(model: PreTrainedModel, example_inputs: torch.Tensor) -> None:
    """Fail fast, before any long work, if torch-pruning cannot prune `model` structurally.

    Traces the model into torch-pruning's dependency graph and removes a quarter of every prunable group's
    channels from a copy, which then has to run on `example_inputs` and give logits of the same shape.

    Args:
        model: the classifier to prune (not modified).
        example_inputs: a batch of pixel values as the model's image processor makes them.

    Raises:
        InputError: torch-pruning cannot trace or prune the model, the pruned copy does not run, or nothing in
            it can be pruned; the message suggests `pruning_method: unstructured`.
    """
    _torch_pruning()
    trial = copy.deepcopy(model)
    with torch.no_grad():
        expected = _logits(model, example_inputs).shape
    try:
        pruner, heads = _pruner(trial, example_inputs, ratio=_TRIAL_RATIO, steps=1)
        pruner.step()
        _update_head_dims(heads)
        with torch.no_grad():
            shape = _logits(trial, example_inputs).shape
    # torch-pruning reports an operation or layer it cannot handle with assorted exception types.
    except Exception as exc:
        raise InputError(
            f"Structured pruning cannot handle {type(model).__name__} ({_first_line(exc)}); "
            "use `pruning_method: unstructured`."
        ) from exc
    if shape != expected:
        raise InputError(
            f"Structured pruning changes the output of {type(model).__name__} from {tuple(expected)} to "
            f"{tuple(shape)}; use `pruning_method: unstructured`."
        )
    if count_parameters(trial)[1] == count_parameters(model)[1]:
        raise InputError(
            f"Structured pruning finds no channel it can remove in {type(model).__name__}; "
            "use `pruning_method: unstructured`."
        )


def prune_structured(model: PreTrainedModel, target_parameters: int, example_inputs: torch.Tensor) -> None:
    """Remove whole channels, in place, until the model has at most `target_parameters` parameters.

    torch-pruning's DepGraph finds the layers coupled to each channel (the BatchNorm after a conv, the next
    layer's inputs, residual additions, depthwise convs) and removes them together, ranked by their L2
    magnitude (GroupMagnitudeImportance). Every group loses the same share of its channels per step (1%), so
    the model stays balanced and the result lands within about 2% of the total below the target. What is
    pruned:

    - convnets: the channels of every conv (and its BatchNorm), depthwise and residual ones included;
    - transformers: MLP neurons, and per-head dimensions of attention written the transformers 5 way
      (`q_proj`/`k_proj`/`v_proj` with `head_dim`), each head keeping the same dimensions. Whole heads are
      not removed: torch-pruning 1.6 removes ceil(ratio x remaining heads) at every iterative step, which
      compounds. Attention it does not know the head layout of (timm's fused `qkv`) is left whole;
    - never: the head's outputs (the classes), and channels normalised by LayerNorm/GroupNorm (a ViT's
      embedding width), since removing one changes the statistics every other channel is normalised with.

    Args:
        model: the classifier; it keeps its training mode.
        target_parameters: the most parameters the pruned model may have.
        example_inputs: a batch of pixel values, for tracing.

    Raises:
        InputError: the target is below what the head alone needs, or below the smallest model pruning
            reaches (the model is then left at that smallest size).
    """
    _, total = count_parameters(model)
    head = head_module_name(model)
    head_parameters = sum(p.numel() for p in model.get_submodule(head).parameters()) if head else 0
    if target_parameters < head_parameters:
        raise InputError(
            f"Target of {target_parameters} parameters is below the {head_parameters} of the classification head "
            "alone, which structured pruning keeps; use a lower pruning sparsity."
        )
    if total <= target_parameters:
        return
    training = model.training
    pruner, heads = _pruner(model, example_inputs, ratio=_MAX_CHANNEL_RATIO, steps=_STEPS)
    for _ in range(_STEPS):
        pruner.step()
        if count_parameters(model)[1] <= target_parameters:
            break
    _update_head_dims(heads)
    model.train(training)
    reached = count_parameters(model)[1]
    logger.info("Structured pruning: %d -> %d parameters (target %d)", total, reached, target_parameters)
    if reached > target_parameters:
        raise InputError(
            f"Structured pruning cannot bring {type(model).__name__} to {target_parameters} parameters: it stops "
            f"at {reached} ({reached / total:.1%} of {total}); use a lower pruning sparsity."
        )


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise InputError(
            "Structured pruning needs torch-pruning: pip install -e '.[compress]', "
            "or use `pruning_method: unstructured`."
        ) from None
    return torch_pruning


def _logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    # Example inputs come from the CPU; a model fine-tuned between pruning steps may be on a GPU.
    return model(pixel_values=pixel_values.to(model.device)).logits


def _pruner(model: PreTrainedModel, example_inputs: torch.Tensor, *, ratio: float, steps: int) -> tuple[Any, dict]:
    """A torch-pruning pruner that reaches `ratio` of every prunable group's channels in `steps` steps.

    Returns:
        The pruner and the attention modules whose head dimensions it prunes (module -> q/k/v layers).
    """
    tp = _torch_pruning()
    heads = _attention_heads(model)
    num_heads = {layer: _num_heads(module) for module, layers in heads.items() for layer in layers}
    kept = _kept_layers(model, example_inputs, num_heads)
    training = model.training
    with warnings.catch_warnings():
        # A ViT's class token and position embeddings are parameters outside any layer; torch-pruning warns
        # that it will prune them along the embedding width, which `_kept_layers` keeps whole.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=kept,
            num_heads=num_heads,
            prune_head_dims=True,
            prune_num_heads=False,
            forward_fn=_logits,
        )
    model.train(training)  # tracing puts the model in eval mode
    return pruner, heads


def _kept_layers(
    model: PreTrainedModel, example_inputs: torch.Tensor, num_heads: dict[nn.Module, int]
) -> list[nn.Module]:
    """The layers whose output channels structured pruning keeps: the head, and every layer of a group that
    is normalised across channels or flows through attention whose head layout is not known."""
    tp = _torch_pruning()
    head_name = head_module_name(model)
    kept = [model.get_submodule(head_name)] if head_name else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs, forward_fn=_logits)
    for group in graph.get_all_groups(ignored_layers=list(kept), root_module_types=_PRUNABLE_TYPES):
        targets = [dep.target for dep, _ in group]
        normalised = any(isinstance(node.module, _CROSS_CHANNEL_NORMS) for node in targets)
        # Attention is pruned only where its head layout is known, and not where the channels also reach a
        # parameter outside any layer (a relative position bias table indexed by head, as in BEiT and Swin).
        attention = any(_is_attention_op(node.grad_fn) for node in targets) and not (
            any(node.module in num_heads for node in targets)
            and not any(node.type == tp.ops.OPTYPE.PARAMETER for node in targets)
        )
        if normalised or attention:
            kept.extend(
                dep.target.module
                for dep, _ in group
                if isinstance(dep.target.module, _PRUNABLE_TYPES) and graph.is_out_channel_pruning_fn(dep.handler)
            )
    return kept


def _is_attention_op(grad_fn: Any) -> bool:
    name = grad_fn.name().lower() if hasattr(grad_fn, "name") else ""
    return any(op in name for op in _ATTENTION_OPS)


def _attention_heads(model: nn.Module) -> dict[nn.Module, tuple[nn.Linear, nn.Linear, nn.Linear]]:
    """Attention modules written the transformers 5 way, whose head dimensions can be pruned: separate
    `q_proj`/`k_proj`/`v_proj` layers reshaped by a `head_dim` attribute, as many query as key/value heads."""
    heads = {}
    for module in model.modules():
        layers = tuple(getattr(module, name, None) for name in ("q_proj", "k_proj", "v_proj"))
        if (
            all(isinstance(layer, nn.Linear) for layer in layers)
            and isinstance(getattr(module, "head_dim", None), int)
            and isinstance(_num_heads(module), int)
            and getattr(module, "num_key_value_heads", _num_heads(module)) == _num_heads(module)
            and all(layer.out_features == _num_heads(module) * module.head_dim for layer in layers)
        ):
            heads[module] = layers
    return heads


def _num_heads(module: nn.Module) -> int | None:
    return getattr(module, "num_attention_heads", getattr(module, "num_heads", None))


def _update_head_dims(heads: dict[nn.Module, tuple[nn.Linear, nn.Linear, nn.Linear]]) -> None:
    # The forward reshapes q/k/v to (..., heads, head_dim); its softmax scale stays the unpruned one, so the
    # kept dimensions compute what they did before.
    for module, (query, _, _) in heads.items():
        module.head_dim = query.out_features // _num_heads(module)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---------------------------------------------------------------- save and load


def load_saved_classifier(
    source: str,
    *,
    revision: str = "main",
    token: str | None = None,
    cache_dir: str | None = None,
) -> PreTrainedModel:
    """Load an image classifier exactly as it was saved (its own head and labels), in eval mode.

    A structurally pruned checkpoint (`save_pruned`) is rebuilt at its pruned shapes and loaded strictly; any
    other loads with `from_pretrained`.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        InputError: a Hub checkpoint is asked for while offline and is not cached, or a pruned checkpoint's
            weights do not match the architecture it records.
    """
    check_model_source(source, revision=revision, cache_dir=cache_dir)
    hub_kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir}
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        drop_timm_num_classes(config)
        if is_structurally_pruned(config):
            return load_pruned_weights(source, config, hub_kwargs)
        return AutoModelForImageClassification.from_pretrained(source, config=config, **hub_kwargs).eval()


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
    with offline_hint(source):
        processor = load_image_processor(source, model.config, None, hub_kwargs)
    return model, processor



def is_structurally_pruned(config: PretrainedConfig) -> bool:
    """Whether a config records a structurally pruned architecture (`load_saved_classifier` loads it)."""
    return bool(getattr(config, _STRUCTURE_KEY, None))


def save_pruned(model: PreTrainedModel, output_dir: str | Path) -> None:
    """Save a pruned model so `load_saved_classifier` reloads it exactly.

    Unstructurally pruned (same shapes): `save_pretrained`. Structurally pruned: config.json with
    `pruned_structure` (what differs from what the config builds: `tensors` name -> shape, `modules` name ->
    size attributes such as `out_channels`, `num_features`, `head_dim`) and model.safetensors with the
    model's own parameter names.

    Raises:
        InputError: pruning masks are still attached (call `make_permanent` first).
    """
    if _pruning_masks(model):
        raise InputError("The model still has pruning masks attached; call make_permanent(model) before saving it.")
    structure = _pruned_structure(model)
    if not structure:
        model.save_pretrained(output_dir)
        return
    setattr(model.config, _STRUCTURE_KEY, structure)
    # save_pretrained would write the checkpoint names of transformers' weight conversion (the pre-5.0 names),
    # which only from_pretrained maps back; the model's own names load with a plain strict load_state_dict.
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(output_dir)
    save_model(model, str(output_dir / _WEIGHTS_NAME), metadata={"format": "pt"})


def load_pruned_weights(source: str, config: PretrainedConfig, hub_kwargs: dict) -> PreTrainedModel:
    """Build the architecture `config` records as pruned and load `source`'s weights into it strictly, in eval mode.

    Used by `load_saved_classifier` (the way to load any saved classifier, pruned or not): a
    missing, unexpected or mis-shaped weight is an error, never a re-initialised layer.

    Raises:
        InputError: the weights do not match the recorded architecture.
    """
    weights = Path(source) / _WEIGHTS_NAME if Path(source).is_dir() else Path(
        hf_hub_download(
            source,
            _WEIGHTS_NAME,
            revision=hub_kwargs.get("revision"),
            token=hub_kwargs.get("token"),
            cache_dir=hub_kwargs.get("cache_dir"),
        )
    )
    model = AutoModelForImageClassification.from_config(config)
    try:
        _restore_structure(model, getattr(config, _STRUCTURE_KEY))
        load_model(model, weights, strict=True)
    except (AttributeError, RuntimeError) as exc:
        raise InputError(
            f"{source} does not match the pruned architecture its config.json records ({_first_line(exc)}); "
            "save it again with hf_ft.compress.pruning.save_pruned."
        ) from exc
    return model.eval()


def _pruned_structure(model: PreTrainedModel) -> dict[str, dict]:
    """Tensor shapes and module size attributes of `model` that differ from a model built from its config."""
    config = copy.deepcopy(model.config)
    if hasattr(config, _STRUCTURE_KEY):
        delattr(config, _STRUCTURE_KEY)
    with torch.device("meta"):  # shapes and attributes only: no memory, no initialisation
        reference = AutoModelForImageClassification.from_config(config)
    reference_shapes = {name: list(tensor.shape) for name, tensor in reference.state_dict().items()}
    tensors = {
        name: list(tensor.shape)
        for name, tensor in model.state_dict().items()
        if list(tensor.shape) != reference_shapes.get(name)
    }
    reference_modules = dict(reference.named_modules())
    modules = {}
    for name, module in model.named_modules():
        expected = _size_attributes(reference_modules[name]) if name in reference_modules else {}
        changed = {key: value for key, value in _size_attributes(module).items() if expected.get(key) != value}
        if changed:
            modules[name] = changed
    return {"tensors": tensors, "modules": modules} if tensors or modules else {}


def _size_attributes(module: nn.Module) -> dict[str, Any]:
    """A module's public number attributes (`out_channels`, `num_features`, `normalized_shape`, `head_dim`,
    `scaling`, ...), as JSON values: what its forward may use besides its tensors."""
    attributes = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, (tuple, list)) and value and all(_is_number(v) for v in value):
            attributes[key] = list(value)
        elif _is_number(value):
            attributes[key] = value
    return attributes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _restore_structure(model: PreTrainedModel, structure: dict[str, dict]) -> None:
    """Resize the tensors and set the module attributes recorded by `save_pruned` (the values come from the weights)."""
    for name, shape in structure["tensors"].items():
        module_name, _, tensor_name = name.rpartition(".")
        module = model.get_submodule(module_name)
        old = getattr(module, tensor_name)
        new = torch.empty(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        setattr(module, tensor_name, new)
    for module_name, attributes in structure["modules"].items():
        module = model.get_submodule(module_name)
        for key, value in attributes.items():
            # JSON has no tuples; torch modules keep sizes such as `normalized_shape` as tuples.
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
