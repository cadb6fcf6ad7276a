"""Make a fine-tuned image classifier smaller and faster, and measure every variant the same way.

    accelerate launch recipes/compress.py --config recipes/configs/compress/demo_digits.yaml [--key value ...]
    python recipes/compress.py --config ...            # same thing, one process

`model_name_or_path` is a fine-tuned classifier (an hf_ft output dir or a Hub id); the data arguments name
the dataset it was fine-tuned on. From it this recipe makes, as the config asks:

- a distilled student (`student_model_name_or_path`, the fine-tuned model as teacher) and the same student
  trained without the teacher on the same budget (the TrainingArguments), to show what distillation adds;
- pruned models at each `pruning_sparsities` target (unstructured or structured, one-shot or iterative,
  optionally fine-tuned after each step);
- PyTorch dynamic int8, an ONNX export, and ONNX Runtime int8 (dynamic, and static calibrated on training
  images).

Every variant is saved under output_dir, evaluated on the test split by the same metrics code and timed on
the CPU; report.md, compression_results.json and the plots compare them with the original. Needs the
`compress` extra: pip install -e ".[compress]".
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from transformers import BaseImageProcessor, PreTrainedModel, TrainingArguments

from hf_ft import metrics, onnx_export, pruning, quantization, runs, speed
from hf_ft.args import (
    CompressionArguments,
    DistillationArguments,
    ImageDataArguments,
    ModelArguments,
    non_default,
    to_plain_dict,
)
from hf_ft.checkpoints import last_complete_checkpoint
from hf_ft.cli import run_recipe
from hf_ft.compression_report import VariantResult, static_int8_note, write_compression_report
from hf_ft.data import ImageClassificationData, attach_transforms, load_image_classification_data
from hf_ft.distillation import Teacher, load_teacher, teacher_label_order
from hf_ft.errors import InputError
from hf_ft.inference import Predictor, cpu_name, measure_latency, pixel_array, predict_batches, weights_size_bytes
from hf_ft.models import count_parameters, load_finetuned_classifier, load_image_classifier
from hf_ft.runs import setup_logging
from hf_ft.training import classification_trainer

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


def main(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    compression_args: CompressionArguments,
    distillation_args: DistillationArguments,
    training_args: TrainingArguments,
) -> dict:
    setup_logging(training_args.should_log)
    logger.info(
        "Arguments (non-default): %s",
        non_default(
            model_args, data_args, compression_args, distillation_args, training_args, defaults=speed.parser_defaults()
        ),
    )
    output_dir = Path(training_args.output_dir)

    # ---- Checks that must pass before any long work ----
    if compression_args.pruning_method:
        pruning.check_sparsity(compression_args.pruning_sparsities)
    if compression_args.export_onnx:
        onnx_export.check_opset(compression_args.onnx_opset)
    run_args = to_plain_dict(model_args, data_args, compression_args, distillation_args, training_args)
    runs.start(
        training_args,
        run_args,
        checkpoints=[
            (model_args.model_name_or_path, model_args.model_revision),
            (compression_args.student_model_name_or_path, model_args.model_revision),
            (distillation_args.teacher_model_name_or_path, distillation_args.teacher_model_revision),
        ],
        cache_dir=model_args.cache_dir,
    )
    if training_args.should_save:
        runs.write_args(output_dir, run_args)

    # ---- Data: the dataset the model was fine-tuned on; variants are compared on its test split ----
    with training_args.main_process_first(desc="loading data"):
        data = load_image_classification_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    if "test" not in data.splits:
        raise InputError(
            "recipes/compress.py compares the variants on a test split: set --test_dir, --test_file or "
            "a dataset with a `test` split (--test_split_name)."
        )
    logger.info("Splits: %s", {name: len(split) for name, split in data.splits.items()})

    # ---- The fine-tuned model, as saved ----
    original, processor = load_finetuned_classifier(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        token=model_args.token,
        cache_dir=model_args.cache_dir,
    )
    if teacher_label_order(original, data.label_names, model_args.model_name_or_path) is not None:
        raise InputError(
            f"{model_args.model_name_or_path} lists the data's labels in another order than the data; "
            "compress the model with the dataset (and label column) it was fine-tuned on."
        )
    original.eval()
    example = torch.from_numpy(pixel_array(data.splits["test"], processor, limit=2))
    if compression_args.pruning_method == "structured":
        pruning.check_structured_support(original, example)  # on its own copy
    _, original_parameters = count_parameters(original)  # int8 and ONNX variants hold these, in other formats
    variants = [
        Variant("original", "fine-tuned", Path(model_args.model_name_or_path), original, processor, original_parameters)
    ]

    # ---- Knowledge distillation: the student with the teacher, and without it on the same budget ----
    if compression_args.student_model_name_or_path:
        teacher_args = distillation_args
        if not teacher_args.teacher_model_name_or_path:
            teacher_args = dataclasses.replace(teacher_args, teacher_model_name_or_path=model_args.model_name_or_path)
        for name, with_teacher in (("student_distilled", True), ("student_baseline", False)):
            student, student_processor = load_image_classifier(
                dataclasses.replace(model_args, model_name_or_path=compression_args.student_model_name_or_path),
                data.label_names,
                image_size=data_args.image_size,
            )
            teacher = None
            if with_teacher:
                teacher = load_teacher(
                    teacher_args,
                    data.label_names,
                    student_processor,
                    token=model_args.token,
                    cache_dir=model_args.cache_dir,
                )
            args = dataclasses.replace(training_args, output_dir=str(output_dir / name))
            student = _train(student, student_processor, data, data_args, args, teacher=teacher)
            if training_args.should_save:
                student.save_pretrained(output_dir / name)
                student_processor.save_pretrained(output_dir / name)
            method = (
                f"distilled (alpha {teacher_args.distillation_alpha:g}, T {teacher_args.distillation_temperature:g})"
                if with_teacher
                else "same student, no teacher"
            )
            variants.append(
                Variant(
                    name.replace("_", " "),
                    method,
                    output_dir / name,
                    student,
                    student_processor,
                    count_parameters(student)[1],
                )
            )

    # ---- Pruning: each target from the original (one-shot) or from the previous step (iterative) ----
    if compression_args.pruning_method:
        previous = original
        for sparsity in compression_args.pruning_sparsities:
            name = f"pruned_{compression_args.pruning_method}_{round(100 * sparsity)}"
            model = copy.deepcopy(original if compression_args.pruning_schedule == "one_shot" else previous)
            if compression_args.pruning_method == "unstructured":
                pruning.prune_unstructured(model, sparsity, scope=compression_args.pruning_scope)
            else:
                pruning.prune_structured(model, round((1 - sparsity) * original_parameters), example)
            if compression_args.pruning_finetune_epochs > 0:
                args = dataclasses.replace(
                    training_args,
                    output_dir=str(output_dir / name),
                    num_train_epochs=compression_args.pruning_finetune_epochs,
                    learning_rate=compression_args.pruning_learning_rate or training_args.learning_rate,
                )
                model = _train(model, processor, data, data_args, args)
            if compression_args.pruning_method == "unstructured":
                pruning.make_permanent(model)
            if training_args.should_save:
                pruning.save_pruned(model, output_dir / name)
                processor.save_pretrained(output_dir / name)
            method = f"{compression_args.pruning_method} pruning, {compression_args.pruning_schedule.replace('_', '-')}"
            if compression_args.pruning_finetune_epochs:
                method += f" + {compression_args.pruning_finetune_epochs:g} epoch(s) fine-tuning"
            _, parameters = count_parameters(model)
            measured = (  # zeros among prunable weights, or the share of parameters removed
                pruning.weight_sparsity(model)
                if compression_args.pruning_method == "unstructured"
                else 1 - parameters / original_parameters
            )
            variants.append(
                Variant(
                    f"pruned {round(100 * sparsity)}%",
                    method,
                    output_dir / name,
                    model,
                    processor,
                    parameters,
                    measured,
                    [_UNSTRUCTURED_NOTE] if compression_args.pruning_method == "unstructured" else [],
                )
            )
            previous = model

    results: dict = {}
    if not training_args.should_save:  # other processes helped train; one process exports, measures and reports
        return results

    # ---- Quantization and export (of the fine-tuned model) ----
    if compression_args.quantize_dynamic_int8:
        int8 = quantization.quantize_dynamic_int8(original)
        path = quantization.save_dynamic_int8(int8, output_dir / "int8_dynamic")
        processor.save_pretrained(output_dir / "int8_dynamic")
        variants.append(
            Variant(
                "PyTorch int8",
                "dynamic int8 (Linear layers)",
                path,
                int8,
                processor,
                original_parameters,
                notes=[_TORCH_INT8_NOTE],
            )
        )
    if compression_args.export_onnx:
        onnx_dir = output_dir / "onnx"
        fp32 = onnx_export.export_onnx(original, example, onnx_dir / "model.onnx", opset=compression_args.onnx_opset)
        original.config.save_pretrained(onnx_dir)  # id2label, and a timm model's preprocessing
        processor.save_pretrained(onnx_dir)
        method = f"torch.onnx.export, opset {compression_args.onnx_opset}"
        variants.append(Variant("ONNX", method, fp32, fp32, processor, original_parameters))
        if "dynamic" in compression_args.onnx_quantization:
            path = onnx_export.quantize_onnx_dynamic(fp32, onnx_dir / "model_int8_dynamic.onnx")
            method = "ONNX Runtime dynamic int8 (MatMul layers)"
            variants.append(
                Variant(
                    "ONNX int8 dynamic", method, path, path, processor, original_parameters, notes=[_ONNX_DYNAMIC_NOTE]
                )
            )
        if "static" in compression_args.onnx_quantization:
            calibration = pixel_array(
                data.splits["train"].shuffle(seed=training_args.seed),
                processor,
                limit=compression_args.calibration_samples,
            )
            target = onnx_export.resolve_int8_target(compression_args.onnx_quantization_target)
            path = onnx_export.quantize_onnx_static(
                fp32,
                onnx_dir / "model_int8_static.onnx",
                np.array_split(calibration, max(1, len(calibration) // 16)),
                target=target,
            )
            method = f"ONNX Runtime static int8 (QDQ, {len(calibration)} calibration images, for {target} CPUs)"
            target_note = static_int8_note(
                compression_args.onnx_quantization_target,
                target,
                onnx_export.detect_int8_target(),
                onnx_export.INT8_TARGETS[target],
            )
            variants.append(
                Variant(
                    "ONNX int8 static",
                    method,
                    path,
                    path,
                    processor,
                    original_parameters,
                    notes=[_ONNX_STATIC_NOTE, target_note],
                )
            )

    # ---- Evaluate every variant on the test split and time it on the CPU ----
    threads = compression_args.latency_threads or torch.get_num_threads()
    labels = np.asarray(data.splits["test"]["label"])
    pixels_by_processor: dict[int, np.ndarray] = {}
    rows, reference = [], None
    for variant in variants:
        if id(variant.processor) not in pixels_by_processor:
            pixels_by_processor[id(variant.processor)] = pixel_array(data.splits["test"], variant.processor)
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
            metrics=metrics.classification_metrics(logits, labels, len(data.label_names)),
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

    # ---- Report ----
    results = write_compression_report(
        output_dir,
        rows,
        summary={
            "model": model_args.model_name_or_path,
            "dataset": data_args.dataset_name or data_args.test_dir or data_args.test_file,
            "num_test_samples": len(labels),
            "threads": threads,
            "cpu": cpu_name(),
            "versions": {name: version(name) for name in ("torch", "transformers", "onnxruntime", "torch-pruning")},
            "config": run_args,
        },
    )
    logger.info("Compression report in %s (open report.md first)", output_dir / "report.md")
    return results


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
    args = speed.resolve_training_args(  # bf16, TF32, compile and workers for this machine, as the image recipe
        args, num_train_samples=speed.planned_train_samples(args, len(data.splits["train"]))
    )
    splits = attach_transforms(data.splits, processor, data_args)
    trainer = classification_trainer(model, processor, splits, args, num_labels=len(data.label_names), teacher=teacher)
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(args.output_dir))
    return trainer.model.eval()


def _predictor(model: PreTrainedModel | torch.nn.Module | Path, threads: int) -> Predictor:
    if isinstance(model, Path):
        return onnx_export.onnx_predictor(model, threads)
    return quantization.torch_predictor(model, threads)


if __name__ == "__main__":
    run_recipe(
        main,
        (ModelArguments, ImageDataArguments, CompressionArguments, DistillationArguments, TrainingArguments),
        defaults=speed.parser_defaults(),
    )
