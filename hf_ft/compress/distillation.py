"""Knowledge distillation in the Trainer: a fine-tuned teacher's soft labels train a smaller student.

The student trains with the Trainer as usual; `DistillationTrainer.compute_loss` (transformers' documented
extension point) adds the teacher's term:

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015; the T^2 keeps the soft term's gradients on the scale of the hard one as T changes).
The teacher runs in eval mode without gradients, on the student's device, on the same augmented batch, under
the same Accelerate autocast. When the two models expect other input sizes or normalisations, the batch is
converted for the teacher (`TeacherInputs`), so each model sees images the way it was trained to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BaseImageProcessor, PreTrainedModel

from ..errors import InputError
from ..vision.trainer import ImageTrainer
from ..vision.transforms import data_config
from .args import DistillationArguments
from .pruning import load_finetuned_classifier

logger = logging.getLogger("hf_ft")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * hard_loss + (1 - alpha) * T^2 * KL(teacher/T || student/T), the KL averaged over the batch.

    Args:
        student_logits: (batch, classes), with gradients.
        teacher_logits: (batch, classes), same class order as the student's.
        hard_loss: The student's loss on the labels (cross-entropy, label smoothing included if configured).
        alpha: Weight of `hard_loss`, in [0, 1].
        temperature: Softmax temperature T > 0 of both models in the soft term.
    """
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / temperature, dim=-1),
        F.log_softmax(teacher_logits.float() / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * hard_loss + (1.0 - alpha) * temperature**2 * soft


def teacher_label_order(teacher: PreTrainedModel, label_names: list[str], teacher_name: str) -> list[int] | None:
    """Indices that put the teacher's logits in the data's label order (None when it already is).

    Raises:
        InputError: the teacher was fine-tuned on other labels than the data's, naming the differences.
    """
    teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if teacher_labels == list(label_names):
        return None
    missing = [name for name in label_names if name not in teacher_labels]
    extra = [name for name in teacher_labels if name not in label_names]
    if missing or extra or len(teacher_labels) != len(label_names):
        raise InputError(
            f"Teacher {teacher_name} was fine-tuned on other labels than the data's: the data has {_few(missing)} "
            f"that the teacher lacks, the teacher has {_few(extra)} that the data lacks. Distil from a teacher "
            "fine-tuned on this dataset (its config.json id2label must list the same label names)."
        )
    return [teacher_labels.index(name) for name in label_names]


def _few(names: list[str], limit: int = 8) -> str:
    if not names:
        return "no labels"
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"{len(names)} label(s) ({shown}{', ...' if len(names) > limit else ''})"


class TeacherInputs(nn.Module):
    """Turn a batch preprocessed for the student into the teacher's input size and normalisation.

    Un-normalises with the student's mean/std, re-normalises with the teacher's, and resizes (antialiased
    bilinear) when the input sizes differ. The identity when both models share their preprocessing.
    """

    def __init__(self, student_processor: BaseImageProcessor, teacher_processor: BaseImageProcessor):
        super().__init__()
        student, teacher = data_config(student_processor), data_config(teacher_processor)
        self.size = tuple(teacher["input_size"][1:]) if teacher["input_size"] != student["input_size"] else None
        # x_teacher = (x_student * std_s + mean_s - mean_t) / std_t = x_student * scale + shift
        std_s, mean_s = torch.tensor(student["std"]), torch.tensor(student["mean"])
        std_t, mean_t = torch.tensor(teacher["std"]), torch.tensor(teacher["mean"])
        scale, shift = std_s / std_t, (mean_s - mean_t) / std_t
        self.renormalise = not (torch.allclose(scale, torch.ones(3)) and torch.allclose(shift, torch.zeros(3)))
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    @property
    def is_identity(self) -> bool:
        return self.size is None and not self.renormalise

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            pixel_values = pixel_values * self.scale.to(pixel_values.dtype) + self.shift.to(pixel_values.dtype)
        if self.size is not None:
            pixel_values = F.interpolate(
                pixel_values, size=self.size, mode="bilinear", antialias=True, align_corners=False
            )
        return pixel_values


@dataclass
class Teacher:
    """A fine-tuned teacher ready for `DistillationTrainer`: model, input conversion, label order, loss weights."""

    model: PreTrainedModel
    inputs: TeacherInputs
    label_order: list[int] | None
    alpha: float
    temperature: float


def load_teacher(
    distillation_args: DistillationArguments,
    label_names: list[str],
    student_processor: BaseImageProcessor,
    *,
    token: str | None = None,
    cache_dir: str | None = None,
) -> Teacher | None:
    """Load the teacher named in `distillation_args` and check it against the data's labels; None when it names none.

    Raises:
        FileNotFoundError: the teacher's path does not exist.
        InputError: the teacher's labels differ from the data's (named), or it cannot be loaded offline.
    """
    source = distillation_args.teacher_model_name_or_path
    if not source:
        return None
    model, processor = load_finetuned_classifier(
        source, revision=distillation_args.teacher_model_revision, token=token, cache_dir=cache_dir
    )
    teacher = Teacher(
        model=model,
        inputs=TeacherInputs(student_processor, processor),
        label_order=teacher_label_order(model, label_names, source),
        alpha=distillation_args.distillation_alpha,
        temperature=distillation_args.distillation_temperature,
    )
    logger.info("Distilling from %s (alpha %.2f, T %.1f)", source, teacher.alpha, teacher.temperature)
    return teacher


class DistillationTrainer(ImageTrainer):
    """`ImageTrainer` whose training loss adds a teacher's soft labels (see the module docstring).

    Evaluation reports the student's plain loss on the labels, so eval curves compare with runs without a
    teacher. The teacher is not prepared by Accelerate: it gets no gradients, optimizer state or DDP wrapper,
    and each process holds a full copy (for a teacher too large for one device, shard it yourself).
    """

    # Both loss terms are per-batch means: the Trainer divides by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, teacher: Teacher, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        teacher.model.eval().requires_grad_(False).to(self.args.device)
        teacher.inputs.to(self.args.device)
        self._label_order = (
            torch.tensor(teacher.label_order, device=self.args.device) if teacher.label_order is not None else None
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The plain per-batch loss on the labels, from the Trainer itself (label smoothing included).
        hard_loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
        if not model.training:
            return (hard_loss, outputs) if return_outputs else hard_loss
        with torch.no_grad(), self.accelerator.autocast():
            teacher_logits = self.teacher.model(pixel_values=self.teacher.inputs(inputs["pixel_values"])).logits
        if self._label_order is not None:
            teacher_logits = teacher_logits[:, self._label_order]
        loss = distillation_loss(
            outputs.logits, teacher_logits, hard_loss, alpha=self.teacher.alpha, temperature=self.teacher.temperature
        )
        return (loss, outputs) if return_outputs else loss
