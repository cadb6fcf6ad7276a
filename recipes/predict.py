"""Batch predictions from a fine-tuned model: any hf_ft output dir (full, adapter-only, structurally pruned, dynamic
int8, ONNX) or a Hub checkpoint of any task, on a folder, a file or a Hub split; to JSONL or CSV. With reference labels in the
input, the metrics too, computed by the same code as the training report.

    hf-ft predict --model_name_or_path outputs/vit-base-beans --input my_photos/ --output_file predictions.csv
    hf-ft predict --model_name_or_path outputs/distilbert-sst2 --input stanfordnlp/sst2 --split validation
    python recipes/predict.py --model_name_or_path ... --input ...      # same thing

Every key is a field of PredictArguments (`--help`); `--config file.yaml` works as for the training recipes. Tasks:
image, text (single label, multi-label, regression) and token classification, text generation (SFT), object
detection.
"""

from __future__ import annotations

import importlib
import json
import logging

from hf_ft import predict
from hf_ft.cli import run_recipe
from hf_ft.errors import InputError
from hf_ft.predict import PredictArguments

logger = logging.getLogger("hf_ft")

# pipeline() task -> its module, imported when asked for (the SFT task needs TRL, the `llm` extra)
TASKS = {
    "image-classification": "hf_ft.tasks.image_classification",
    "text-classification": "hf_ft.tasks.text_classification",
    "token-classification": "hf_ft.tasks.token_classification",
    "text-generation": "hf_ft.tasks.sft",
    "object-detection": "hf_ft.tasks.object_detection",
}


def main(args: PredictArguments) -> predict.Predictions:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    # ---- Checks that need nothing loaded: the output file, the task ----
    predict.check_output_file(args.output_file)
    task_name = args.task or predict.pipeline_task(args.model_name_or_path, token=args.token, cache_dir=args.cache_dir)
    if task_name not in TASKS:
        raise InputError(f"hf-ft predict handles {', '.join(TASKS)}; {args.model_name_or_path} is {task_name}: "
                         f"use transformers.pipeline({task_name!r}, model=...) for it")
    task = importlib.import_module(TASKS[task_name])

    # ---- Input (its columns checked), then model ----
    inputs = task.read_inputs(args, predict.training_args(args.model_name_or_path))
    predictor = task.load_predictor(args.model_name_or_path, device=predict.device(args.device), token=args.token,
                                    cache_dir=args.cache_dir)
    logger.info("%s: %s (%s); %d inputs from %s", task_name, args.model_name_or_path, predictor.kind,
                len(inputs.names), args.input)

    # ---- Predict, write, and score a labelled input ----
    predictions = task.predict(predictor, inputs, args)
    predict.write(predictions, args.output_file)
    logger.info("Predictions in %s", args.output_file)
    if predictions.metrics is not None:
        print(json.dumps(predictions.metrics, indent=2))
        logger.info("Metrics in %s", predict.metrics_file(args.output_file))
    return predictions


if __name__ == "__main__":
    run_recipe(main, (PredictArguments,))
