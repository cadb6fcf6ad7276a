"""Model loading (transformers and timm through one path), head replacement, regularisation and freezing."""

from __future__ import annotations

import json

import pytest
import torch

from hf_ft.args import ModelArguments
from hf_ft.freezing import FreezeBackboneCallback, backbone_blocks, head_parameters, set_trainable
from hf_ft.compress.pruning import load_finetuned_classifier
from hf_ft.models import count_parameters
from hf_ft.tasks.image_classification import load_image_classifier

LABELS = [f"class_{i}" for i in range(10)]


def test_timm_save_for_hf_dir_loads_with_new_head(tiny_timm_dir):
    saved = json.loads((tiny_timm_dir / "config.json").read_text())
    assert saved["model_args"]["num_classes"] == 5  # the timm 1.0.3x layout transformers 5 trips on
    model, processor = load_image_classifier(ModelArguments(model_name_or_path=str(tiny_timm_dir)), LABELS)
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert model.timm_model.get_classifier().out_features == 10
    assert model.config.id2label[3] == "class_3" and model.config.label2id["class_9"] == 9
    assert "num_classes" not in model.config.model_args
    pixel_values = torch.randn(2, 3, 32, 32)
    assert model(pixel_values=pixel_values).logits.shape == (2, 10)
    assert processor.data_config["input_size"] == (3, 32, 32)


def test_timm_backbone_weights_are_the_checkpoints(tiny_timm_dir):
    import timm

    reference = timm.create_model("local-dir:" + str(tiny_timm_dir), pretrained=True)
    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(tiny_timm_dir)), LABELS)
    ours = model.timm_model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(ours[key], value, msg=key)


def test_transformers_vit_loads_with_labels_and_dropout(tiny_vit_dir):
    args = ModelArguments(model_name_or_path=str(tiny_vit_dir), drop_rate=0.3)
    model, processor = load_image_classifier(args, LABELS, image_size=48)
    assert model.classifier.out_features == 10
    assert model.config.hidden_dropout_prob == 0.3
    assert processor.size["height"] == 48 and model.config.image_size == 48


def test_timm_regularisation_and_image_size(tiny_timm_dir):
    args = ModelArguments(model_name_or_path=str(tiny_timm_dir), drop_rate=0.25, drop_path_rate=0.1)
    model, processor = load_image_classifier(args, LABELS, image_size=40)
    assert model.timm_model.drop_rate == 0.25
    assert processor.data_config["input_size"] == (3, 40, 40)
    assert model.config.pretrained_cfg["input_size"] == [3, 40, 40]


def test_unsupported_dropout_is_refused(tmp_path):
    from transformers import ResNetConfig, ResNetForImageClassification

    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1])).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--drop_rate is not supported by ResNetConfig"):
        load_image_classifier(ModelArguments(model_name_or_path=str(tmp_path), drop_rate=0.1), LABELS)


def test_missing_checkpoint_path():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_classifier(ModelArguments(model_name_or_path="./no/such/checkpoint"), LABELS)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_classifier(ModelArguments(model_name_or_path="/tmp/no/such/dir/at/all"), LABELS)


def test_hub_id_while_offline(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1 forbids downloading it"):
        load_image_classifier(ModelArguments(model_name_or_path="someone/not-a-cached-model"), LABELS)


@pytest.mark.parametrize("fixture", ["tiny_vit_dir", "tiny_timm_dir"])
def test_trainable_blocks(fixture, request):
    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(request.getfixturevalue(fixture))), LABELS)
    head = {id(p) for p in head_parameters(model)}
    blocks = backbone_blocks(model)
    assert len(blocks) >= 2

    set_trainable(model, 0)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == head

    set_trainable(model, 1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == head | {id(p) for p in blocks[-1]}
    assert not any(p.requires_grad for p in blocks[0])

    set_trainable(model, None)
    assert count_parameters(model)[0] == count_parameters(model)[1]
    with pytest.raises(ValueError, match="exceeds the model's"):
        set_trainable(model, len(blocks) + 1)


def test_freeze_backbone_callback_unfreezes_after_n_epochs(tiny_vit_dir):
    from types import SimpleNamespace

    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(tiny_vit_dir)), LABELS)
    callback = FreezeBackboneCallback(epochs=1, trainable_blocks=None)
    state = SimpleNamespace(epoch=0.0)
    callback.on_train_begin(None, state, None, model=model)  # the Trainer passes the model it trains
    assert count_parameters(model)[0] == sum(p.numel() for p in head_parameters(model))
    callback.on_epoch_begin(None, state, None, model=model)  # epoch 0 begins: still frozen
    assert count_parameters(model)[0] < count_parameters(model)[1]
    state.epoch = 1.0
    callback.on_epoch_begin(None, state, None, model=model)
    assert count_parameters(model)[0] == count_parameters(model)[1]
    state.epoch = 1.5  # resumed mid-way through a later epoch: starts unfrozen
    callback.on_train_begin(None, state, None, model=model)
    assert count_parameters(model)[0] == count_parameters(model)[1]


@pytest.mark.parametrize("fixture", ["tiny_timm_dir", "tiny_vit_dir"])
def test_finetuned_classifier_loads_as_saved(fixture, request):
    """A teacher or a model to compress keeps its own head and labels: nothing is re-initialised."""
    import timm
    from transformers import ViTForImageClassification

    path = request.getfixturevalue(fixture)
    model, _ = load_finetuned_classifier(str(path))
    if fixture == "tiny_timm_dir":
        reference = timm.create_model("local-dir:" + str(path), pretrained=True).eval()
    else:
        reference = ViTForImageClassification.from_pretrained(path).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixels) if fixture == "tiny_timm_dir" else reference(pixel_values=pixels).logits
        torch.testing.assert_close(model.eval()(pixel_values=pixels).logits, expected)
    assert model.config.num_labels == (5 if fixture == "tiny_timm_dir" else 3)


