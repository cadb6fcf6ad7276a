"""Augmentation randomness that follows the seed and the samples, not the data loader worker that draws it.

`BatchSeededDataset` transforms each batch with Python's, NumPy's and torch's global generators seeded from
(seed, the batch's sample indices). So:

- data loader workers can be persistent. A persistent worker's own generators run on from epoch to epoch,
  and a run resumed from a checkpoint cannot restore them; the sampler's order it does restore, and with it
  every batch's indices, so a resumed run still sees the batches an unbroken run sees;
- the number of workers does not change what the model sees: 0, 1 or 15 workers give the same batches.

In the main process (no workers) the generators are put back as they were after each batch, so the training
loop's own randomness (dropout, mixup) does not depend on the data.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch


class BatchSeededDataset(torch.utils.data.Dataset):
    """A map-style `dataset` (e.g. a `datasets.Dataset` with a transform) whose batches are seeded from `seed`."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list:
        with seeded_generators(batch_seed(self.seed, indices)):
            if hasattr(self.dataset, "__getitems__"):  # datasets: one transform call for the whole batch
                return self.dataset.__getitems__(indices)
            return [self.dataset[index] for index in indices]


def batch_seed(seed: int, indices: Sequence[int]) -> int:
    """A 32-bit seed mixed from `seed` and every index (NumPy's SeedSequence hashing): batches that differ in any
    index, or in order, get unrelated seeds."""
    return int(np.random.SeedSequence([seed, *(int(index) for index in indices)]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Python's, NumPy's and torch's (CPU) global generators seeded with `seed` inside, restored after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
