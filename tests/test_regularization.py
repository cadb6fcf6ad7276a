"""timm's mixup/CutMix, EMA of the weights and layer-wise LR decay, as the image recipe plugs them into the Trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import AutoModelForImageClassification, TrainerCallback, TrainingArguments

from hf_ft.args import ConfigError, PeftArguments
from hf_ft.checkpoints import CheckpointError, StrictResumeTrainer
from hf_ft.imbalance import weighted_cross_entropy
from hf_ft.vision.regularization import (
    EMA_WEIGHTS_NAME,
    ModelEmaCallback,
    RegularizationArguments,
    build_mixup,
    check_regularization,
    layer_decay_optimizer,
    layer_decay_param_groups,
    mix_batch,
)


def test_mixup_blends_image_pairs_as_their_targets_say():
    np.random.seed(0)
    mixup = build_mixup(RegularizationArguments(mixup_alpha=0.8), 4, label_smoothing=0.0)
    pixels = torch.randn(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, targets = mix_batch(mixup, pixels.clone(), labels)
    assert targets.shape == (6, 4) and torch.allclose(targets.sum(1), torch.ones(6))
    lam = targets[0, 0].item()  # image 0 (class 0) is blended with the batch reversed: image 5 (class 1)
    assert 0 < lam < 1 and targets[0, 1].item() == pytest.approx(1 - lam)
    assert torch.allclose(mixed, lam * pixels + (1 - lam) * pixels.flip(0), atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_label_share():
    np.random.seed(0)  # timm draws from numpy's generator
    mixup = build_mixup(RegularizationArguments(cutmix_alpha=1.0), 3, label_smoothing=0.0)
    pixels = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    mixed, targets = mix_batch(mixup, pixels.clone(), torch.tensor([0, 1]))
    pasted = (mixed[0, 0] == 1).float().mean().item()  # the share of image 0 that now comes from image 1
    assert 0 < pasted < 1 and targets[0, 1].item() == pytest.approx(pasted)


def test_an_odd_batch_keeps_its_last_image_unmixed_with_a_smoothed_target():
    mixup = build_mixup(RegularizationArguments(mixup_alpha=1.0), 5, label_smoothing=0.1)
    pixels = torch.randn(3, 3, 4, 4)
    mixed, targets = mix_batch(mixup, pixels.clone(), torch.tensor([0, 1, 4]))
    assert torch.equal(mixed[2], pixels[2])
    assert targets[2].tolist() == pytest.approx([0.02, 0.02, 0.02, 0.02, 0.92])
    single, target = mix_batch(mixup, pixels[:1].clone(), torch.tensor([3]))  # a batch of one: nothing to mix
    assert torch.equal(single, pixels[:1]) and target.argmax().item() == 3


def test_no_mixup_unless_asked():
    assert build_mixup(RegularizationArguments(), 10, label_smoothing=0.1) is None


def test_the_loss_of_mixed_targets_is_their_cross_entropy_weighted_by_class():
    logits = torch.randn(4, 3)
    targets = torch.softmax(torch.randn(4, 3), dim=-1)
    plain = weighted_cross_entropy(torch.ones(3))({"logits": logits}, targets)
    from timm.loss import SoftTargetCrossEntropy

    assert plain.item() == pytest.approx(SoftTargetCrossEntropy()(logits, targets).item(), rel=1e-6)
    # one-hot "distributions" weigh as the class ids they are, in the weighted mean and under num_items_in_batch
    weights, ids = torch.tensor([0.5, 1.0, 3.0]), torch.tensor([0, 2, 2, 1])
    one_hot = F.one_hot(ids, 3).float()
    loss = weighted_cross_entropy(weights)
    assert loss({"logits": logits}, one_hot).item() == pytest.approx(loss({"logits": logits}, ids).item(), rel=1e-6)
    assert loss({"logits": logits}, one_hot, 8).item() == pytest.approx(loss({"logits": logits}, ids, 8).item(), rel=1e-6)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mixup_alpha": -1.0}, "--mixup_alpha must be >= 0"),
        ({"mixup_prob": 1.5}, r"--mixup_prob must be in \[0, 1\]"),
        ({"mixup_mode": "image"}, "--mixup_mode must be one of batch, pair, elem"),
        ({"model_ema_decay": 1.0}, r"--model_ema_decay must be in \[0, 1\)"),
        ({"layer_decay": 0.0}, r"--layer_decay must be in \(0, 1\]"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        RegularizationArguments(**values)


def test_combinations_that_cannot_work_are_refused(tmp_path):
    args = TrainingArguments(tmp_path, use_cpu=True, report_to="none")
    with pytest.raises(ConfigError, match="--model_ema is for full fine-tuning; with --peft_method lora"):
        check_regularization(RegularizationArguments(model_ema=True), PeftArguments(peft_method="lora"), args)
    with pytest.raises(ConfigError, match="--layer_decay is for full fine-tuning"):
        check_regularization(RegularizationArguments(layer_decay=0.7), PeftArguments(peft_method="lora"), args)
    best = TrainingArguments(tmp_path, use_cpu=True, report_to="none", load_best_model_at_end=True,
                             eval_strategy="epoch", save_strategy="epoch")
    with pytest.raises(ConfigError, match="--model_ema with --load_best_model_at_end"):
        check_regularization(RegularizationArguments(model_ema=True), PeftArguments(), best)
    check_regularization(RegularizationArguments(mixup_alpha=0.8), PeftArguments(peft_method="lora"), args)  # mixup is fine


# ---------------------------------------------------------------- layer-wise LR decay


def test_layer_decay_on_a_transformers_vit_slows_each_layer_below_the_head(tiny_vit_dir):
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir)  # 2 blocks
    groups = layer_decay_param_groups(model, 0.5, weight_decay=0.01)
    scale_of = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert scale_of[id(named["classifier.weight"])] == 1.0
    assert scale_of[id(named["vit.layernorm.weight"])] == 0.5  # after the blocks, below the head
    assert scale_of[id(named["vit.layers.1.attention.q_proj.weight"])] == 0.25
    assert scale_of[id(named["vit.layers.0.mlp.fc2.weight"])] == 0.125
    assert scale_of[id(named["vit.embeddings.patch_embeddings.projection.weight"])] == 0.0625
    assert len(scale_of) == len(named)  # every parameter in exactly one group
    assert decay_of[id(named["classifier.weight"])] == 0.01 and decay_of[id(named["classifier.bias"])] == 0.0


def test_layer_decay_on_a_timm_model_uses_timms_own_layers(tiny_timm_dir):
    from hf_ft.args import ModelArguments
    from hf_ft.tasks.image_classification import load_image_classifier

    model, _ = load_image_classifier(ModelArguments(str(tiny_timm_dir)), [str(i) for i in range(3)])
    groups = layer_decay_param_groups(model, 0.8, weight_decay=0.0)
    scale_of = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
    timm_model = model.timm_model
    head = timm_model.get_classifier().weight
    stem = next(iter(timm_model.parameters()))
    assert scale_of[id(head)] == 1.0
    assert scale_of[id(stem)] == min(scale_of.values()) < 0.8 ** 2
    assert len(scale_of) == len(list(model.parameters()))


def test_the_trainer_builds_its_optimizer_over_the_decayed_groups_and_schedules_them_together(tmp_path, tiny_vit_dir):
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir)
    args = TrainingArguments(tmp_path, use_cpu=True, report_to="none", learning_rate=1e-3, max_steps=10,
                             warmup_steps=0, lr_scheduler_type="linear")
    trainer = StrictResumeTrainer(model=model, args=args, optimizer_cls_and_kwargs=layer_decay_optimizer(0.5, args))
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    rates = sorted({group["lr"] for group in trainer.optimizer.param_groups})
    assert rates == pytest.approx([1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)])
    for _ in range(5):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    halfway = sorted({group["lr"] for group in trainer.optimizer.param_groups})
    assert halfway == pytest.approx([rate / 2 for rate in rates])  # the schedule scales every layer alike


# ---------------------------------------------------------------- EMA of the weights


class _Snapshots(TrainerCallback):
    """The model's raw weights after every optimizer step, before any EMA callback copies the average in."""

    def __init__(self):
        self.weights = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def _digit_tensors(n: int = 64):
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.tensor(digits.images[:n], dtype=torch.float32).div(16).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return [{"pixel_values": image.expand(3, 32, 32).clone(), "labels": int(label) % 3}
            for image, label in zip(pixels, digits.target[:n])]


