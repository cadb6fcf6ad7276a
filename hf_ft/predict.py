"""Batch inference, the parts every task shares: the arguments, the input (a folder, a file or a Hub split), batches
on the device with a progress bar, and the predictions file. The task modules turn inputs into model outputs and
outputs into rows and metrics; `recipes/predict.py` (`hf-ft predict`) strings them together.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import yaml
from datasets import Dataset, DatasetDict, load_dataset
from huggingface_hub import ModelCard, constants
from transformers import AutoConfig
from tqdm.auto import tqdm

from .data import labels
from .data.sources import FILE_BUILDERS
from .errors import InputError
from .models import offline_hint

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".jsonl", ".csv")
ARGS_FILE = "args.yaml"
# A model class's suffix -> its pipeline() task: for saved models without a model card (an exported variant).
_CLASS_TASKS = {
    "ForImageClassification": "image-classification",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForCausalLM": "text-generation",
    "ForObjectDetection": "object-detection",
}


@dataclass
class PredictArguments:
    """What `hf-ft predict` reads, with what, and where it writes."""

    model_name_or_path: str = field(
        metadata={"help": "An hf_ft output dir (full model, adapter-only, structurally pruned, dynamic int8), an .onnx "
                          "file or a dir holding model.onnx (image classifiers), or a Hub checkpoint."}
    )
    input: str = field(
        metadata={"help": "What to predict: a folder of images (class subfolders make it labelled), a .csv/.jsonl/"
                          ".json/.parquet file, or a Hub dataset id (with --split)."}
    )
    output_file: str = field(
        default="predictions.jsonl",
        metadata={"help": "Where the predictions go, one row per input: .jsonl or .csv. An existing file is refused."},
    )
    split: str = field(default="test", metadata={"help": "The split of a Hub dataset (or of a folder with splits)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    task: str | None = field(
        default=None,
        metadata={"help": "The pipeline() task name; by default the model card's pipeline_tag, else the model class."},
    )
    top_k: int = field(default=5, metadata={"help": "Labels (with scores) per input, best first; at most the labels."})
    batch_size: int = field(default=32, metadata={"help": "Inputs per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cuda, cuda:1, mps or cpu; by default cuda if present."})
    max_samples: int | None = field(default=None, metadata={"help": "Predict only the first N inputs."})
    score_threshold: float = field(
        default=0.5, metadata={"help": "Object detection: boxes scoring at least this are written (mAP uses all)."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Text generation: tokens per answer; by default the training run's, else 64."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "The image column; by default the training run's, else found."})
    text_column_names: str | None = field(
        default=None, metadata={"help": "The text column(s), comma-separated for pairs; by default the training run's."})
    label_column_name: str | None = field(
        default=None,
        metadata={"help": "The reference labels, for metrics; by default the training run's when the input has it."},
    )
    token: str | None = field(default=None, metadata={"help": "Hub token for private models or datasets."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})

    def __post_init__(self):
        if Path(self.output_file).suffix not in OUTPUT_SUFFIXES:
            raise InputError(f"--output_file {self.output_file}: write .jsonl or .csv")
        for name in ("top_k", "batch_size", "max_samples", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} must be at least 1, got {value}")


@dataclass
class Predictor:
    """A loaded model ready for inference, with what prepares its inputs (a tokenizer or an image processor)."""

    model: Any  # a PreTrainedModel (or PeftModel), in eval mode on `device`
    preprocessor: Any
    label_names: list[str]  # the classes it predicts, in id order (none for text generation)
    kind: str  # what was loaded, for the log: model or adapter
    device: torch.device


@dataclass
class Inputs:
    """The input, its columns found and checked before any model loads."""

    split: Dataset
    columns: list[str]  # what the model reads: the image column, or the text column(s)
    names: list[str]  # one per input, for the rows: a file path, a row number, or the text
    label_column: str | None  # the references, if the input has them
    trained: dict[str, Any]  # the training run's arguments (`training_args`), e.g. its label delimiter


@dataclass
class Predictions:
    """One row per input, in input order (plain JSON values), and the metrics when the input had references."""

    rows: list[dict[str, Any]]
    metrics: dict[str, float] | None = None


def check_output_file(path: str | Path) -> None:
    """Refuse an existing predictions (or metrics) file before any work: nothing the user had is overwritten."""
    for existing in (Path(path), metrics_file(path)):
        if existing.exists():
            raise InputError(f"{existing} already exists: remove it or pass another --output_file")


def metrics_file(path: str | Path) -> Path:
    """Where a labelled input's metrics go, beside the predictions: `<stem>_metrics.json`."""
    return Path(path).with_name(f"{Path(path).stem}_metrics.json")


def pipeline_task(source: str, *, token: str | None = None, cache_dir: str | None = None) -> str:
    """The `pipeline()` task of a saved model: its model card's `pipeline_tag`, else its config's model class.

    Raises:
        InputError: neither says (pass --task).
    """
    folder = Path(source).parent if source.endswith(".onnx") else Path(source)
    if (folder / "README.md").is_file():
        tag = ModelCard.load(folder / "README.md").data.pipeline_tag
        if tag:
            return tag
    config_source = str(folder) if folder.exists() else source
    with offline_hint(source):
        config = AutoConfig.from_pretrained(config_source, token=token, cache_dir=cache_dir)
    for architecture in config.architectures or ():
        for suffix, task in _CLASS_TASKS.items():
            if architecture.endswith(suffix):
                return task
    raise InputError(f"cannot tell the task of {source} (no model card pipeline_tag, model class "
                     f"{config.architectures}): pass --task, e.g. --task image-classification")


