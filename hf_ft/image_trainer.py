"""`ImageTrainer`: the `Trainer` for image batches whose training pixels arrive as uint8 (see `hf_ft.data.transforms`),
augmented under seeds that follow the batches (see `hf_ft.data.seeding`)."""

from __future__ import annotations

import torch
from transformers import Trainer

from .data.seeding import BatchSeededDataset
from .data.transforms import data_config, normalize


class ImageTrainer(Trainer):
    """A `Trainer` that normalises uint8 training batches on the training device, with the processor's mean/std,
    and draws each training batch's augmentation from a seed of its own (`BatchSeededDataset`, from `args.seed`).

    Float batches (evaluation, which uses the saved processor itself) pass through unchanged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.train_dataset is not None and not isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            self.train_dataset = BatchSeededDataset(self.train_dataset, self.args.seed)
        config = data_config(self.processing_class)
        self._mean = torch.tensor(config["mean"], device=self.args.device)
        self._std = torch.tensor(config["std"], device=self.args.device)

    def training_step(self, model, inputs, num_items_in_batch=None):
        pixels = inputs["pixel_values"]
        if pixels.dtype == torch.uint8:
            pixels = pixels.to(self.args.device, non_blocking=True)
            inputs = {**inputs, "pixel_values": normalize(pixels, self._mean, self._std)}
        return super().training_step(model, inputs, num_items_in_batch)
