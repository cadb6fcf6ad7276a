"""Regularization that timm already has, as switches of the image recipe: mixup/CutMix, an exponential moving average
(EMA) of the weights, and layer-wise learning-rate decay (LLRD).

    check_regularization(reg_args, peft_args, training_args)         # before any work
    mixup = build_mixup(reg_args, num_labels, label_smoothing=...)   # timm.data.Mixup; ImageTrainer mixes each batch
    optimizer_cls_and_kwargs = layer_decay_optimizer(reg_args.layer_decay, training_args)   # Trainer's own argument
    callbacks = ema_callbacks(reg_args, resume_from=run.resume_from)                       # timm's ModelEmaV3

Each is timm's implementation (`timm.data.Mixup`, `timm.utils.ModelEmaV3`, `timm.optim.param_groups_layer_decay`),
plugged into the Trainer through its public arguments: mixed targets are class distributions, so a mixed batch's
loss is the cross-entropy against them (`hf_ft.imbalance.weighted_cross_entropy`, which takes them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from ..args import ConfigError, PeftArguments
from ..checkpoints import CheckpointError
from ..freezing import backbone_blocks, head_parameters

logger = logging.getLogger("hf_ft")

# Beside the weights in every checkpoint-N of a run with --model_ema: the average, so a resumed run goes on with it.
EMA_WEIGHTS_NAME = "model_ema.safetensors"

MIXUP_MODES = ("batch", "pair", "elem")


@dataclass
class RegularizationArguments:
    """timm's regularization for the image recipe: mixup/CutMix, an EMA of the weights, layer-wise LR decay."""

    mixup_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Mixup: blend each training image with another, and their labels alike, at a ratio drawn from "
            "Beta(alpha, alpha) (timm `mixup_alpha`; DeiT uses 0.8). 0 turns mixup off."
        },
    )
    cutmix_alpha: float = field(
        default=0.0,
        metadata={
            "help": "CutMix: paste a box of another training image, the labels mixed by area, the area drawn from "
            "Beta(alpha, alpha) (timm `cutmix_alpha`; DeiT uses 1.0). 0 turns it off. With mixup on too, each "
            "batch gets one of the two (`mixup_switch_prob`)."
        },
    )
    mixup_prob: float = field(
        default=1.0, metadata={"help": "Chance that a batch (pair, image: `mixup_mode`) is mixed at all (timm `prob`)."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With mixup and CutMix both on: the chance of CutMix (timm `switch_prob`)."}
    )
    mixup_mode: str = field(
        default="batch",
        metadata={"help": "One mixing ratio per `batch`, per `pair` of images or per image (`elem`): timm's modes."},
    )
    model_ema: bool = field(
        default=False,
        metadata={
            "help": "Keep an exponential moving average of the weights (timm ModelEmaV3), updated after every "
            "optimizer step and saved in each checkpoint. At the end of training the average becomes the model: it "
            "is what is evaluated, reported and saved (evaluations during training score the raw weights)."
        },
    )
    model_ema_decay: float = field(
        default=0.9998,
        metadata={"help": "The EMA's decay: the weight of the average so far at each update (timm's default)."},
    )
    model_ema_warmup: bool = field(
        default=True,
        metadata={
            "help": "Warm the EMA decay up, as timm does: at optimizer step t it is min(decay, 1 - t^(-2/3)), so a "
            "short fine-tune's average is not held at its early weights. Off: `model_ema_decay` from the second "
            "step (the first step's weights start the average either way)."
        },
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay (BEiT's, timm `layer_decay`): the head trains at `learning_rate`, "
            "each layer below it at `layer_decay` times the one above, the embeddings or stem slowest; 0.65-0.75 is "
            "usual for ViTs. Layers are timm's own fine-grained groups for timm models, the blocks of "
            "`trainable_blocks` for transformers models. Unset: one learning rate."
        },
    )

    def __post_init__(self):
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mixup_prob", "mixup_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mixup_mode not in MIXUP_MODES:
            raise ConfigError(f"--mixup_mode must be one of {', '.join(MIXUP_MODES)}, got {self.mixup_mode!r}")
        if not 0.0 <= self.model_ema_decay < 1.0:
            raise ConfigError(f"--model_ema_decay must be in [0, 1), got {self.model_ema_decay}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"--layer_decay must be in (0, 1], got {self.layer_decay}")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def check_regularization(
    reg_args: RegularizationArguments, peft_args: PeftArguments, training_args: TrainingArguments
) -> None:
    """The combinations that cannot work, refused before any work.

    Raises:
        ConfigError: an EMA or layer-wise LR decay with an adapter, or an EMA with `load_best_model_at_end`.
    """
    if peft_args.peft_method:
        for name in ("model_ema", "layer_decay"):
            if getattr(reg_args, name) not in (None, False):
                raise ConfigError(
                    f"--{name} is for full fine-tuning; with --peft_method {peft_args.peft_method} only the adapter "
                    f"trains. Drop one of them."
                )
    if reg_args.model_ema and training_args.load_best_model_at_end:
        raise ConfigError(
            "--model_ema with --load_best_model_at_end: checkpoints are scored on the raw weights, and loading the "
            "best would discard the average. Drop one of them."
        )


# ---------------------------------------------------------------- mixup / CutMix


def build_mixup(reg_args: RegularizationArguments, num_labels: int, *, label_smoothing: float) -> Any:
    """timm's `Mixup` for `reg_args`, or None when neither mixup nor CutMix is on. It smooths the mixed targets by
    `label_smoothing` (pass `label_smoothing_factor`: the Trainer's own smoothing does not see mixed targets)."""
    if not reg_args.mixes:
        return None
    from timm.data import Mixup

    logger.info(
        "Mixup alpha %s, CutMix alpha %s (prob %s, switch prob %s, per %s)", reg_args.mixup_alpha,
        reg_args.cutmix_alpha, reg_args.mixup_prob, reg_args.mixup_switch_prob, reg_args.mixup_mode,
    )
    return Mixup(
        mixup_alpha=reg_args.mixup_alpha,
        cutmix_alpha=reg_args.cutmix_alpha,
        prob=reg_args.mixup_prob,
        switch_prob=reg_args.mixup_switch_prob,
        mode=reg_args.mixup_mode,
        label_smoothing=label_smoothing,
        num_classes=num_labels,
    )


def mix_batch(mixup: Any, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch mixed by timm's `Mixup`, with targets as class distributions (N, C).

    timm mixes images in pairs and refuses an odd batch: an odd batch's last image (an epoch's last batch, or an odd
    per-device batch size) is left unmixed, with its own smoothed one-hot target.
    """
    from timm.data.mixup import mixup_target

    even = len(pixels) - len(pixels) % 2
    unmixed = mixup_target(labels[even:], mixup.num_classes, lam=1.0, smoothing=mixup.label_smoothing)
    if even == 0:
        return pixels, unmixed
    mixed, targets = mixup(pixels[:even], labels[:even])
    return torch.cat([mixed, pixels[even:]]), torch.cat([targets, unmixed])


# ---------------------------------------------------------------- layer-wise learning-rate decay


def layer_decay_param_groups(model: PreTrainedModel, layer_decay: float, *, weight_decay: float) -> list[dict]:
    """timm's `param_groups_layer_decay` for a timm (TimmWrapper) or transformers classifier: one group per layer
    and weight-decay kind, each with its `lr_scale` (`layer_decay ** (layers above it)`); trainable parameters only.

    A timm model is grouped by its own `group_matcher`; a transformers model by `hf_ft.freezing.backbone_blocks`:
    the embeddings first, one layer per block, then what follows the blocks (a final norm), then the head.
    """
    from timm.optim import param_groups_layer_decay

    timm_model = getattr(model, "timm_model", None)
    layered = timm_model if timm_model is not None else _BlockLayers(model)
    return param_groups_layer_decay(layered, weight_decay=weight_decay, layer_decay=layer_decay)


class _BlockLayers:
    """A transformers model as `param_groups_layer_decay` reads a timm one: its named parameters, and a
    `group_matcher` that gives each parameter name its layer."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        blocks = backbone_blocks(model)
        block_of = {id(p): i for i, block in enumerate(blocks) for p in block}
        head = {id(p) for p in head_parameters(model)}
        self.layer_of: dict[str, int] = {}
        past_blocks = False
        for name, parameter in model.named_parameters():
            if id(parameter) in head:
                layer = len(blocks) + 2
            elif id(parameter) in block_of:
                layer, past_blocks = block_of[id(parameter)] + 1, True
            else:  # before the first block: the embeddings; after: a final norm or pooler
                layer = len(blocks) + 1 if past_blocks else 0
            self.layer_of[name] = layer

    def named_parameters(self, *args, **kwargs):
        return self.model.named_parameters(*args, **kwargs)

    def group_matcher(self, coarse: bool = False) -> Callable[[str], int]:
        return self.layer_of.__getitem__


def layer_decay_optimizer(layer_decay: float | None, training_args: TrainingArguments) -> tuple[Callable, dict] | None:
    """`Trainer(optimizer_cls_and_kwargs=...)` for layer-wise LR decay, or None for the Trainer's own optimizer.

    An optimizer factory (the Trainer calls it with its model when it builds the optimizer, so a model made by
    `model_init` is grouped too): the optimizer `--optim` names, over `layer_decay_param_groups`, each group at
    `learning_rate * lr_scale`, which the Trainer's LR schedule then scales as a whole.
    """
    if layer_decay is None:
        return None

    def build(model: PreTrainedModel) -> torch.optim.Optimizer:
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
            raise ConfigError(
                f"--layer_decay needs an optimizer over parameter groups; --optim {training_args.optim} is not one."
            )
        groups = layer_decay_param_groups(model, layer_decay, weight_decay=training_args.weight_decay)
        learning_rate = kwargs.pop("lr", training_args.learning_rate)
        for group in groups:
            group["lr"] = learning_rate * group["lr_scale"]
        scales = sorted({group["lr_scale"] for group in groups})
        logger.info("Layer-wise LR decay %s: %d layers, LR x%.3g (lowest) to x%.3g (head)", layer_decay, len(scales),
                    scales[0], scales[-1])
        return optimizer_cls(groups, **kwargs)

    return (lambda: build), {}


# ---------------------------------------------------------------- EMA of the weights


class ModelEmaCallback(TrainerCallback):
    """timm's `ModelEmaV3` of the model, updated after every optimizer step, saved beside each checkpoint's weights
    (`EMA_WEIGHTS_NAME`) and loaded back on resume; at the end of training its weights are copied into the model.

    Under DDP every process keeps the same average (the weights it averages are the same); FSDP and DeepSpeed shard
    the weights, and are not supported.
    """

    def __init__(self, decay: float, *, warmup: bool, resume_from: str | None):
        self.decay, self.warmup, self.resume_from = decay, warmup, resume_from
        self.ema = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from safetensors.torch import load_model
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=self.decay, use_warmup=self.warmup)
        if state.global_step == 0:
            return
        saved = Path(self.resume_from or Path(args.output_dir) / f"checkpoint-{state.global_step}") / EMA_WEIGHTS_NAME
        if not saved.is_file():
            raise CheckpointError(
                f"{saved.parent} holds no {EMA_WEIGHTS_NAME}: it was saved without --model_ema, and the average "
                "cannot be rebuilt. Resume without --model_ema, or start a new run."
            )
        load_model(self.ema.module, str(saved))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_model

        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_model(self.ema.module, str(checkpoint / EMA_WEIGHTS_NAME))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.load_state_dict(self.ema.module.state_dict())
        logger.info("The EMA of the weights (decay %s) is the model from here on", self.decay)


def ema_callbacks(reg_args: RegularizationArguments, *, resume_from: str | None) -> list[TrainerCallback]:
    """`[ModelEmaCallback]` with `--model_ema`, else none. `resume_from` is the checkpoint the run resumes from."""
    if not reg_args.model_ema:
        return []
    return [ModelEmaCallback(reg_args.model_ema_decay, warmup=reg_args.model_ema_warmup, resume_from=resume_from)]
