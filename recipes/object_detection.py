"""Fine-tune an object detector (any `AutoModelForObjectDetection` checkpoint: DETR family, RT-DETR, D-FINE, YOLOS,
timm backbones included) on COCO-format or Hub data, its class head replaced for the data's categories.

    accelerate launch recipes/object_detection.py --config recipes/configs/object_detection/rtdetr_v2_r50vd_cppe5.yaml
    python recipes/object_detection.py --config ...            # same thing, one process

Every YAML key is a field of ModelArguments, DetectionDataArguments, ReportArguments or transformers'
TrainingArguments; the command line overrides the YAML. The settings detection needs (`remove_unused_columns`,
`eval_do_concat_batches`, `batch_eval_metrics`, `label_names`; `ignore_mismatched_sizes` for the new head) are set
for you.

Writes to output_dir: the model + image processor (loads with `pipeline("object-detection")`), README.md model card,
eval_results.json (COCO mAP per split, the published checkpoint's beside it), pr_curves.png, detections.png,
training curves, report.md and args.yaml.
"""

from __future__ import annotations

import logging

from transformers import TrainingArguments

from hf_ft import report, runs, speed
from hf_ft.args import ModelArguments, PeftArguments, ReportArguments
from hf_ft.cli import run_recipe
from hf_ft.models import log_model_size
from hf_ft.tasks import object_detection as task
from hf_ft.tasks.object_detection import DetectionDataArguments

logger = logging.getLogger("hf_ft")


def main(
    model_args: ModelArguments,
    data_args: DetectionDataArguments,
    report_args: ReportArguments,
    training_args: TrainingArguments,
) -> dict[str, dict[str, float]]:
    arguments = (model_args, data_args, report_args)

    # ---- Logging, and every check that needs no data, cheapest first; then the output dir ----
    training_args = task.detection_training_args(training_args)
    run = runs.start(
        training_args, *arguments, checkpoints=[(model_args.model_name_or_path, model_args.model_revision)],
        cache_dir=model_args.cache_dir,
    )

    # ---- Data: boxes converted and checked, before any model is loaded ----
    with training_args.main_process_first(desc="loading data"):  # one process fills the datasets cache
        data = task.load_detection_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    logger.info("Splits: %s; %d categories: %s", dict(data.splits.num_rows), len(data.label_names), data.label_names[:30])

    training_args = speed.resolve_training_args(training_args, train_size=len(data.splits["train"]))

    # ---- The published checkpoint on the evaluation images, for the classes it knows by name ----
    baseline = task.score_original_model(model_args, data, data_args, training_args, run.output_dir)

    # ---- Model: a class head for the data's categories, the rest of the detector kept ----
    model, processor, model_labels = task.load_detector(model_args, data.label_names, image_size=data_args.image_size)
    data = task.follow_model_labels(data, model_labels)
    parameters = log_model_size(model)
    earlier_test = (  # continuing an hf_ft run: its test split too, to measure what this data makes it forget
        task.earlier_test(model_args, data_args, processor, model_labels) if report_args.measure_forgetting else None
    )

    # ---- Trainer ----
    splits = task.attach_transforms(data.splits, processor, data_args)
    trainer = task.detection_trainer(model, processor, splits, training_args, max_detections=data_args.max_detections)

    # ---- Train (or reload a training that finished before a failed report or push) ----
    run_args = runs.recorded_args(run, training_args, *arguments)
    train_metrics = runs.train(trainer, run, run_args)

    # ---- Evaluate validation and test; report, model card, push ----
    return runs.finish(
        trainer,
        run,
        splits=splits,
        evaluate=lambda output_dir, predictions: task.evaluate(output_dir, predictions, data, data_args, baseline),
        about=report.About(
            dataset=data_args.dataset_name or data_args.train_dir or data_args.train_file,
            num_samples=dict(data.splits.num_rows),
            parameters=parameters,
        ),
        card=task.card_facts(model_args, data_args, data, processor),
        run_args=run_args,
        train_metrics=train_metrics,
        peft_args=PeftArguments(),
        report_args=report_args,
        save_with_model=processor.save_pretrained,
        earlier_test=earlier_test,
    )


if __name__ == "__main__":
    run_recipe(
        main, (ModelArguments, DetectionDataArguments, ReportArguments, TrainingArguments), defaults=speed.parser_defaults()
    )
