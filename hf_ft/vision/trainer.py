"""`ImageTrainer`: the `Trainer` for image batches whose training pixels arrive as uint8 (see `hf_ft.vision.transforms`),
augmented under seeds that follow the batches (see `hf_ft.vision.seeding`)."""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoints import StrictResumeTrainer
from .regularization import mix_batch
from .seeding import BatchSeededDataset
from .transforms import data_config, normalize


class ImageTrainer(StrictResumeTrainer):
    """A `Trainer` that normalises uint8 training batches on the training device, with the processor's mean/std,
    and draws each training batch's augmentation from a seed of its own (`BatchSeededDataset`, from `args.seed`).
    Checkpoints resume with every weight, or not at all (`StrictResumeTrainer`).

    Float batches (evaluation, which uses the saved processor itself) pass through unchanged. With `mixup` (timm's
    `Mixup`, `hf_ft.vision.regularization.build_mixup`), each normalised training batch is mixed on the device and
    its labels become class distributions: the `compute_loss_func` must take them.
    """

    def __init__(self, *args, mixup: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixup = mixup
        if self.train_dataset is not None and not isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            self.train_dataset = BatchSeededDataset(self.train_dataset, self.args.seed)
        config = data_config(self.processing_class)
        self._mean = torch.tensor(config["mean"], device=self.args.device)
        self._std = torch.tensor(config["std"], device=self.args.device)

    # A DataLoader draws its workers' base seed from torch's global generator each time it starts an iteration, and
    # a persistent one starts only once: a resumed run would draw where the unbroken run did not and shift the
    # training process's randomness (dropout) from then on. Drawn from a generator of the loader's own, the base
    # seed costs the global one nothing; it decides nothing either, since augmentation is seeded by batch.
    def get_train_dataloader(self):
        return _with_own_generator(super().get_train_dataloader(), self.args.seed)

    def get_eval_dataloader(self, eval_dataset=None):
        return _with_own_generator(super().get_eval_dataloader(eval_dataset), self.args.seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        pixels = inputs["pixel_values"]
        if pixels.dtype == torch.uint8:
            pixels = pixels.to(self.args.device, non_blocking=True)
            inputs = {**inputs, "pixel_values": normalize(pixels, self._mean, self._std)}
        if self.mixup is not None:
            pixels, targets = mix_batch(self.mixup, inputs["pixel_values"], inputs["labels"].to(self.args.device))
            inputs = {**inputs, "pixel_values": pixels, "labels": targets}
        return super().training_step(model, inputs, num_items_in_batch)


def _with_own_generator(loader: torch.utils.data.DataLoader, seed: int) -> torch.utils.data.DataLoader:
    # accelerate's DataLoaderShard iterates the torch DataLoader it wraps as `base_dataloader`
    getattr(loader, "base_dataloader", loader).generator = torch.Generator().manual_seed(seed)
    return loader
