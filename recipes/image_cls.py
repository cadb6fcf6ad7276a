"""Fine-tune an image classifier (transformers or timm checkpoint) on a Hub or local dataset.

    accelerate launch recipes/image_cls.py --config recipes/configs/image_cls/vit_beans.yaml [--key value ...]
    python recipes/image_cls.py --config ...            # same thing, one process

Every YAML key is a field of ModelArguments, ImageDataArguments, PeftArguments, DistillationArguments,
RegularizationArguments, SearchArguments, ReportArguments or transformers' TrainingArguments; the command line
overrides the YAML. Hardware (CPU, GPUs, DDP/FSDP/DeepSpeed) comes from the Accelerate config. Speed settings
the config leaves unset (bf16, TF32, torch.compile, data loader workers) follow the machine and the run's length
(`hf_ft.speed`); an Accelerate config's `mixed_precision` or an explicit key wins.

Writes to output_dir: the model + preprocessing config (loads with `pipeline("image-classification")`,
and with `timm.create_model("local-dir:...")` for timm models), README.md model card, eval_results.json,
per-class CSVs, confusion matrices, training curves, report.md and args.yaml. With `n_trials`, a hyperparameter
search instead (`hf_ft.search`): the trials' table and plot, and best.yaml to retrain the best.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainingArguments

from hf_ft import peft, report, runs, search, speed
from hf_ft.args import ModelArguments, PeftArguments, ReportArguments
from hf_ft.cli import run_recipe
from hf_ft.compress.args import DistillationArguments
from hf_ft.compress.distillation import load_teacher
from hf_ft.freezing import choose_trainable
from hf_ft.models import log_model_size
from hf_ft.probe import linear_probe
from hf_ft.tasks import image_classification as task
from hf_ft.tasks.image_classification import ImageDataArguments
from hf_ft.vision.models import use_channels_last
from hf_ft.vision.regularization import RegularizationArguments, check_regularization, ema_callbacks

logger = logging.getLogger("hf_ft")


def main(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    peft_args: PeftArguments,
    distillation_args: DistillationArguments,
    reg_args: RegularizationArguments,
    search_args: search.SearchArguments,
    report_args: ReportArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    arguments = (model_args, data_args, peft_args, distillation_args, reg_args, search_args, report_args)

    # ---- Logging, and every check that needs no data, cheapest first; then the output dir ----
    training_args.remove_unused_columns = False  # the transforms need the raw `image` column
    if peft_args.peft_method:
        training_args.label_names = ["labels"]  # PEFT's forward(*args, **kwargs) hides `labels` from the Trainer
    check_regularization(reg_args, peft_args, training_args)
    search.check_search(search_args, training_args, model_args, peft_args)
    run = runs.start(
        training_args,
        *arguments,
        checkpoints=[
            (model_args.model_name_or_path, model_args.model_revision),
            (distillation_args.teacher_model_name_or_path, distillation_args.teacher_model_revision),
        ],
        cache_dir=model_args.cache_dir,
    )

    # ---- Data ----
    with training_args.main_process_first(desc="loading data"):  # one process fills the datasets cache
        data = task.load_image_classification_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    logger.info("Splits: %s; %d labels: %s", dict(data.splits.num_rows), len(data.label_names), data.label_names[:30])

    # ---- Model (labels matched with the checkpoint's by name), as it trains; a search loads one per trial ----
    quantization = peft.quantization_config(peft_args)  # QLoRA's 4-bit base

    def load_model(model_args: ModelArguments, peft_args: PeftArguments):
        model, processor = task.load_image_classifier(
            model_args, data.label_names, image_size=data_args.image_size, quantization_config=quantization
        )
        if use_channels_last(model):
            logger.info("Convnet: weights stored channels-last (NHWC), the faster layout for convolutions")
        return (*choose_trainable(model, model_args, peft_args), processor)  # adapters, or freezing

    model, model_callbacks, processor = load_model(model_args, peft_args)
    data = task.follow_model_labels(data, model)
    earlier_test = (  # continuing an hf_ft run: its test split too, to measure what this data makes it forget
        task.earlier_test(model_args, data_args, model, processor) if report_args.measure_forgetting else None
    )
    callbacks = model_callbacks + ema_callbacks(reg_args, resume_from=run.resume_from)  # EMA weights become the model
    parameters = log_model_size(model)
    teacher = load_teacher(  # knowledge distillation; None without a teacher
        distillation_args, data.label_names, processor, token=model_args.token, cache_dir=model_args.cache_dir
    )

    # ---- Trainer ----
    training_args = speed.resolve_training_args(training_args, train_size=len(data.splits["train"]))
    splits = task.training_splits(data, processor, data_args, training_args)
    trainer = task.classification_trainer(
        model, processor, splits, training_args, num_labels=len(data.label_names), teacher=teacher, callbacks=callbacks,
        class_weight=data_args.class_weight, class_balanced_sampling=data_args.class_balanced_sampling,
        regularization=reg_args,  # mixup/CutMix, layer-wise LR decay
    )

    # ---- Train (or reload a training that finished before a failed report or push); or search ----
    run_args = runs.recorded_args(run, training_args, *arguments)  # as resolved: what runs
    if search_args.n_trials:  # trials instead of one training: their table and plot, and best.yaml to retrain
        return search.run_search(
            trainer, run, search_args, build=lambda *args: load_model(*args)[:2], model_side=(model_args, peft_args),
            callbacks=model_callbacks, default_metric=task.SEARCH_METRIC, run_args=run_args,
        )
    # linear_probe_baseline: a logistic regression on the frozen pretrained features, fitted before training
    probe = (linear_probe(trainer, task.probe_splits(data, processor))
             if report_args.linear_probe_baseline else None)
    train_metrics = runs.train(trainer, run, run_args)  # with PEFT, output_dir holds the adapter folder only

    # ---- Evaluate validation and test; report, model card, merged model, push ----
    return runs.finish(
        trainer,
        run,
        splits=splits,
        evaluate=lambda output_dir, predictions: task.evaluate(output_dir, predictions, data),
        about=report.About(
            dataset=data_args.dataset_name or data_args.train_dir or data_args.train_file,
            num_samples=dict(data.splits.num_rows),
            parameters=parameters,
            teacher=distillation_args.teacher_model_name_or_path,
        ),
        card=task.card_facts(model_args, data_args, data, processor, model),
        run_args=run_args,
        train_metrics=train_metrics,
        peft_args=peft_args,
        report_args=report_args,
        save_with_model=processor.save_pretrained,
        earlier_test=earlier_test,
        linear_probe=probe,
    )


if __name__ == "__main__":
    run_recipe(
        main,
        (ModelArguments, ImageDataArguments, PeftArguments, DistillationArguments, RegularizationArguments,
         search.SearchArguments, ReportArguments, TrainingArguments),
        defaults=speed.parser_defaults(),
    )
