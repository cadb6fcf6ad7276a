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

import logging
from importlib.metadata import version

import torch
from transformers import TrainingArguments

from hf_ft import runs, speed
from hf_ft.args import ModelArguments
from hf_ft.cli import run_recipe
from hf_ft.compress import variants as compress
from hf_ft.compress.args import CompressionArguments, DistillationArguments
from hf_ft.compress.inference import cpu_name
from hf_ft.compress.report import write_compression_report
from hf_ft.tasks.image_classification import ImageDataArguments, load_image_classification_data

logger = logging.getLogger("hf_ft")


def main(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    compression_args: CompressionArguments,
    distillation_args: DistillationArguments,
    training_args: TrainingArguments,
) -> dict:
    arguments = (model_args, data_args, compression_args, distillation_args)

    # ---- Logging, and every check that needs no data, cheapest first; then the output dir ----
    compress.check_compression_args(compression_args, training_args)
    run = runs.start(
        training_args,
        *arguments,
        checkpoints=[
            (model_args.model_name_or_path, model_args.model_revision),
            (compression_args.student_model_name_or_path, model_args.model_revision),
            (distillation_args.teacher_model_name_or_path, distillation_args.teacher_model_revision),
        ],
        cache_dir=model_args.cache_dir,
    )
    run_args = runs.recorded_args(run, training_args, *arguments)
    if training_args.should_save:
        runs.write_args(run.output_dir, run_args)

    # ---- Data: the dataset the model was fine-tuned on; variants are compared on its test split ----
    with training_args.main_process_first(desc="loading data"):
        data = load_image_classification_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    logger.info("Splits: %s", dict(data.splits.num_rows))

    # ---- The fine-tuned model as saved; the students and pruned models trained from it (on every process) ----
    original, example = compress.load_original(model_args, data, compression_args)
    variants = [
        original,
        *compress.distilled_students(model_args, data, data_args, compression_args, distillation_args, training_args),
        *compress.pruned_variants(original, example, data, data_args, compression_args, training_args),
    ]
    if not training_args.should_save:  # other processes helped train; one process exports, measures and reports
        return {}

    # ---- int8 and ONNX of the fine-tuned model; every variant measured on the test split and the CPU ----
    variants += compress.exported_variants(original, example, data, compression_args, training_args)
    threads = compression_args.latency_threads or torch.get_num_threads()
    rows = compress.measure(variants, data, compression_args, run.output_dir, threads=threads)

    # ---- Report ----
    results = write_compression_report(
        run.output_dir,
        rows,
        summary={
            "model": model_args.model_name_or_path,
            "dataset": data_args.dataset_name or data_args.test_dir or data_args.test_file,
            "num_test_samples": len(data.splits["test"]),
            "threads": threads,
            "cpu": cpu_name(),
            "versions": {name: version(name) for name in ("torch", "transformers", "onnxruntime", "torch-pruning")},
            "config": run_args,
        },
    )
    logger.info("Compression report in %s (open report.md first)", run.output_dir / "report.md")
    return results


if __name__ == "__main__":
    run_recipe(
        main,
        (ModelArguments, ImageDataArguments, CompressionArguments, DistillationArguments, TrainingArguments),
        defaults=speed.parser_defaults(),
    )
