"""Class-weighted cross-entropy (`hf_ft.imbalance`): scikit-learn's balanced weights, the Trainer's loss contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.nn import functional as F

from hf_ft.imbalance import IGNORE_INDEX, balanced_class_weights, class_weighted_loss, weighted_cross_entropy


def test_balanced_weights_are_scikit_learns_and_skip_ignored_and_absent_labels():
    labels = np.array([0] * 60 + [1] * 30 + [3] * 10)
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=labels)
    weights = balanced_class_weights(np.concatenate([labels, [IGNORE_INDEX] * 7]), num_labels=4)
    assert weights[[0, 1, 3]].numpy() == pytest.approx(expected)
    assert weights[2] == 0  # no training example: nothing to weigh
    assert float((weights[labels]).mean()) == pytest.approx(1.0)  # the average example weighs 1


def test_weighted_loss_is_torchs_weighted_mean_or_the_trainers_sum_over_items():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    weights = balanced_class_weights(labels.numpy(), 3)
    loss = weighted_cross_entropy(weights, label_smoothing=0.1)
    expected = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1)
    assert loss({"logits": logits}, labels) == pytest.approx(float(expected), rel=1e-6)
    summed = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1, reduction="sum")
    assert loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(16)) == pytest.approx(float(summed) / 16)


def test_token_logits_skip_ignored_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1, IGNORE_INDEX, 0], [IGNORE_INDEX, 3, 0, 0, IGNORE_INDEX]])
    weights = balanced_class_weights(labels.numpy(), 4)
    valid = labels != IGNORE_INDEX
    expected = F.cross_entropy(logits[valid], labels[valid], weight=weights, reduction="sum") / int(valid.sum())
    got = weighted_cross_entropy(weights)((logits,), labels, num_items_in_batch=int(valid.sum()))
    assert got == pytest.approx(float(expected), rel=1e-6)


def test_no_class_weight_keeps_the_models_own_loss():
    assert class_weighted_loss(None, np.array([0, 1]), 2) is None


def test_class_balanced_sampler_draws_classes_equally_and_the_same_per_seed_and_epoch():
    from hf_ft.imbalance import ClassBalancedSampler

    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    sampler = ClassBalancedSampler(labels, seed=7)
    first = list(sampler)
    assert len(first) == len(sampler) == 1000
    drawn = np.bincount(labels[first], minlength=3)
    assert drawn.min() > 280 and drawn.max() < 390  # about a third each, where the data has 90% / 9% / 1%
    again = ClassBalancedSampler(labels, seed=7)  # a resumed run builds its sampler anew
    assert list(again) == first
    sampler.set_epoch(1)
    again.set_epoch(1)
    assert list(sampler) == list(again) != first


def test_the_trainer_iterates_the_given_train_sampler(tmp_path):
    """`StrictResumeTrainer(train_sampler=...)` goes in through the private `Trainer._get_train_sampler`: the
    training batches are the sampler's indices, epoch by epoch."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from hf_ft.checkpoints import StrictResumeTrainer
    from hf_ft.imbalance import ClassBalancedSampler

    labels = np.array([0] * 18 + [1] * 2)
    dataset = Dataset.from_dict({"index": list(range(20)), "labels": labels.tolist()})
    sampler = ClassBalancedSampler(labels, seed=3)
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=5,
                             remove_unused_columns=False, dataloader_num_workers=0)
    trainer = StrictResumeTrainer(model=torch.nn.Linear(1, 2), args=args, train_dataset=dataset,
                                  train_sampler=sampler)
    loader = trainer.get_train_dataloader()
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        seen = [int(i) for batch in loader for i in batch["index"]]
        sampler.set_epoch(epoch)
        assert seen == list(sampler)


def test_two_processes_share_one_balanced_draw_between_them():
    """Under DDP, Accelerate gives each process every other batch of the sampler's order (`BatchSamplerShard`): the
    processes' batches together are the one-process draw, each batch once, because every process draws the same."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from hf_ft.imbalance import ClassBalancedSampler

    labels = np.array([0] * 90 + [1] * 10)

    def batches(process_index: int) -> list[list[int]]:
        sampler = ClassBalancedSampler(labels, seed=5)  # each process builds its own
        sampler.set_epoch(2)
        batch_sampler = BatchSampler(sampler, 10, drop_last=False)
        shard = BatchSamplerShard(batch_sampler, num_processes=2, process_index=process_index)
        return list(shard)

    one = ClassBalancedSampler(labels, seed=5)
    one.set_epoch(2)
    single = list(BatchSampler(one, 10, drop_last=False))
    first, second = batches(0), batches(1)
    assert first == single[0::2] and second == single[1::2]
