"""The Trainer every classification recipe builds: data, collator, metrics, and a teacher when distilling."""

from __future__ import annotations

from typing import Sequence

from datasets import DatasetDict
from transformers import BaseImageProcessor, PreTrainedModel, TrainerCallback, TrainingArguments

from . import metrics
from .data import collate
from .distillation import DistillationTrainer, Teacher
from .image_trainer import ImageTrainer


def global_batch_size(training_args: TrainingArguments) -> int:
    """Samples per optimizer step, all processes and gradient accumulation together."""
    return (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    )


def classification_trainer(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    splits: DatasetDict,
    training_args: TrainingArguments,
    *,
    num_labels: int,
    teacher: Teacher | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> ImageTrainer:
    """An `ImageTrainer` on `splits` (train, and validation for evaluation), or a `DistillationTrainer` with `teacher`.

    `splits` carry their transforms already (`hf_ft.data.attach_transforms`); accuracy, macro-F1 and top-5 are
    computed at each evaluation.
    """
    kwargs = {
        "model": model,
        "args": training_args,
        "train_dataset": splits["train"],
        "eval_dataset": splits.get("validation"),
        "data_collator": collate,
        "processing_class": processor,
        "compute_metrics": metrics.compute_metrics_for_classification(num_labels),
        "callbacks": list(callbacks),
    }
    if teacher is None:
        return ImageTrainer(**kwargs)
    return DistillationTrainer(teacher=teacher, **kwargs)
