"""Supervised fine-tuning of any `AutoModelForCausalLM` checkpoint on chat, prompt-completion or plain-text data,
with TRL's SFTTrainer; full fine-tuning, LoRA or QLoRA through the same PEFT arguments.

    accelerate launch recipes/sft.py --config recipes/configs/sft/demo_bbc_news_smollm2.yaml [--key value ...]
    python recipes/sft.py --config ...            # same thing, one process

Every YAML key is a field of CausalLMModelArguments, SFTDataArguments (`messages_column_name`, `truncation`,
`exact_match`, ...), PeftArguments, ReportArguments or TRL's SFTConfig (`max_length`, `packing`, `padding_free`,
`assistant_only_loss`, `completion_only_loss`, `chat_template_path`, and every TrainingArguments field); the command
line wins.

Before training the run stops on the mistakes that train without an error (a sample with no trained token, an
end-of-turn token the loss never sees, a collator that masks EOS, a sample over max_length), logs one rendered
training sample with its trained tokens marked, and scores the base model. Writes to output_dir: the model (or
adapter) + tokenizer with its chat template and a generation config that stops at the template's end-of-turn token
(loads with `pipeline("text-generation")`; `merge_adapter: true` adds `merged/`), README.md model card,
eval_results.json (loss, perplexity, exact match, before and after), report.md with the training sample and the
base and tuned generations side by side (also generations.md), training curves and args.yaml.
"""

from __future__ import annotations

import logging

from trl import SFTConfig

from hf_ft import peft, report, runs, speed
from hf_ft.args import PeftArguments, ReportArguments
from hf_ft.cli import run_recipe
from hf_ft.freezing import choose_trainable
from hf_ft.models import log_model_size
from hf_ft.tasks import sft as task

logger = logging.getLogger("hf_ft")


def main(
    model_args: task.CausalLMModelArguments,
    data_args: task.SFTDataArguments,
    peft_args: PeftArguments,
    report_args: ReportArguments,
    training_args: SFTConfig,
) -> dict[str, dict[str, float]]:
    arguments = (model_args, data_args, peft_args, report_args)

    # ---- Logging, and every check that needs no data, cheapest first; then the output dir ----
    run = runs.start(
        training_args,
        *arguments,
        checkpoints=[(model_args.model_name_or_path, model_args.model_revision)],
        cache_dir=model_args.cache_dir,
    )

    # ---- Data (checked before any model is loaded) ----
    with training_args.main_process_first(desc="loading data"):
        data = task.load_data(data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir)
    logger.info("Splits: %s; layout %s", {n: len(s) for n, s in data.splits.items()}, data.data_format)

    # ---- Model and tokenizer (with a chat template, a pad token, and the end-of-turn token as EOS) ----
    model, tokenizer = task.load_model(
        model_args,
        chat_template_path=training_args.chat_template_path,
        quantization_config=peft.quantization_config(peft_args),
    )
    stop_ids = task.stop_token_ids(tokenizer, model)

    # ---- Tokens and the loss mask; the silent mistakes stop the run here ----
    with training_args.main_process_first(desc="tokenizing"):
        splits = task.tokenize(data, tokenizer, training_args)
    task.check_training_samples(
        splits["train"], tokenizer, stop_ids, max_length=training_args.max_length, truncation=data_args.truncation
    )
    if data_args.truncation and training_args.max_length:
        data, splits = task.truncate(data, splits, training_args.max_length)
    training_sample = task.render_trained(tokenizer, splits["train"][0]["input_ids"], splits["train"][0]["labels"])
    logger.info("A training sample (the loss falls inside [[ ]]):\n%s", training_sample)
    model, callbacks = choose_trainable(model, model_args, peft_args, task_type=task.PEFT_TASK_TYPE)
    parameters = log_model_size(model)

    # ---- Trainer (TRL's: packing, padding-free batches, the loss); its collator checked on real samples ----
    training_args = speed.resolve_training_args(training_args, train_size=len(splits["train"]))
    trainer = task.sft_trainer(model, tokenizer, splits, training_args, callbacks=callbacks)
    task.check_collated_labels(trainer.data_collator, splits["train"], stop_ids, tokenizer.pad_token_id)
    earlier_test = (  # continuing an hf_ft run: its test split too, to measure what this data makes it forget
        task.earlier_test(model_args, data_args, trainer, training_args) if report_args.measure_forgetting else None
    )

    # ---- The base model's scores, before any training, on the splits the tuned model is scored on ----
    baseline = task.score_base_model(trainer, tokenizer, data, data_args, splits, run.output_dir)

    # ---- Train (or reload a training that finished before a failed report or push) ----
    run_args = runs.recorded_args(run, training_args, *arguments)
    train_metrics = runs.train(trainer, run, run_args)

    # ---- Score validation and test against the base model; report, model card, merged model, push ----
    return runs.finish(
        trainer,
        run,
        splits=splits,
        evaluate=lambda output_dir, predictions: task.evaluate(
            output_dir, trainer=trainer, data=data, data_args=data_args, splits=splits, baseline=baseline,
            training_sample=training_sample,
        ),
        about=report.About(
            dataset=data_args.dataset_name or data_args.train_file,
            num_samples={name: len(split) for name, split in data.splits.items()},
            parameters=parameters,
        ),
        card=task.card_facts(model_args, data_args, data, training_args, stop_ids),
        run_args=run_args,
        train_metrics=train_metrics,
        peft_args=peft_args,
        report_args=report_args,
        save_with_model=tokenizer.save_pretrained,
        earlier_test=earlier_test,
        predict_splits=False,  # scored per sample by task.evaluate, not by the trainer's batched loss
    )


if __name__ == "__main__":
    run_recipe(
        main,
        (task.CausalLMModelArguments, task.SFTDataArguments, PeftArguments, ReportArguments, SFTConfig),
        defaults=task.parser_defaults(speed.parser_defaults()),
    )
