"""Fine-tune any `AutoModelForTokenClassification` checkpoint (fast tokenizer) on word tagging: NER, chunking, POS.

    accelerate launch recipes/token_cls.py --config recipes/configs/token_cls/bert_base_cased_conll2003.yaml [--key v]
    python recipes/token_cls.py --config ...            # same thing, one process

Every YAML key is a field of ModelArguments, TokenDataArguments (`text_column_name`, `label_column_name`,
`label_all_tokens`, `max_seq_length`, `return_entity_level_metrics`, ... as in transformers' run_ner.py),
PeftArguments, ReportArguments or TrainingArguments; the command line wins. Data: a Hub dataset with `tokens` and
`ner_tags`-style columns (List(ClassLabel) or strings), CoNLL-style text files, or json/jsonl/parquet.

Writes to output_dir: the model + tokenizer (loads with `pipeline("token-classification",
aggregation_strategy="simple")`; the tokenizer's model_max_length is the training max_seq_length), README.md model
card, eval_results.json, per-entity-type and per-tag CSVs, tag confusion matrices, training curves, report.md and
args.yaml. Scores are seqeval's, per word (first sub-token), whatever `label_all_tokens` trained on.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainingArguments

from hf_ft import peft, report, runs, search, speed
from hf_ft.args import ModelArguments, PeftArguments, ReportArguments
from hf_ft.cli import run_recipe
from hf_ft.freezing import choose_trainable
from hf_ft.models import log_model_size
from hf_ft.probe import linear_probe
from hf_ft.text import set_max_seq_length
from hf_ft.tasks import token_classification as task

logger = logging.getLogger("hf_ft")


def main(
    model_args: ModelArguments,
    data_args: task.TokenDataArguments,
    peft_args: PeftArguments,
    search_args: search.SearchArguments,
    report_args: ReportArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    arguments = (model_args, data_args, peft_args, search_args, report_args)

    # ---- Logging, and every check that needs no data, cheapest first; then the output dir ----
    search.check_search(search_args, training_args, model_args, peft_args)
    run = runs.start(
        training_args,
        *arguments,
        checkpoints=[(model_args.model_name_or_path, model_args.model_revision)],
        cache_dir=model_args.cache_dir,
    )

    # ---- Data: words and their tags, checked before any model is loaded ----
    with training_args.main_process_first(desc="loading data"):
        data = task.load_data(
            data_args, seed=training_args.seed, token=model_args.token, cache_dir=model_args.cache_dir
        )
    logger.info("Sentences: %s; %d tags: %s", dict(data.splits.num_rows), len(data.label_names), data.label_names[:40])

    # ---- Model and fast tokenizer (tags matched with the checkpoint's by name); sub-word alignment ----
    def load_model(model_args: ModelArguments, peft_args: PeftArguments):  # a search calls it once per trial
        quantization = peft.quantization_config(peft_args)  # QLoRA's 4-bit base
        model, tokenizer, label_names = task.load_model(model_args, data.label_names, quantization_config=quantization)
        model, callbacks = choose_trainable(model, model_args, peft_args, task_type=task.PEFT_TASK_TYPE)
        return model, callbacks, tokenizer, label_names  # adapters, or freezing

    model, callbacks, tokenizer, label_names = load_model(model_args, peft_args)
    max_seq_length = set_max_seq_length(data_args.max_seq_length, tokenizer, model.config)
    with training_args.main_process_first(desc="tokenizing"):
        splits = task.tokenize(
            data, tokenizer, label_names, max_seq_length,
            label_all_tokens=data_args.label_all_tokens, pad_to_max_length=data_args.pad_to_max_length,
        )
    earlier_test = (  # continuing an hf_ft run: its test split too, to measure what this data makes it forget
        task.earlier_test(model_args, data_args, label_names, tokenizer, max_seq_length)
        if report_args.measure_forgetting else None
    )
    parameters = log_model_size(model)

    # ---- Trainer ----
    training_args = speed.resolve_training_args(training_args, train_size=len(splits["train"]))
    trainer = task.token_trainer(
        model, tokenizer, splits, training_args, label_names, callbacks=callbacks,
        seqeval_scheme=data_args.seqeval_scheme, entity_level=data_args.return_entity_level_metrics,
        class_weight=data_args.class_weight,
    )

    # ---- Train (or reload a training that finished before a failed report or push); or search ----
    run_args = runs.recorded_args(run, training_args, *arguments)  # as resolved: what runs
    if search_args.n_trials:  # trials instead of one training: their table and plot, and best.yaml to retrain
        return search.run_search(
            trainer, run, search_args, build=lambda *args: load_model(*args)[:2], model_side=(model_args, peft_args),
            callbacks=callbacks, default_metric=task.SEARCH_METRIC, run_args=run_args,
        )
    # linear_probe_baseline: a logistic regression on the frozen pretrained features, fitted before training
    probe = linear_probe(trainer, splits) if report_args.linear_probe_baseline else None
    train_metrics = runs.train(trainer, run, run_args)

    # ---- Evaluate validation and test per word; report, model card, merged model, push ----
    return runs.finish(
        trainer,
        run,
        splits=splits,
        evaluate=lambda output_dir, predictions: task.evaluate(
            output_dir, predictions, data, label_names, seqeval_scheme=data_args.seqeval_scheme,
            entity_level=data_args.return_entity_level_metrics,
        ),
        about=report.About(
            dataset=data_args.dataset_name or data_args.train_file,
            num_samples=dict(data.splits.num_rows),
            parameters=parameters,
        ),
        card=task.card_facts(model_args, data_args, label_names, max_seq_length),
        run_args=run_args,
        train_metrics=train_metrics,
        peft_args=peft_args,
        report_args=report_args,
        save_with_model=tokenizer.save_pretrained,
        earlier_test=earlier_test,
        linear_probe=probe,
    )


if __name__ == "__main__":
    run_recipe(
        main,
        (ModelArguments, task.TokenDataArguments, PeftArguments, search.SearchArguments, ReportArguments,
         TrainingArguments),
        defaults=speed.parser_defaults(),
    )
