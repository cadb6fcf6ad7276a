"""Fine-tune an image classifier (transformers or timm checkpoint) on a Hub or local dataset.

    accelerate launch recipes/image_cls.py --config recipes/configs/image_cls/vit_beans.yaml [--key value ...]
    python recipes/image_cls.py --config ...            # same thing, one process

Every YAML key is a field of ModelArguments, ImageDataArguments, PeftArguments, DistillationArguments,
ReportArguments or transformers' TrainingArguments; the command line overrides the YAML. Hardware (CPU, GPUs,
DDP/FSDP/DeepSpeed) comes from the Accelerate config. Speed settings the config leaves unset (bf16, TF32,
torch.compile, data loader workers) follow the machine and the run's length (`hf_ft.speed`); an Accelerate
config's `mixed_precision` or an explicit key wins.

Writes to output_dir: the model + preprocessing config (loads with `pipeline("image-classification")`,
and with `timm.create_model("local-dir:...")` for timm models), README.md model card, eval_results.json,
per-class CSVs, confusion matrices, training curves, report.md and args.yaml.
"""

from __future__ import annotations

import logging

import numpy as np
from transformers import TrainingArguments, set_seed

from hf_ft import hub, peft, report, runs, speed
from hf_ft.args import (
    DistillationArguments,
    ImageDataArguments,
    ModelArguments,
    PeftArguments,
    ReportArguments,
    check_peft_and_freezing,
    non_default,
    to_plain_dict,
)
from hf_ft.cli import run_recipe
from hf_ft.data import attach_transforms, load_image_classification_data
from hf_ft.data.cache import cache_decoded_images, cached_size_for
from hf_ft.data.labels import label_counts
from hf_ft.data.transforms import data_config
from hf_ft.distillation import load_teacher
from hf_ft.freezing import FreezeBackboneCallback, set_trainable
from hf_ft.models import count_parameters, is_timm, load_image_classifier
from hf_ft.runs import setup_logging
from hf_ft.training import classification_trainer, global_batch_size

logger = logging.getLogger("hf_ft")