def _ema_trainer(tmp_path: Path, tiny_vit_dir: Path, *, max_steps: int, resume_from: str | None = None,
                 decay: float = 0.9):
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir)
    args = TrainingArguments(tmp_path, use_cpu=True, report_to="none", max_steps=max_steps, save_steps=2,
                             per_device_train_batch_size=8, learning_rate=1e-2, lr_scheduler_type="constant", seed=0,
                             disable_tqdm=True)  # a constant LR: a 2-step run is the 4-step one, stopped
    snapshots = _Snapshots()
    ema = ModelEmaCallback(decay, warmup=False, resume_from=resume_from)
    trainer = StrictResumeTrainer(model=model, args=args, train_dataset=_digit_tensors(), callbacks=[snapshots, ema])
    return trainer, snapshots


def test_ema_becomes_the_model_at_the_end_and_resumes_from_a_checkpoint(tmp_path, tiny_vit_dir):
    trainer, snapshots = _ema_trainer(tmp_path / "full", tiny_vit_dir, max_steps=4)
    trainer.train()
    expected = snapshots.weights[0]  # timm starts the average at the first step's weights, then at each step:
    for raw in snapshots.weights[1:]:  # average = decay * average + (1 - decay) * weights
        expected = {k: 0.9 * expected[k] + 0.1 * raw[k] if raw[k].is_floating_point() else raw[k] for k in raw}
    final = trainer.model.state_dict()
    key = "classifier.weight"
    assert torch.allclose(final[key], expected[key], atol=1e-6)
    assert not torch.allclose(final[key], snapshots.weights[-1][key], atol=1e-4)  # not the raw weights
    saved = load_file(tmp_path / "full" / "checkpoint-4" / EMA_WEIGHTS_NAME)
    assert torch.equal(saved[key], final[key])

    # stopped after checkpoint-2 and resumed from it: the average goes on from the saved one
    first, _ = _ema_trainer(tmp_path / "parts", tiny_vit_dir, max_steps=2)
    first.train()
    checkpoint = str(tmp_path / "parts" / "checkpoint-2")
    resumed, _ = _ema_trainer(tmp_path / "parts", tiny_vit_dir, max_steps=4, resume_from=checkpoint)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert torch.allclose(resumed.model.state_dict()[key], final[key], atol=1e-6)


def test_a_checkpoint_without_the_average_is_refused_on_resume(tmp_path, tiny_vit_dir):
    plain, _ = _ema_trainer(tmp_path, tiny_vit_dir, max_steps=2)
    plain.callback_handler.pop_callback(ModelEmaCallback)
    plain.train()
    checkpoint = str(tmp_path / "checkpoint-2")
    resumed, _ = _ema_trainer(tmp_path, tiny_vit_dir, max_steps=4, resume_from=checkpoint)
    with pytest.raises(CheckpointError, match=f"checkpoint-2 holds no {EMA_WEIGHTS_NAME}"):
        resumed.train(resume_from_checkpoint=checkpoint)