def _vit_with_labels(tiny_vit_dir, tmp_path, names):
    """The tiny ViT saved as if fine-tuned on `names` (3 classes, in that order)."""
    model, processor = load_image_classifier(ModelArguments(model_name_or_path=str(tiny_vit_dir)), names)
    model.save_pretrained(tmp_path / "finetuned")
    processor.save_pretrained(tmp_path / "finetuned")
    return model, tmp_path / "finetuned"


def test_a_checkpoint_trained_on_the_same_labels_keeps_its_head_and_order(tiny_vit_dir, tmp_path):
    """Continued fine-tuning with the data's labels in another order: mapped by name, the rows keep their meaning."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from hf_ft.tasks.image_classification import ImageClassificationData, follow_model_labels

    finetuned, path = _vit_with_labels(tiny_vit_dir, tmp_path, ["cat", "dog", "owl"])
    data_order = ["owl", "cat", "dog"]
    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(path)), data_order)

    assert [model.config.id2label[i] for i in range(3)] == ["cat", "dog", "owl"]
    torch.testing.assert_close(model.classifier.weight, finetuned.classifier.weight)
    features = Features({"x": Value("int32"), "label": ClassLabel(names=data_order)})
    data = ImageClassificationData(
        DatasetDict({"train": Dataset.from_dict({"x": [0, 1, 2], "label": [0, 1, 2]}, features=features)}), data_order
    )
    followed = follow_model_labels(data, model)
    assert followed.label_names == ["cat", "dog", "owl"]
    label = followed.splits["train"].features["label"]
    assert [label.int2str(i) for i in followed.splits["train"]["label"]] == data_order  # every row keeps its name


def test_a_head_of_the_same_size_for_other_labels_is_reinitialised(tiny_vit_dir, tmp_path):
    finetuned, path = _vit_with_labels(tiny_vit_dir, tmp_path, ["cat", "dog", "owl"])
    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(path)), ["ant", "bee", "fly"])
    assert [model.config.id2label[i] for i in range(3)] == ["ant", "bee", "fly"]
    assert not torch.equal(model.classifier.weight, finetuned.classifier.weight)
    torch.testing.assert_close(model.vit.embeddings.patch_embeddings.projection.weight,
                               finetuned.vit.embeddings.patch_embeddings.projection.weight)


def _named_checkpoint(tmp_path, family: str, tiny_vit_dir, tiny_timm_dir, labels: list[str]):
    """A saved classifier trained (here: initialised) on `labels` by name, as an hf_ft output dir holds one."""
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path / family
    if family == "bert":
        config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, num_labels=len(labels), id2label=dict(enumerate(labels)),
                            label2id={name: i for i, name in enumerate(labels)})
        BertForSequenceClassification(config).save_pretrained(path)
        return path
    checkpoint = tiny_vit_dir if family == "vit" else tiny_timm_dir
    model, processor = load_image_classifier(ModelArguments(model_name_or_path=str(checkpoint)), labels)
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("family", ["vit", "timm", "bert"])
def test_new_classes_keep_the_old_head_rows_and_add_new_ones(tmp_path, family, tiny_vit_dir, tiny_timm_dir):
    """Continued fine-tuning on data that adds classes: the checkpoint's classes keep their order and their head rows
    (what the earlier run learned), the new classes follow with fresh rows."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    from hf_ft.models import head_module_name, load_for_labels

    old = ["owl", "cat", "dog"]
    source = _named_checkpoint(tmp_path, family, tiny_vit_dir, tiny_timm_dir, old)
    auto_class = AutoModelForSequenceClassification if family == "bert" else AutoModelForImageClassification
    before = auto_class.from_pretrained(source)
    new_data_labels = ["ant", "cat", "dog", "eel", "owl"]
    model, order = load_for_labels(auto_class, AutoConfig.from_pretrained(source), new_data_labels,
                                   ModelArguments(model_name_or_path=str(source), ignore_mismatched_sizes=False))
    assert order == ["owl", "cat", "dog", "ant", "eel"] == [model.config.id2label[i] for i in range(5)]
    head = head_module_name(model)
    new_rows = dict(model.get_submodule(head).named_parameters())
    old_rows = dict(before.get_submodule(head).named_parameters())
    assert {name: value.shape[0] for name, value in new_rows.items()} == {name: 5 for name in old_rows}
    for name, value in old_rows.items():
        torch.testing.assert_close(new_rows[name][:3], value, msg=name)
        assert not torch.equal(new_rows[name][3:], torch.zeros_like(new_rows[name][3:])) or name.endswith("bias")


def test_other_labels_still_get_a_fresh_head(tmp_path, tiny_vit_dir, tiny_timm_dir):
    """Data that drops one of the checkpoint's classes is not an extension: a new head, in the data's order."""
    from transformers import AutoConfig, AutoModelForImageClassification

    from hf_ft.models import load_for_labels

    source = _named_checkpoint(tmp_path, "vit", tiny_vit_dir, tiny_timm_dir, ["owl", "cat", "dog"])
    model, order = load_for_labels(AutoModelForImageClassification, AutoConfig.from_pretrained(source),
                                   ["ant", "cat", "dog", "eel"], ModelArguments(model_name_or_path=str(source)))
    assert order == ["ant", "cat", "dog", "eel"]
