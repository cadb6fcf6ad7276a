"""The variants a compression run makes from a fine-tuned image classifier, and how each is measured.

    original, example = load_original(model_args, data)
    variants = [original, *distilled_students(...), *pruned_variants(...), *exported_variants(...)]
    rows = measure(variants, data, ...)                     # -> the compression report

Every variant is saved under the run's output dir as a user would load it, and measured by the same code: test
metrics, agreement with the original, size on disk, CPU latency.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import BaseImageProcessor, PreTrainedModel, TrainingArguments

from .. import classification, speed
from ..args import ModelArguments
from ..checkpoints import last_complete_checkpoint
from ..errors import InputError
from ..models import count_parameters
from ..tasks.image_classification import (
    ImageClassificationData,
    ImageDataArguments,
    classification_trainer,
    load_image_classifier,
)
from ..vision.transforms import attach_transforms
from . import onnx_export, pruning, quantization
from .args import CompressionArguments, DistillationArguments
from .distillation import Teacher, load_teacher, teacher_label_order
from .inference import Predictor, measure_latency, pixel_array, predict_batches, weights_size_bytes
from .report import VariantResult, static_int8_note

logger = logging.getLogger("hf_ft")

# What a reader of the report must know about a variant's numbers.
_UNSTRUCTURED_NOTE = (
    "zeros in dense tensors: the same file size and dense-kernel speed; the gain needs sparse storage or kernels."
)
_TORCH_INT8_NOTE = (
    "PyTorch dynamic quantization covers Linear layers only; convolutions stay fp32 (use ONNX int8 for convnets)."
)
_ONNX_DYNAMIC_NOTE = (
    "MatMul layers only: ONNX Runtime quantizes convolutions per tensor when dynamic, which loses a "
    "convnet's accuracy (13% agreement on the digits demo); static int8 is the int8 path for convnets."
)
_ONNX_STATIC_NOTE = (
    f"the first {onnx_export.STATIC_FP32_CONVOLUTIONS} convolutions (a MobileNet-style convnet's stem and first "
    "two stages) stay fp32: they cost the most agreement when quantized and hold few weights."
)


@dataclasses.dataclass
class Variant:
    """A model made by this run (or the original), before it is measured."""

    name: str
    method: str
    path: Path  # what was saved; its weight files are the size on disk
    model: torch.nn.Module | Path  # a PyTorch model, or an ONNX file
    processor: BaseImageProcessor  # its evaluation preprocessing
    num_parameters: int
    sparsity: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def check_compression_args(compression_args: CompressionArguments, training_args: TrainingArguments) -> None:
    """The compression values that cannot work, before any data or model is loaded.

    Raises:
        InputError: a pruning target outside (0, 1), an ONNX opset ONNX Runtime cannot run, or `--push_to_hub`.
    """
    if training_args.push_to_hub:
        raise InputError(
            "recipes/compress.py does not push: its output_dir holds several variants and their comparison, not one "
            "model. Drop --push_to_hub, then push the variant you chose with `hf upload <repo_id> "
            "<output_dir>/<variant>`."
        )
    if compression_args.pruning_method:
        pruning.check_sparsity(compression_args.pruning_sparsities)
    if compression_args.export_onnx:
        onnx_export.check_opset(compression_args.onnx_opset)


def load_original(
    model_args: ModelArguments, data: ImageClassificationData, compression_args: CompressionArguments
) -> tuple[Variant, torch.Tensor]:
    """The fine-tuned model as saved, and two test images as the example input that export and pruning trace.

    Raises:
        InputError: the data has no test split, the model lists the data's labels in another order, or structured
            pruning cannot handle the model.
    """
    if "test" not in data.splits:
        raise InputError(
            "recipes/compress.py compares the variants on a test split: set --test_dir, --test_file or "
            "a dataset with a `test` split (--test_split_name)."
        )
    source = model_args.model_name_or_path
    model, processor = pruning.load_finetuned_classifier(
        source, revision=model_args.model_revision, token=model_args.token, cache_dir=model_args.cache_dir
    )
    if teacher_label_order(model, data.label_names, source) is not None:
        raise InputError(
            f"{source} lists the data's labels in another order than the data; "
            "compress the model with the dataset (and label column) it was fine-tuned on."
        )
    model.eval()
    example = torch.from_numpy(pixel_array(data.splits["test"], processor, limit=2))
    if compression_args.pruning_method == "structured":
        pruning.check_structured_support(model, example)  # on its own copy
    _, parameters = count_parameters(model)  # int8 and ONNX variants hold these, in other formats
    return Variant("original", "fine-tuned", Path(source), model, processor, parameters), example


def distilled_students(
    model_args: ModelArguments,
    data: ImageClassificationData,
    data_args: ImageDataArguments,
    compression_args: CompressionArguments,
    distillation_args: DistillationArguments,
    training_args: TrainingArguments,
) -> list[Variant]:
    """The student trained with the fine-tuned model as teacher, and the same student without a teacher on the same
    budget, so the report shows what distillation adds. None without `student_model_name_or_path`."""
    if not compression_args.student_model_name_or_path:
        return []
    teacher_args = distillation_args
    if not teacher_args.teacher_model_name_or_path:
        teacher_args = dataclasses.replace(teacher_args, teacher_model_name_or_path=model_args.model_name_or_path)
    student_args = dataclasses.replace(model_args, model_name_or_path=compression_args.student_model_name_or_path)
    output_dir = Path(training_args.output_dir)
    variants = []
    for name, with_teacher in (("student_distilled", True), ("student_baseline", False)):
        student, processor = load_image_classifier(student_args, data.label_names, image_size=data_args.image_size)
        teacher = None
        if with_teacher:
            teacher = load_teacher(
                teacher_args, data.label_names, processor, token=model_args.token, cache_dir=model_args.cache_dir
            )
        args = dataclasses.replace(training_args, output_dir=str(output_dir / name))
        student = _train(student, processor, data, data_args, args, teacher=teacher)
        if training_args.should_save:
            student.save_pretrained(output_dir / name)
            processor.save_pretrained(output_dir / name)
        method = "same student, no teacher"
        if with_teacher:
            alpha, temperature = teacher_args.distillation_alpha, teacher_args.distillation_temperature
            method = f"distilled (alpha {alpha:g}, T {temperature:g})"
        variants.append(
            Variant(name.replace("_", " "), method, output_dir / name, student, processor, count_parameters(student)[1])
        )
    return variants


def pruned_variants(
    original: Variant,
    example: torch.Tensor,
    data: ImageClassificationData,
    data_args: ImageDataArguments,
    compression_args: CompressionArguments,
    training_args: TrainingArguments,
) -> list[Variant]:
    """One pruned model per `pruning_sparsities` target, each from the original (one-shot) or from the previous
    target's model (iterative), fine-tuned after pruning when `pruning_finetune_epochs` asks. None without
    `pruning_method`."""
    method = compression_args.pruning_method
    if not method:
        return []
    output_dir = Path(training_args.output_dir)
    description = f"{method} pruning, {compression_args.pruning_schedule.replace('_', '-')}"
    if compression_args.pruning_finetune_epochs:
        description += f" + {compression_args.pruning_finetune_epochs:g} epoch(s) fine-tuning"
    variants, previous = [], original.model
    for sparsity in compression_args.pruning_sparsities:
        name = f"pruned_{method}_{round(100 * sparsity)}"
        model = copy.deepcopy(original.model if compression_args.pruning_schedule == "one_shot" else previous)
        if method == "unstructured":
            pruning.prune_unstructured(model, sparsity, scope=compression_args.pruning_scope)
        else:
            pruning.prune_structured(model, round((1 - sparsity) * original.num_parameters), example)
        if compression_args.pruning_finetune_epochs > 0:
            args = dataclasses.replace(
                training_args,
                output_dir=str(output_dir / name),
                num_train_epochs=compression_args.pruning_finetune_epochs,
                learning_rate=compression_args.pruning_learning_rate or training_args.learning_rate,
            )
            model = _train(model, original.processor, data, data_args, args)
        if method == "unstructured":
            pruning.make_permanent(model)
        if training_args.should_save:
            pruning.save_pruned(model, output_dir / name)
            original.processor.save_pretrained(output_dir / name)
        _, parameters = count_parameters(model)
        measured = (  # zeros among prunable weights, or the share of parameters removed
            pruning.weight_sparsity(model) if method == "unstructured" else 1 - parameters / original.num_parameters
        )
        notes = [_UNSTRUCTURED_NOTE] if method == "unstructured" else []
        variants.append(
            Variant(
                f"pruned {round(100 * sparsity)}%", description, output_dir / name, model, original.processor,
                parameters, measured, notes,
            )
        )
        previous = model
    return variants


def exported_variants(
    original: Variant,
    example: torch.Tensor,
    data: ImageClassificationData,
    compression_args: CompressionArguments,
    training_args: TrainingArguments,
) -> list[Variant]:
    """PyTorch dynamic int8, the ONNX export, and ONNX Runtime int8 (dynamic; static, calibrated on shuffled training
    images for the target CPU family), as the arguments ask, all of the original. Call it on one process."""
    output_dir = Path(training_args.output_dir)
    processor, parameters = original.processor, original.num_parameters
    variants = []
    if compression_args.quantize_dynamic_int8:
        int8 = quantization.quantize_dynamic_int8(original.model)
        path = quantization.save_dynamic_int8(int8, output_dir / "int8_dynamic")
        processor.save_pretrained(output_dir / "int8_dynamic")
        method = "dynamic int8 (Linear layers)"
        variants.append(Variant("PyTorch int8", method, path, int8, processor, parameters, notes=[_TORCH_INT8_NOTE]))
    if not compression_args.export_onnx:
        return variants
    onnx_dir = output_dir / "onnx"
    fp32 = onnx_export.export_onnx(original.model, example, onnx_dir / "model.onnx", opset=compression_args.onnx_opset)
    original.model.config.save_pretrained(onnx_dir)  # id2label, and a timm model's preprocessing
    processor.save_pretrained(onnx_dir)
    method = f"torch.onnx.export, opset {compression_args.onnx_opset}"
    variants.append(Variant("ONNX", method, fp32, fp32, processor, parameters))
    if "dynamic" in compression_args.onnx_quantization:
        path = onnx_export.quantize_onnx_dynamic(fp32, onnx_dir / "model_int8_dynamic.onnx")
        method = "ONNX Runtime dynamic int8 (MatMul layers)"
        notes = [_ONNX_DYNAMIC_NOTE]
        variants.append(Variant("ONNX int8 dynamic", method, path, path, processor, parameters, notes=notes))
    if "static" in compression_args.onnx_quantization:
        calibration = pixel_array(
            data.splits["train"].shuffle(seed=training_args.seed), processor, limit=compression_args.calibration_samples
        )
        requested = compression_args.onnx_quantization_target
        target = onnx_export.resolve_int8_target(requested)
        path = onnx_export.quantize_onnx_static(
            fp32,
            onnx_dir / "model_int8_static.onnx",
            np.array_split(calibration, max(1, len(calibration) // 16)),
            target=target,
        )
        method = f"ONNX Runtime static int8 (QDQ, {len(calibration)} calibration images, for {target} CPUs)"
        target_note = static_int8_note(
            requested, target, onnx_export.detect_int8_target(), onnx_export.INT8_TARGETS[target]
        )
        variants.append(
            Variant("ONNX int8 static", method, path, path, processor, parameters,
                    notes=[_ONNX_STATIC_NOTE, target_note])
        )
    return variants


def measure(
    variants: list[Variant],
    data: ImageClassificationData,
    compression_args: CompressionArguments,
    output_dir: Path,
    *,
    threads: int,
) -> list[VariantResult]:
    """Each variant's test metrics (the same metrics code as training), agreement with the first variant (the
    original), size on disk and CPU latency per batch size (`latency_batch_sizes`), on `threads` threads."""
    test = data.splits["test"]
    labels = np.asarray(test["label"])
    pixels_by_processor: dict[int, np.ndarray] = {}
    rows, reference = [], None
    for variant in variants:
        if id(variant.processor) not in pixels_by_processor:
            pixels_by_processor[id(variant.processor)] = pixel_array(test, variant.processor)
        pixels = pixels_by_processor[id(variant.processor)]
        predict = _predictor(variant.model, threads)
        logits = predict_batches(predict, pixels)
        predictions = logits.argmax(axis=1)
        reference = predictions if reference is None else reference
        path = variant.path
        row = VariantResult(
            name=variant.name,
            method=variant.method,
            path=str(path.relative_to(output_dir)) if path.is_relative_to(output_dir) else str(path),
            metrics=classification.classification_metrics(logits, labels, len(data.label_names)),
            agreement=float(np.mean(predictions == reference)),
            num_parameters=variant.num_parameters,
            size_bytes=weights_size_bytes(path),
            latency_ms=measure_latency(
                predict,
                pixels,
                batch_sizes=compression_args.latency_batch_sizes,
                repeats=compression_args.latency_repeats,
            ),
            sparsity=variant.sparsity,
            notes=variant.notes,
        )
        logger.info(
            "%-18s accuracy %.4f  %.2f MB  latency %s ms",
            variant.name,
            row.metrics["accuracy"],
            row.size_bytes / 1e6,
            {b: round(ms, 2) for b, ms in row.latency_ms.items()},
        )
        rows.append(row)
    return rows


def _train(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    data: ImageClassificationData,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
    *,
    teacher: Teacher | None = None,
) -> PreTrainedModel:
    """Train `model` on the train split (evaluating on validation), resuming a checkpoint in its output_dir."""
    args = dataclasses.replace(training_args, push_to_hub=False, remove_unused_columns=False)  # transforms need `image`
    args = speed.resolve_training_args(args, train_size=len(data.splits["train"]))  # as the image recipe
    splits = attach_transforms(data.splits, processor, data_args)
    trainer = classification_trainer(
        model, processor, splits, args, num_labels=len(data.label_names), teacher=teacher,
        class_weight=data_args.class_weight, class_balanced_sampling=data_args.class_balanced_sampling,
    )
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(args.output_dir))
    return trainer.model.eval()


def _predictor(model: torch.nn.Module | Path, threads: int) -> Predictor:
    if isinstance(model, Path):
        return onnx_export.onnx_predictor(model, threads)
    return quantization.torch_predictor(model, threads)
