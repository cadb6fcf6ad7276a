"""Resume and best-model loading restore every weight, for every model family; incomplete checkpoints are skipped.

`StrictResumeTrainer` overrides two private Trainer methods (`_load_from_checkpoint`, `_load_best_model`); these tests
pin what they must do, and that plain `Trainer` still gets ViT wrong (when it stops, the overrides can go).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_ft.checkpoints import (
    CheckpointError,
    StrictResumeTrainer,
    is_complete_checkpoint,
    last_complete_checkpoint,
    load_checkpoint_weights,
)

STEPS, SAVE_EVERY = 6, 3


def _vit():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, num_labels=3, hidden_dropout_prob=0.1)
    return ViTForImageClassification(config)


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    return BertForSequenceClassification(config)


def _timm():
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(architecture="test_resnet", num_labels=3, pretrained_cfg={"input_size": [3, 16, 16]})
    return TimmWrapperForImageClassification(config)


def _lora_vit():
    from hf_ft.args import PeftArguments
    from hf_ft.peft import apply_peft

    return apply_peft(_vit(), PeftArguments(peft_method="lora", lora_r=2))


FAMILIES = {"vit": (_vit, "pixel_values"), "bert": (_bert, "input_ids"), "timm": (_timm, "pixel_values"),
            "lora_vit": (_lora_vit, "pixel_values")}


def _data(input_name: str) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    if input_name == "input_ids":
        inputs = torch.randint(0, 50, (48, 12), generator=generator)
    else:
        inputs = torch.randn(48, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 3, (48,), generator=generator)
    return Dataset.from_dict({input_name: inputs.numpy(), "labels": labels.numpy()}).with_format("torch")


def _train(build, data, output_dir: Path, *, trainer_class=StrictResumeTrainer, resume=None, **overrides):
    torch.manual_seed(0)  # the same initial model in every run
    model = build()
    args = TrainingArguments(
        str(output_dir), max_steps=STEPS, save_steps=SAVE_EVERY, per_device_train_batch_size=8, learning_rate=1.0e-2,
        seed=1, use_cpu=True, report_to="none", disable_tqdm=True, label_names=["labels"], **overrides,
    )
    trainer = trainer_class(model=model, args=args, train_dataset=data, eval_dataset=data)
    trainer.train(resume_from_checkpoint=resume)
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def _resumed(build, data, tmp_path: Path, trainer_class=StrictResumeTrainer) -> dict:
    """Train to the end, then lose the last checkpoint and resume a fresh model from the one before."""
    output_dir = tmp_path / "interrupted"
    _train(build, data, output_dir, trainer_class=trainer_class)
    shutil.rmtree(output_dir / f"checkpoint-{STEPS}")
    return _train(build, data, output_dir, trainer_class=trainer_class, resume=str(output_dir / f"checkpoint-{SAVE_EVERY}"))


def _differing(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [name for name in a if not torch.equal(a[name], b[name])]


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_gives_the_same_bits_as_an_unbroken_run(family, tmp_path):
    build, input_name = FAMILIES[family]
    data = _data(input_name)
    unbroken = _train(build, data, tmp_path / "unbroken")
    assert _differing(unbroken, _resumed(build, data, tmp_path)) == []


def test_plain_trainer_still_drops_vit_weights_on_resume(tmp_path):
    """transformers#43701: the reason StrictResumeTrainer exists. If this starts failing, upstream fixed it."""
    data = _data("pixel_values")
    unbroken = _train(_vit, data, tmp_path / "unbroken", trainer_class=Trainer)
    assert len(_differing(unbroken, _resumed(_vit, data, tmp_path, trainer_class=Trainer))) > 30


def test_best_model_at_end_loads_every_weight_of_the_best_checkpoint(tmp_path):
    """The first evaluation has the highest loss, so with greater_is_better the best model is checkpoint-3."""
    from transformers import ViTForImageClassification

    output_dir = tmp_path / "best"
    final = _train(_vit, _data("pixel_values"), output_dir, eval_strategy="steps", eval_steps=SAVE_EVERY,
                   load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=True)
    best = ViTForImageClassification.from_pretrained(output_dir / f"checkpoint-{SAVE_EVERY}").state_dict()
    assert _differing(final, best) == []


def test_a_checkpoint_of_another_model_is_an_error_not_a_warning(tmp_path):
    output_dir = tmp_path / "vit"
    _train(_vit, _data("pixel_values"), output_dir)
    with pytest.raises(CheckpointError, match="does not fit BertForSequenceClassification"):
        load_checkpoint_weights(_bert(), output_dir / f"checkpoint-{STEPS}")


def test_incomplete_checkpoints_are_skipped_and_kept(tmp_path, caplog):
    output_dir = tmp_path / "run"
    _train(_timm, _data("pixel_values"), output_dir)
    last, before = output_dir / f"checkpoint-{STEPS}", output_dir / f"checkpoint-{SAVE_EVERY}"
    assert last_complete_checkpoint(output_dir) == str(last)

    (last / "trainer_state.json").unlink()  # killed before Trainer wrote its state, the last file of a checkpoint
    assert not is_complete_checkpoint(last)
    assert last_complete_checkpoint(output_dir) == str(before)
    assert f"Skipping {last}: it is incomplete" in caplog.text and last.is_dir()

    (last / "trainer_state.json").write_text('{"global_step": 6, "log_hi')  # killed while writing it
    assert last_complete_checkpoint(output_dir) == str(before)
    (before / "model.safetensors").unlink()  # weights gone: nothing complete is left
    assert last_complete_checkpoint(output_dir) is None
    assert json.loads((before / "trainer_state.json").read_text())["global_step"] == SAVE_EVERY
