"""The image-classification task: its data arguments and data, its model and processor, its Trainer, its card facts.

Data: a Hub dataset, an imagefolder tree (`--train_dir <dir>/<label>/*.jpg`) or csv/json/parquet files of image
paths, checked, label-encoded and split before any model is loaded. Model: `AutoModelForImageClassification`
(timm checkpoints through transformers' TimmWrapper) with a head for the data's labels. Trainer: `ImageTrainer`
(uint8 batches normalised on the device, augmentation seeded by batch), or `DistillationTrainer` with a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.special import softmax
from datasets import DatasetDict, Image
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    BaseImageProcessor,
    PretrainedConfig,
    PreTrainedModel,
    TrainerCallback,
    TrainingArguments,
)

from .. import classification, runs
from ..args import ConfigError, DataArguments, ModelArguments
from ..compress.distillation import DistillationTrainer, Teacher
from ..compress.pruning import is_structurally_pruned, load_pruned_weights, load_saved_classifier
from ..compress.quantization import WEIGHTS_NAME, load_dynamic_int8
from ..data import labels, sources
from ..errors import InputError
from ..hub import CardFacts, check_model_source
from ..imbalance import class_balanced_sampler, class_weighted_loss, weighted_cross_entropy
from ..models import drop_timm_num_classes, load_for_labels, offline_hint, saved_label_names
from ..peft import load_trained
from ..predict import (
    Inputs, PredictArguments, Predictions, input_column, load_input, outputs_of, reference_column,
)
from ..vision import images
from ..vision.imagefolder import check_imagefolder
from ..report import TaskReport
from ..vision.cache import cache_decoded_images, cached_size_for
from ..vision.models import is_timm, load_image_processor, set_image_size
from ..vision.regularization import RegularizationArguments, build_mixup, layer_decay_optimizer
from ..vision.trainer import ImageTrainer
from ..vision.transforms import attach_eval_transforms, attach_transforms, collate, data_config, eval_transform

# The `pipeline()` task name, the model card's `pipeline_tag`.
TASK = "image-classification"
# The validation metric a hyperparameter search maximises unless told otherwise (`hf_ft.search`).
SEARCH_METRIC = "accuracy"


@dataclass
class ImageDataArguments(images.ImageFileArguments, DataArguments):
    """Image data: columns, checks and augmentation."""

    cache_images: bool = field(
        default=False,
        metadata={
            "help": "Decode the training images once and keep their pixels (uncompressed, shorter side at most twice "
            "the training resolution) in the datasets cache, so epochs skip JPEG/PNG decoding. Costs about "
            "height x width x 3 bytes of disk per image (logged before writing); pays off on multi-epoch runs "
            "whose input pipeline cannot keep the accelerator busy."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Train and evaluate at this square resolution instead of the checkpoint's (convnets and timm "
            "models; small source images train much faster at a lower resolution)."
        },
    )
    scale: list[float] = field(
        default_factory=lambda: [0.08, 1.0],
        metadata={"help": "Random-resized-crop area range for training, as fractions of the image (timm `scale`)."},
    )
    hflip: float = field(default=0.5, metadata={"help": "Probability of a horizontal flip in training (0 for digits, text)."})
    color_jitter: float | None = field(
        default=0.4, metadata={"help": "Colour jitter strength in training (timm `color_jitter`); null turns it off."}
    )
    auto_augment: str | None = field(
        default=None,
        metadata={"help": "timm auto-augment policy for training, e.g. `rand-m9-mstd0.5-inc1` (RandAugment)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ConfigError(f"--scale must be two numbers 0 < min <= max <= 1, got {self.scale}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"--image_size must be >= 8, got {self.image_size}")


@dataclass
class ImageClassificationData:
    splits: DatasetDict  # train, validation[, test]; columns `image` (Image) and `label` (ClassLabel)
    label_names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def load_image_classification_data(
    data_args: ImageDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> ImageClassificationData:
    """Load, map columns, encode labels, split, subsample and check the data, before any model is loaded.

    Raises:
        InputError / FileNotFoundError: bad input, with a message naming the column, split, file or label.
    """
    raw = sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir, check_dir=check_imagefolder)
    image_column = images.find_image_column(raw["train"], data_args.image_column_name)
    label_column = labels.find_label_column(raw["train"], data_args.label_column_name)
    if image_column == label_column:
        raise InputError(f"The image and label columns are both `{image_column}`; set them apart.")
    for name, split in raw.items():
        missing = [c for c in (image_column, label_column) if c not in split.column_names]
        if missing:
            raise InputError(f"The {name} split has no column {missing}; it has {split.column_names}.")
    # Before encoding: an ID column picked as label also fails later checks (unseen labels, stratified split),
    # and this warning says why first. Measured on the data as given, before any subsampling.
    others = [c for c in raw["train"].column_names if c not in (image_column, label_column)]
    labels.warn_if_id_like(raw["train"], label_column, others)

    splits = DatasetDict(
        {
            name: images.as_image_column(split.select_columns([image_column, label_column]), image_column, sources.source_dir(data_args, name))
            for name, split in raw.items()
        }
    )
    if image_column != "image":
        splits = splits.rename_column(image_column, "image")
    splits = labels.encode_labels(splits, label_column)
    splits = labels.add_validation_split(splits, data_args.train_val_split, seed)
    splits = sources.cap_samples(splits, data_args, seed)
    labels.check_label_coverage(splits)
    if data_args.verify_images:
        splits = images.drop_unreadable_images(splits, skip=data_args.skip_corrupt_images)
    return ImageClassificationData(splits=splits, label_names=splits["train"].features["label"].names)


def load_image_classifier(
    model_args: ModelArguments,
    label_names: list[str],
    *,
    image_size: int | None = None,
    quantization_config: Any = None,
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """Load a checkpoint with a classification head for `label_names`, and its image processor.

    Labels are matched with the checkpoint's by name (`hf_ft.models.match_labels`): a checkpoint trained on the
    same names keeps its head and its label order (re-encode the data with `follow_model_labels`); otherwise the
    head is new (`ignore_mismatched_sizes`, or re-initialised when only the names differ), named for the data. `image_size` changes the resolution recorded in the saved preprocessing config, so the saved
    model is used at the size it was trained at. `quantization_config` (QLoRA's 4-bit `BitsAndBytesConfig`)
    goes to `from_pretrained`. A structurally pruned checkpoint (`hf_ft.compress.pruning`) trains on at its
    pruned shapes.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        InputError: a Hub checkpoint is asked for while offline and is not cached, a dropout setting the
            model does not have, or a pruned checkpoint for other labels.
    """
    source = model_args.model_name_or_path
    check_model_source(source, revision=model_args.model_revision, cache_dir=model_args.cache_dir)
    hub_kwargs = model_args.hub_kwargs()
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
        if is_structurally_pruned(config):
            return _load_pruned_for_training(source, config, label_names, hub_kwargs)
        if image_size is not None:
            set_image_size(config, image_size)
    model, _ = load_for_labels(
        AutoModelForImageClassification, config, label_names, model_args, quantization_config=quantization_config
    )
    with offline_hint(source):
        processor = load_image_processor(source, config, image_size, hub_kwargs)
    return model, processor


def follow_model_labels(data: ImageClassificationData, model: PreTrainedModel) -> ImageClassificationData:
    """`data` with its labels in the model's order: a checkpoint trained on the same label names keeps its own
    order (`hf_ft.models.match_labels`), and the data must follow it."""
    names = saved_label_names(model.config)
    return ImageClassificationData(splits=labels.reorder_labels(data.splits, names), label_names=names)


def _load_pruned_for_training(
    source: str, config: PretrainedConfig, label_names: list[str], hub_kwargs: dict
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """A structurally pruned checkpoint trains on as it is: its layers cannot be rebuilt from the config, so
    re-initialising mismatched weights (`ignore_mismatched_sizes`) would silently throw the pruned ones away."""
    saved = [config.id2label[i] for i in range(config.num_labels)]
    if saved != list(label_names):
        raise InputError(
            f"{source} is structurally pruned (hf_ft.compress.pruning) for the labels {saved[:10]}, not the data's "
            f"{list(label_names)[:10]}: its head cannot be replaced. Prune a model fine-tuned on this data instead."
        )
    drop_timm_num_classes(config)
    return load_pruned_weights(source, config, hub_kwargs), load_image_processor(source, config, None, hub_kwargs)


def classification_trainer(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    splits: DatasetDict,
    training_args: TrainingArguments,
    *,
    num_labels: int,
    teacher: Teacher | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    class_weight: str | None = None,
    class_balanced_sampling: bool = False,
    regularization: RegularizationArguments | None = None,
) -> ImageTrainer:
    """An `ImageTrainer` on `splits` (train, and validation for evaluation), or a `DistillationTrainer` with `teacher`.

    `splits` carry their transforms already (`hf_ft.vision.transforms.attach_transforms`); accuracy, macro-F1 and
    top-5 are computed at each evaluation. `class_weight` (`DataArguments.class_weight`) weighs the loss by class,
    the distillation loss's hard-label term included; `class_balanced_sampling` draws classes equally often
    (`hf_ft.imbalance`). `regularization` switches on timm's mixup/CutMix and layer-wise LR decay
    (`hf_ft.vision.regularization`; its EMA is a callback, `ema_callbacks`).
    """
    regularization = regularization or RegularizationArguments()
    label_smoothing = training_args.label_smoothing_factor
    needs_labels = class_weight or class_balanced_sampling
    train_labels = splits["train"].with_format(None)["label"] if needs_labels else []  # the raw column, no transform
    mixup = build_mixup(regularization, num_labels, label_smoothing=label_smoothing)
    loss = class_weighted_loss(class_weight, train_labels, num_labels, label_smoothing=label_smoothing)
    if mixup is not None and loss is None:
        # The models' own loss would take class distributions for multi-label targets (BCE), and say so in the
        # saved config's problem_type: mixed targets get the cross-entropy against them instead.
        loss = weighted_cross_entropy(torch.ones(num_labels), label_smoothing=label_smoothing)
    kwargs = {
        "model": model,
        "args": training_args,
        "train_dataset": splits["train"],
        "eval_dataset": splits.get("validation"),
        "data_collator": collate,
        "processing_class": processor,
        "compute_metrics": classification.compute_metrics_for_classification(num_labels),
        "callbacks": list(callbacks),
        "compute_loss_func": loss,
        "train_sampler": class_balanced_sampler(class_balanced_sampling, train_labels, seed=training_args.seed),
        "mixup": mixup,
        "optimizer_cls_and_kwargs": layer_decay_optimizer(regularization.layer_decay, training_args),
    }
    if teacher is None:
        return ImageTrainer(**kwargs)
    return DistillationTrainer(teacher=teacher, **kwargs)


def training_splits(
    data: ImageClassificationData,
    processor: BaseImageProcessor,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
) -> DatasetDict:
    """The splits as the Trainer takes them: transforms attached, and with `--cache_images` the training images
    decoded once (not once an epoch)."""
    splits = data.splits
    if data_args.cache_images:
        with training_args.main_process_first(desc="caching decoded images"):
            train = cache_decoded_images(
                splits["train"], max_size=cached_size_for(processor), num_proc=training_args.dataloader_num_workers or None
            )
        splits = DatasetDict({**splits, "train": train})
    return attach_transforms(splits, processor, data_args)


def probe_splits(data: ImageClassificationData, processor: BaseImageProcessor) -> DatasetDict:
    """The splits for the linear probe (`hf_ft.probe`): every one, training included, preprocessed as evaluation is:
    the pretrained model's view of each image, unaugmented."""
    return attach_eval_transforms(data.splits, processor)


def evaluate(output_dir: Path, predictions: dict, data: ImageClassificationData) -> TaskReport:
    """The classification report of the eval splits (`hf_ft.classification.evaluate`), with a record per image."""
    train_counts = labels.label_counts(data.splits["train"], len(data.label_names))
    examples = {split: images.image_examples(data.splits[split]) for split in predictions}
    return classification.evaluate(output_dir, predictions, data.label_names, train_counts, examples)


def earlier_test(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    model: PreTrainedModel,
    processor: BaseImageProcessor,
) -> runs.EarlierTest | None:
    """When the checkpoint is an hf_ft image run, its test split (loaded as its args.yaml says, labels in this model's
    order, transforms as this run's) to measure forgetting on; None for other checkpoints."""
    earlier = runs.load_earlier_data(model_args, ImageDataArguments, load_image_classification_data,
                                     saved_label_names(model.config))
    if earlier is None:
        return None
    earlier = follow_model_labels(earlier, model)
    test = DatasetDict({"test": earlier.splits["test"]})
    return runs.EarlierTest(
        Path(model_args.model_name_or_path),
        attach_transforms(test, processor, data_args)["test"],
        evaluate=lambda output_dir, predictions: evaluate(output_dir, predictions, earlier),
    )


def card_facts(
    model_args: ModelArguments,
    data_args: ImageDataArguments,
    data: ImageClassificationData,
    processor: BaseImageProcessor,
    model: PreTrainedModel,
) -> CardFacts:
    """What the model card states: the labels, and the resolution the model was trained and evaluated at."""
    _, height, width = data_config(processor)["input_size"]
    return CardFacts(
        task=TASK,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        label_names=data.label_names,
        facts={"image_size": f"{height}x{width}"},
        library_name="timm" if is_timm(model) else "transformers",
    )


# ---------------------------------------------------------------- predict (hf-ft predict)


@dataclass
class ImagePredictor:
    """A saved image classifier of any kind as one function: float32 NCHW pixel values in, logits out."""

    forward: Callable[[np.ndarray], np.ndarray]
    processor: BaseImageProcessor
    label_names: list[str]
    kind: str  # what was loaded, for the log: model, adapter, structurally pruned, dynamic int8, ONNX


def load_predictor(source: str, *, device: torch.device, token: str | None = None, cache_dir: str | None = None
                   ) -> ImagePredictor:
    """Load what an hf_ft run (or the compression recipe) saved, or any Hub image classifier, for inference.

    The preprocessing always comes from the saved `config.json` / `preprocessor_config.json`, so an adapter or an
    exported file is fed exactly as the model it came from was evaluated.

    Raises:
        FileNotFoundError / InputError: as the loaders (`load_saved_classifier`, `load_adapter_model`, ...).
    """
    path = Path(source)
    if path.suffix == ".onnx" or (path / "model.onnx").is_file():
        from ..compress.onnx_export import onnx_predictor  # the `compress` extra: onnxruntime

        onnx_file = path if path.suffix == ".onnx" else path / "model.onnx"
        config = AutoConfig.from_pretrained(onnx_file.parent)
        processor = load_image_processor(str(onnx_file.parent), config, None, {})
        forward = onnx_predictor(onnx_file, num_threads=torch.get_num_threads())
        return ImagePredictor(forward, processor, saved_label_names(config), "ONNX")
    hub_kwargs = {"token": token, "cache_dir": cache_dir}
    if (path / WEIGHTS_NAME).is_file():
        model, kind, device = load_dynamic_int8(path), "dynamic int8", torch.device("cpu")  # int8 kernels: CPU only
    else:
        model, kind = load_trained(source, load_saved_classifier, **hub_kwargs)
        kind = "structurally pruned" if is_structurally_pruned(model.config) else kind
    with offline_hint(source):
        config = AutoConfig.from_pretrained(source, **hub_kwargs)  # the saved one: an adapter's base lacks its size
        processor = load_image_processor(source, config, None, hub_kwargs)
    model.to(device).eval()

    def forward(pixel_values: np.ndarray) -> np.ndarray:
        return model(pixel_values=torch.from_numpy(pixel_values).to(device)).logits.float().cpu().numpy()

    return ImagePredictor(forward, processor, saved_label_names(config), kind)


def read_inputs(args: PredictArguments, trained: dict[str, Any]) -> Inputs:
    """The input (a folder of images, a file of paths, a Hub split), its image column (the one asked for, else the run's, else found; file paths resolved against the input
    file's folder) and the label column if there is one. `trained` is the training run's arguments.

    Raises:
        InputError: no image column, a label column asked for that is absent, a column of something else.
    """
    split = load_input(args, folder_builder="imagefolder")
    image_column = input_column(split, args.image_column_name, trained.get("image_column_name"),
                                images.find_image_column)
    label_column = reference_column(split, args.label_column_name, trained.get("label_column_name"))
    base_dir = Path(args.input).parent if Path(args.input).is_file() else None
    split = images.as_image_column(split, image_column, base_dir)
    stored = split.cast_column(image_column, Image(decode=False))[image_column]
    names = [image.get("path") or f"row {i}" for i, image in enumerate(stored)]
    return Inputs(split, [image_column], names, label_column, trained)


def predict(predictor: ImagePredictor, inputs: Inputs, args: PredictArguments) -> Predictions:
    """Top-k classes per image (`classification.prediction_rows`); with a label column, the metrics of the report
    (`classification.classification_metrics`).

    Raises:
        InputError: references the model has no class for, before anything is predicted.
    """
    split, (image_column,) = inputs.split, inputs.columns
    references = labels.label_values(split, inputs.label_column) if inputs.label_column else None
    reference_ids = None if references is None else classification.reference_ids(
        references, predictor.label_names, inputs.label_column)
    transform = eval_transform(predictor.processor)

    def forward(indices: Sequence[int]) -> np.ndarray:
        batch = split.select(indices)[image_column]
        return predictor.forward(np.stack([transform(image.convert("RGB")).numpy() for image in batch]))

    logits = outputs_of(forward, range(len(split)), args.batch_size)
    rows = classification.prediction_rows(softmax(logits, axis=-1), predictor.label_names, args.top_k,
                                          inputs.names, references)
    metrics = None
    if reference_ids is not None:
        metrics = classification.classification_metrics(logits, reference_ids, len(predictor.label_names))
        metrics["num_samples"] = len(reference_ids)
    return Predictions(rows, metrics)