def main(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    peft_args: PeftArguments,
    distillation_args: DistillationArguments,
    report_args: ReportArguments,
    training_args: TrainingArguments,
) -> dict[str, dict[str, float]]:
    setup_logging(training_args.should_log)
    logger.info(
        "Arguments (non-default): %s",
        non_default(
            model_args,
            data_args,
            peft_args,
            distillation_args,
            report_args,
            training_args,
            defaults=speed.parser_defaults(),
        ),
    )

    # ---- Checks that need no data, cheapest first (sources, trackers, push); then the output dir ----
    check_peft_and_freezing(model_args, peft_args)
    quantization = peft.quantization_config(peft_args)  # QLoRA: fails here, not after loading, without a GPU
    report.check_compare_with(report_args.compare_with)
    training_args.remove_unused_columns = False  # the transforms need the raw `image` column
    if peft_args.peft_method:
        training_args.label_names = ["labels"]  # PEFT's forward(*args, **kwargs) hides `labels` from the Trainer
    arguments = (model_args, data_args, peft_args, distillation_args, report_args)
    run = runs.start(
        training_args,
        to_plain_dict(*arguments, training_args),
        checkpoints=[
            (model_args.model_name_or_path, model_args.model_revision),
            (distillation_args.teacher_model_name_or_path, distillation_args.teacher_model_revision),
        ],
        cache_dir=model_args.cache_dir,
    )

    # ---- Data ----
    with training_args.main_process_first(desc="loading data"):  # one process fills the datasets cache
        data = load_image_classification_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    logger.info("Splits: %s", {name: len(split) for name, split in data.splits.items()})
    logger.info("%d labels: %s", len(data.label_names), data.label_names[:30])

    # ---- Model ----
    model, processor = load_image_classifier(
        model_args, data.label_names, image_size=data_args.image_size, quantization_config=quantization
    )
    if speed.use_channels_last(model):
        logger.info("Convnet: weights stored channels-last (NHWC), the faster layout for convolutions")
    if peft_args.peft_method:
        model = peft.apply_peft(model, peft_args)  # adapters + the new head and BatchNorm layers train
    else:
        set_trainable(model, model_args.trainable_blocks)
    trainable, total = count_parameters(model)
    logger.info(
        "Model %s: %s trainable of %s parameters (%.1f%%)",
        type(model).__name__,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )

    # ---- Teacher (knowledge distillation, optional) ----
    teacher = None
    if distillation_args.teacher_model_name_or_path:
        teacher = load_teacher(
            distillation_args, data.label_names, processor, token=model_args.token, cache_dir=model_args.cache_dir
        )
        logger.info(
            "Distilling from %s (alpha %.2f, T %.1f)",
            distillation_args.teacher_model_name_or_path,
            teacher.alpha,
            teacher.temperature,
        )

    # ---- Trainer ----
    training_args = speed.resolve_training_args(
        training_args, num_train_samples=speed.planned_train_samples(training_args, len(data.splits["train"]))
    )
    if data_args.cache_images:  # decode every training image once, not once an epoch
        with training_args.main_process_first(desc="caching decoded images"):
            data.splits["train"] = cache_decoded_images(
                data.splits["train"],
                max_size=cached_size_for(processor),
                num_proc=training_args.dataloader_num_workers or None,
            )
    splits = attach_transforms(data.splits, processor, data_args)
    callbacks = []
    if model_args.freeze_backbone_epochs > 0:
        callbacks.append(FreezeBackboneCallback(model, model_args.freeze_backbone_epochs, model_args.trainable_blocks))
    trainer = classification_trainer(
        model, processor, splits, training_args, num_labels=len(data.label_names), teacher=teacher, callbacks=callbacks
    )
    global_batch = global_batch_size(training_args)
    logger.info("Effective global batch size: %d (%d processes)", global_batch, training_args.world_size)

    # ---- Train (or reload a training that finished before a failed report or push) ----
    run_args = runs.recorded_args(to_plain_dict(*arguments, training_args), run)  # as resolved: what runs
    train_metrics = runs.train(trainer, run, run_args)  # with PEFT, output_dir holds the adapter folder only

    # ---- Evaluate on validation and test ----
    # `predict`, never `evaluate(split)`: with persistent workers, Trainer.get_eval_dataloader caches its loader
    # under the dataset's name, and every dataset object is named "eval": it would evaluate validation again
    predictions = {}
    for name in ("validation", "test"):
        if name in splits:
            output = trainer.predict(splits[name], metric_key_prefix="eval" if name == "validation" else "test")
            trainer.log_metrics(name, output.metrics)
            logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            predictions[name] = (np.asarray(logits), np.asarray(output.label_ids))

    # ---- Report, model card, merged model, push (main process only) ----
    results: dict[str, dict[str, float]] = {}
    if trainer.is_world_process_zero():
        adapter = None
        if peft_args.peft_method:
            adapter = {"method": peft_args.peft_method, "size_bytes": peft.adapter_size_bytes(training_args.output_dir)}
        results = report.write_report(
            training_args.output_dir,
            splits=predictions,
            label_names=data.label_names,
            train_label_counts=label_counts(data.splits["train"], len(data.label_names)).tolist(),
            log_history=trainer.state.log_history,
            summary={
                "run_name": training_args.run_name,
                "model": model_args.model_name_or_path,
                "dataset": data_args.dataset_name or data_args.train_dir or data_args.train_file,
                "task": "image-classification",
                "config": run_args,
                "num_samples": {name: len(split) for name, split in data.splits.items()},
                "trainable_parameters": trainable,
                "total_parameters": total,
                "train_runtime_s": train_metrics.get("train_runtime"),
                "adapter": adapter,
                "teacher": distillation_args.teacher_model_name_or_path,
            },
            compare_with=report_args.compare_with,
        )
        hub.write_model_card(
            training_args.output_dir,
            base_model=model_args.model_name_or_path,
            dataset_name=data_args.dataset_name,
            task="image-classification",
            label_names=data.label_names,
            results=results,
            facts={"image_size": "{1}x{2}".format(*data_config(processor)["input_size"])},  # height x width
            training_args={
                "learning_rate": training_args.learning_rate,
                "num_train_epochs": training_args.num_train_epochs,
                "per_device_train_batch_size": training_args.per_device_train_batch_size,
                "effective_batch_size": global_batch,
                "seed": training_args.seed,
                "mixed_precision": training_args.mixed_precision,
            },
            library_name="peft" if adapter else "timm" if is_timm(model) else "transformers",
            repo_id=run.repo_id,
        )
        if peft_args.merge_adapter:
            merged_dir = f"{training_args.output_dir}/merged"
            peft.save_merged(trainer.model, merged_dir)
            processor.save_pretrained(merged_dir)
            logger.info("Merged model (loads with pipeline(), no PEFT) in %s", merged_dir)
        if run.repo_id:
            url = hub.push_to_hub(
                training_args.output_dir, run.repo_id, token=training_args.hub_token, private=training_args.hub_private_repo
            )
            logger.info("Pushed to %s", url)
        logger.info("Model, report and card in %s (open report.md first)", training_args.output_dir)
    trainer.end()
    return results


if __name__ == "__main__":
    run_recipe(
        main,
        (ModelArguments, ImageDataArguments, PeftArguments, DistillationArguments, ReportArguments, TrainingArguments),
        defaults=speed.parser_defaults(),
    )
