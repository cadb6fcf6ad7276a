"""Augmentation seeded by batch (`hf_ft.vision.seeding`): the same batches whatever the workers, caller's RNGs kept."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from hf_ft.args import ModelArguments
from hf_ft.tasks.image_classification import ImageDataArguments, load_image_classification_data, load_image_classifier
from hf_ft.vision.seeding import BatchSeededDataset
from hf_ft.vision.transforms import attach_transforms, collate


def _augmented_train_split(digits_dir, checkpoint):
    # RandAugment and colour jitter too: they draw from `random` and NumPy, the crop and flip from torch
    data_args = ImageDataArguments(
        train_dir=str(digits_dir / "train"), max_train_samples=48, auto_augment="rand-m9-mstd0.5", color_jitter=0.4
    )
    data = load_image_classification_data(data_args, seed=0)
    _, processor = load_image_classifier(ModelArguments(model_name_or_path=str(checkpoint)), data.label_names)
    return attach_transforms(data.splits, processor, data_args)["train"]


def _two_epochs(dataset, workers: int) -> list[torch.Tensor]:
    loader = DataLoader(
        dataset,
        batch_size=8,
        sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(0)),
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return [batch["pixel_values"] for _ in range(2) for batch in loader]


def test_batches_are_the_same_with_any_number_of_persistent_workers(digits_dir, tiny_timm_dir):
    train = _augmented_train_split(digits_dir, tiny_timm_dir)
    seeded = BatchSeededDataset(train, seed=0)
    in_process = _two_epochs(seeded, workers=0)
    for workers in (1, 2):
        assert all(map(torch.equal, _two_epochs(seeded, workers), in_process)), f"{workers} workers"

    # without the seeding, worker processes draw from their own streams: the check above can fail
    plain_in_process, plain_workers = _two_epochs(train, workers=0), _two_epochs(train, workers=2)
    assert not all(map(torch.equal, plain_workers, plain_in_process))


def test_a_batch_is_a_function_of_the_seed_and_its_indices(digits_dir, tiny_timm_dir):
    train = _augmented_train_split(digits_dir, tiny_timm_dir)

    def first_sample(seed, indices):
        return BatchSeededDataset(train, seed).__getitems__(indices)[0]["pixel_values"]

    assert torch.equal(first_sample(0, [5, 1, 2]), first_sample(0, [5, 1, 2]))
    assert not torch.equal(first_sample(0, [5, 1, 2]), first_sample(1, [5, 1, 2]))
    assert not torch.equal(first_sample(0, [5, 1, 2]), first_sample(0, [5, 2, 1]))  # a new epoch's batch
    assert torch.equal(BatchSeededDataset(train, 0)[5]["pixel_values"], first_sample(0, [5]))


def test_the_callers_random_generators_are_left_as_they_were(digits_dir, tiny_timm_dir):
    """With no workers the batches are made in the training process, whose own randomness (dropout, mixup) must
    not be reseeded by the data."""
    seeded = BatchSeededDataset(_augmented_train_split(digits_dir, tiny_timm_dir), seed=0)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    seeded.__getitems__([0, 1, 2])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_a_plain_torch_dataset_is_seeded_by_batch_too():
    class Noise(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.rand(1)

    seeded = BatchSeededDataset(Noise(), seed=0)
    first = seeded.__getitems__([1, 2])
    assert all(map(torch.equal, seeded.__getitems__([1, 2]), first))
    assert not torch.equal(seeded.__getitems__([2, 1])[1], first[0])