def training_args(model_name_or_path: str) -> dict[str, Any]:
    """The arguments of the hf_ft run that wrote `model_name_or_path` (its `args.yaml`, also beside an adapter or
    an exported file's folder's parent), or {} for anything else: the columns it trained on are the defaults here."""
    path = Path(model_name_or_path)
    for folder in (path, path.parent, path.parent.parent) if path.exists() else ():
        if (folder / ARGS_FILE).is_file():
            return yaml.safe_load((folder / ARGS_FILE).read_text()) or {}
    return {}


def load_input(args: PredictArguments, *, folder_builder: str | None = None,
               file_readers: Mapping[str, Callable[[Path], Dataset]] | None = None) -> Dataset:
    """The input as one Dataset: a folder (through `folder_builder`, e.g. "imagefolder"), a file (a task's own
    `file_readers` by suffix first, e.g. CoNLL, else datasets' csv/json/parquet builders), or a Hub split.

    Raises:
        InputError: a folder for a task that reads none, a file of an unknown kind, a missing split, an empty input,
            or a Hub dataset asked for while offline and not cached.
    """
    path = Path(args.input).expanduser()
    if path.is_dir():
        if folder_builder is None:
            raise InputError(f"--input {args.input} is a folder: this task reads a .csv/.jsonl/.parquet file or a Hub "
                             "dataset")
        data = load_dataset(folder_builder, data_dir=str(path), cache_dir=args.cache_dir)
    elif path.is_file():
        readers = dict(file_readers or {})
        if path.suffix in readers:
            data = DatasetDict({"train": readers[path.suffix](path)})
        elif path.suffix in FILE_BUILDERS:
            data = load_dataset(FILE_BUILDERS[path.suffix], data_files=str(path), cache_dir=args.cache_dir)
        else:
            raise InputError(f"--input {args.input}: read {', '.join([*readers, *FILE_BUILDERS])} files, or a folder")
    else:
        data = _load_hub(args)
    split = _pick_split(data, args)
    if args.max_samples is not None:
        split = split.select(range(min(args.max_samples, len(split))))
    if len(split) == 0:
        raise InputError(f"--input {args.input} holds no examples")
    return split


def _load_hub(args: PredictArguments) -> DatasetDict:
    try:
        return load_dataset(args.input, args.dataset_config_name, token=args.token, cache_dir=args.cache_dir)
    except (ConnectionError, FileNotFoundError, OSError) as err:
        if constants.HF_HUB_OFFLINE:
            raise InputError(f"--input {args.input} is no local file or folder, and the Hub dataset of that name is "
                             "not cached while HF_HUB_OFFLINE=1") from err
        raise


def _pick_split(data: DatasetDict, args: PredictArguments) -> Dataset:
    if len(data) == 1:  # a file, or a folder without splits: datasets calls it "train"
        return next(iter(data.values()))
    if args.split not in data:
        raise InputError(f"--input {args.input} has splits {list(data)}, not {args.split!r}: pass --split")
    return data[args.split]


def input_column(split: Dataset, requested: str | None, trained: str | None, find: Callable[[Dataset, str | None], str]
                 ) -> str:
    """The column to read: the one asked for, else the one the model trained on when the input has it, else `find`'s
    guess (`find(split, requested)` raises, naming the columns, when there is none)."""
    if requested is None and trained in split.column_names:
        return trained
    return find(split, requested)


def reference_column(split: Dataset, requested: str | None, trained: str | None) -> str | None:
    """The column of reference labels, or None for an unlabelled input (unless one was asked for by name)."""
    try:
        return input_column(split, requested, trained, labels.find_label_column)
    except InputError:
        if requested is not None:
            raise
        return None


def device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batches(items: Sequence[Any], batch_size: int, desc: str) -> Iterator[Sequence[Any]]:
    """`items` in batches of `batch_size`, with a progress bar counted in inputs."""
    with tqdm(total=len(items), desc=desc, unit="input") as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            yield batch
            bar.update(len(batch))


def outputs_of(forward: Callable[[Sequence[Any]], np.ndarray], items: Sequence[Any], batch_size: int) -> np.ndarray:
    """`forward` over `items` batch by batch, concatenated; no gradients are kept."""
    with torch.inference_mode():
        return np.concatenate([forward(batch) for batch in batches(items, batch_size, "predicting")])


def write(predictions: Predictions, path: str | Path) -> None:
    """The rows as JSON lines, or as CSV with list values joined by `|` (the column names are the first row's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        with path.open("w") as f:
            for row in predictions.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(predictions.rows[0]))
            writer.writeheader()
            writer.writerows({key: _csv_value(value) for key, value in row.items()} for row in predictions.rows)
    if predictions.metrics is not None:
        metrics_file(path).write_text(json.dumps(predictions.metrics, indent=2) + "\n")


def _csv_value(value: Any) -> Any:
    return "|".join(str(v) for v in value) if isinstance(value, list) else value
