"""Knowledge distillation: the loss formula, the Trainer override, the teacher's inputs and labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from hf_ft.args import ModelArguments
from hf_ft.compress.args import DistillationArguments
from hf_ft.compress.distillation import Teacher, TeacherInputs, distillation_loss, load_teacher, teacher_label_order
from hf_ft.errors import InputError
from hf_ft.tasks.image_classification import (
    ImageDataArguments,
    classification_trainer,
    load_image_classification_data,
    load_image_classifier,
)
from hf_ft.vision.transforms import attach_transforms, eval_transform


def test_loss_matches_the_formula_on_fixed_logits():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = torch.tensor([[1.5, 1.0, -0.5], [-1.0, 0.0, 2.0]])
    hard = torch.tensor(0.7)
    alpha, t = 0.3, 4.0

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(teacher.numpy() / t), softmax(student.numpy() / t)
    kl = float(np.sum(p_t * (np.log(p_t) - np.log(p_s))) / len(p_t))  # KL(teacher || student), batch mean
    expected = alpha * 0.7 + (1 - alpha) * t**2 * kl

    loss = distillation_loss(student, teacher, hard, alpha=alpha, temperature=t)
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # float32
    assert distillation_loss(teacher, teacher, hard, alpha=alpha, temperature=t).item() == pytest.approx(alpha * 0.7)


def test_distillation_arguments_are_checked():
    with pytest.raises(InputError, match="distillation_alpha"):
        DistillationArguments(distillation_alpha=1.5)
    with pytest.raises(InputError, match="distillation_temperature"):
        DistillationArguments(distillation_temperature=0)


@pytest.fixture(scope="module")
def digits(digits_dir):
    data_args = ImageDataArguments(
        train_dir=str(digits_dir / "train"), validation_dir=str(digits_dir / "validation"), max_train_samples=256,
        max_eval_samples=128, image_size=32, scale=[0.7, 1.0], hflip=0.0, color_jitter=None,
    )
    return data_args, load_image_classification_data(data_args, seed=0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits, tiny_vit_dir):
    """A ViT 'fine-tuned' on the digits labels, saved like an hf_ft output, normalising with ImageNet's mean/std
    (the timm student uses 0.5), so the teacher needs its inputs converted."""
    _, data = digits
    torch.manual_seed(1)
    model, processor = load_image_classifier(ModelArguments(model_name_or_path=str(tiny_vit_dir)), data.label_names)
    processor.image_mean, processor.image_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    path = tmp_path_factory.mktemp("teacher") / "vit-digits"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _student(tiny_timm_dir, label_names):
    torch.manual_seed(0)
    return load_image_classifier(ModelArguments(model_name_or_path=str(tiny_timm_dir)), label_names)


def _train(tmp_path, digits, tiny_timm_dir, teacher=None, steps=6):
    data_args, data = digits
    model, processor = _student(tiny_timm_dir, data.label_names)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=steps, per_device_train_batch_size=16, learning_rate=5e-3,
        seed=0, use_cpu=True, report_to="none", save_strategy="no", remove_unused_columns=False, disable_tqdm=True,
    )
    splits = attach_transforms(data.splits, processor, data_args)
    trainer = classification_trainer(model, processor, splits, args, num_labels=len(data.label_names), teacher=teacher)
    trainer.train()
    return trainer.model, processor


def _teacher(teacher_dir, digits, student_processor, alpha, temperature=2.0):
    _, data = digits
    args = DistillationArguments(
        teacher_model_name_or_path=str(teacher_dir), distillation_alpha=alpha, distillation_temperature=temperature
    )
    return load_teacher(args, data.label_names, student_processor)


def test_alpha_one_trains_exactly_like_plain_training(tmp_path, digits, tiny_timm_dir, teacher_dir):
    plain, processor = _train(tmp_path / "plain", digits, tiny_timm_dir)
    teacher = _teacher(teacher_dir, digits, processor, alpha=1.0)
    distilled, _ = _train(tmp_path / "kd", digits, tiny_timm_dir, teacher=teacher)
    for (name, a), b in zip(plain.state_dict().items(), distilled.state_dict().values()):
        assert torch.equal(a, b), name
    untrained, _ = _student(tiny_timm_dir, digits[1].label_names)
    assert not torch.equal(untrained.state_dict()["timm_model.fc.weight"], plain.state_dict()["timm_model.fc.weight"])


def test_student_learns_the_teacher_and_the_teacher_never_changes(tmp_path, digits, tiny_timm_dir, teacher_dir):
    data_args, data = digits
    _, processor = _student(tiny_timm_dir, data.label_names)
    teacher = _teacher(teacher_dir, digits, processor, alpha=0.0)  # the teacher's soft labels only
    before = {name: value.clone() for name, value in teacher.model.state_dict().items()}

    def disagreement(student) -> float:
        batch = torch.stack([eval_transform(processor)(image.convert("RGB")) for image in data.splits["validation"]["image"]])
        with torch.no_grad():
            s = student.eval()(pixel_values=batch).logits
            t = teacher.model(pixel_values=teacher.inputs(batch)).logits
        return distillation_loss(s, t, torch.tensor(0.0), alpha=0.0, temperature=1.0).item()

    start = disagreement(_student(tiny_timm_dir, data.label_names)[0])
    student, _ = _train(tmp_path, digits, tiny_timm_dir, teacher=teacher, steps=30)
    assert disagreement(student) < 0.5 * start  # KL(teacher || student) on held-out images more than halves

    for name, value in teacher.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not teacher.model.training


def test_teacher_inputs_convert_normalisation_and_size(digits, teacher_dir, tiny_timm_dir):
    _, data = digits
    _, student_processor = _student(tiny_timm_dir, data.label_names)
    _, teacher_processor = load_image_classifier(ModelArguments(model_name_or_path=str(teacher_dir)), data.label_names)
    # One colour: the two processors crop differently (timm's crop_pct), so only the normalisation is compared
    # (0.5 for the timm student, ImageNet's mean/std for the ViT teacher).
    image = Image.new("RGB", (40, 40), (200, 50, 120))
    converted = TeacherInputs(student_processor, teacher_processor)(eval_transform(student_processor)(image)[None])
    expected = eval_transform(teacher_processor)(image)[None]
    assert not torch.allclose(eval_transform(student_processor)(image)[None], expected, atol=0.1)
    torch.testing.assert_close(converted, expected, atol=1e-5, rtol=0)
    assert TeacherInputs(student_processor, student_processor).is_identity

    _, big_processor = load_image_classifier(ModelArguments(model_name_or_path=str(teacher_dir)), data.label_names, image_size=48)
    assert TeacherInputs(student_processor, big_processor)(eval_transform(student_processor)(image)[None]).shape[-2:] == (48, 48)


def test_teacher_with_other_labels_is_refused_naming_them(digits, teacher_dir, tiny_timm_dir):
    _, data = digits
    _, processor = _student(tiny_timm_dir, data.label_names)
    teacher = _teacher(teacher_dir, digits, processor, alpha=0.5)
    with pytest.raises(InputError, match=r"data has 1 label\(s\) \('cat'\).*teacher has 1 label\(s\) \('9'\)"):
        teacher_label_order(teacher.model, [*data.label_names[:-1], "cat"], "vit-digits")


def test_teacher_with_labels_in_another_order_is_aligned(digits, teacher_dir, tiny_timm_dir):
    _, data = digits
    _, processor = _student(tiny_timm_dir, data.label_names)
    teacher = _teacher(teacher_dir, digits, processor, alpha=0.5)
    reordered = list(reversed(data.label_names))
    order = teacher_label_order(teacher.model, reordered, "vit-digits")
    logits = torch.arange(10.0)[None]
    assert [teacher.model.config.id2label[i] for i in order] == reordered
    assert logits[:, order].tolist() == [list(reversed(range(10)))]
    assert isinstance(teacher, Teacher) and teacher_label_order(teacher.model, data.label_names, "x") is None
