"""What trains: PEFT adapters, or the head only, the head plus the last K blocks, or a backbone frozen for N epochs.

Frozen parameters get `requires_grad = False`; BatchNorm statistics in frozen blocks still adapt to the
new data in training mode, as in the transformers examples.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel, TrainerCallback

from . import peft
from .args import ModelArguments, PeftArguments
from .errors import InputError
from .models import new_head_module_names


def choose_trainable(
    model: PreTrainedModel, model_args: ModelArguments, peft_args: PeftArguments, *, task_type: str | None = None
) -> tuple[PreTrainedModel, list[TrainerCallback]]:
    """The model as it trains, and the callbacks the Trainer needs for it.

    With `peft_args.peft_method`: the model wrapped in its adapters (PEFT `task_type` as the task names it), with
    the new head and BatchNorm layers trained. Otherwise `model_args.trainable_blocks` (everything, or the head plus
    the last K blocks), and a `FreezeBackboneCallback` for `freeze_backbone_epochs`.
    """
    if peft_args.peft_method:
        return peft.apply_peft(model, peft_args, task_type), []
    set_trainable(model, model_args.trainable_blocks)
    if model_args.freeze_backbone_epochs > 0:
        return model, [FreezeBackboneCallback(model_args.freeze_backbone_epochs, model_args.trainable_blocks)]
    return model, []


def head_parameters(model: PreTrainedModel) -> list[nn.Parameter]:
    """Parameters of the classification head and the new layers in front of it (`hf_ft.models.new_head_module_names`).

    Raises:
        InputError: the model has no head `head_module_name` knows.
    """
    names = new_head_module_names(model)
    if not names:
        raise InputError(f"Cannot find the classification head of {type(model).__name__}.")
    return [parameter for name in names for parameter in model.get_submodule(name).parameters()]


def backbone_blocks(model: PreTrainedModel) -> list[list[nn.Parameter]]:
    """The parameters of each backbone block, in forward order: transformer layers, or stages for convnets.

    timm models are grouped by their own `group_matcher` (timm's grouping for layer-wise LR decay), less the
    stem group and the head; transformers models by their outermost `ModuleList` (`encoder.layer`,
    `encoder.stages`, ...).

    Raises:
        InputError: no block structure can be found.
    """
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        return _timm_blocks(timm_model)
    lists = [(name, module) for name, module in model.base_model.named_modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise InputError(f"Cannot find the blocks of {type(model).__name__}: it has no ModuleList of layers.")
    _, outermost = min(lists, key=lambda item: item[0].count("."))
    return [list(block.parameters()) for block in outermost]


def _timm_blocks(timm_model: nn.Module) -> list[list[nn.Parameter]]:
    from timm.models import group_parameters

    groups = group_parameters(timm_model, timm_model.group_matcher(coarse=True))
    params = dict(timm_model.named_parameters())
    head = {id(p) for p in timm_model.get_classifier().parameters()}
    ordered = [[params[name] for name in names] for _, names in sorted(groups.items())]
    # timm's first group is the stem (patch embedding / first conv), not a block.
    return [block for block in ordered[1:] if not any(id(p) in head for p in block)]


def set_trainable(model: PreTrainedModel, trainable_blocks: int | None) -> None:
    """Train everything (`None`), or only the head plus the last `trainable_blocks` blocks.

    Raises:
        InputError: `trainable_blocks` is larger than the number of blocks.
    """
    if trainable_blocks is None:
        model.requires_grad_(True)
        return
    blocks = backbone_blocks(model)
    if trainable_blocks > len(blocks):
        raise InputError(f"--trainable_blocks {trainable_blocks} exceeds the model's {len(blocks)} blocks.")
    model.requires_grad_(False)
    for param in head_parameters(model):
        param.requires_grad_(True)
    for block in blocks[len(blocks) - trainable_blocks :]:
        for param in block:
            param.requires_grad_(True)


class FreezeBackboneCallback(TrainerCallback):
    """Train only the head for the first `epochs` epochs, then restore `trainable_blocks`.

    The freeze happens at train begin, after the Trainer built its optimizer over every parameter that will
    train later: frozen parameters get no gradient, so AdamW skips them (weight decay included). Under DDP
    this relies on `find_unused_parameters`, which the Trainer turns on for transformers models. It acts on the model
    the Trainer trains, so a hyperparameter search's trials (a model each, from `model_init`) are frozen alike.
    """

    def __init__(self, epochs: float, trainable_blocks: int | None):
        self.epochs, self.trainable_blocks = epochs, trainable_blocks

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        set_trainable(model, 0 if state.epoch < self.epochs else self.trainable_blocks)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        if state.epoch >= self.epochs:
            set_trainable(model, self.trainable_blocks)
