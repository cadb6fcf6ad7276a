"""Pruning: unstructured zeros (targets, masks through training, save/reload) and structured channel removal
(parameter targets, a model that still runs, save/reload of the smaller architecture, unsupported models)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.utils import prune
from transformers import AutoModelForImageClassification, pipeline

from hf_ft.args import ModelArguments
from hf_ft.compress import pruning
from hf_ft.compress.pruning import load_saved_classifier
from hf_ft.errors import InputError
from hf_ft.models import count_parameters, head_module_name
from hf_ft.tasks.image_classification import load_image_classifier

LABELS = [f"class_{i}" for i in range(10)]


def _load(path, labels=LABELS):
    model, processor = load_image_classifier(ModelArguments(model_name_or_path=str(path)), labels)
    return model.eval(), processor


def _zeros(module: torch.nn.Module) -> int:
    return int((module.weight == 0).sum())


def _logits(model, pixel_values):
    with torch.no_grad():
        return model(pixel_values=pixel_values).logits


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory):
    """A real-size EfficientNet-Lite0 (3.4M parameters, depthwise convs), untrained, saved like a timm checkpoint."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "lite0"
    model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "test_input_size": (3, 64, 64)}
    timm.models.save_for_hf(model, path)
    return path


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize(
    "sparsities, named",
    [
        ([1.0], "1.0"),
        ([-0.1], "-0.1"),
        ([0.5, 0.5], "0.5 follows 0.5"),
        ([0.3, 0.7, 0.5], "0.5 follows 0.7"),
        ([], "No pruning sparsity"),
    ],
)
def test_bad_sparsities_are_refused_naming_the_value(sparsities, named):
    with pytest.raises(InputError, match=named):
        pruning.check_sparsity(sparsities)


def test_good_sparsities_pass():
    pruning.check_sparsity([0.0, 0.3, 0.95])


# ---------------------------------------------------------------- unstructured


def test_global_pruning_reaches_the_total_target_and_keeps_the_head(tiny_vit_dir):
    model, _ = _load(tiny_vit_dir)
    head = model.classifier.weight.detach().clone()
    layers = [module for _, module in pruning.prunable_weights(model)]
    assert model.classifier not in layers and len(layers) == 1 + 2 * 6  # patch conv + q/k/v/o/fc1/fc2 per layer
    total = sum(module.weight.numel() for module in layers)

    weights = torch.cat([module.weight.detach().flatten() for module in layers])
    pruning.prune_unstructured(model, 0.5)
    assert sum(_zeros(module) for module in layers) == round(0.5 * total)
    # The smallest magnitudes of all layers together went.
    pruned = torch.cat([(module.weight == 0).flatten() for module in layers])
    assert weights[pruned].abs().max() <= weights[~pruned].abs().min()
    assert pruning.weight_sparsity(model) == pytest.approx(0.5, abs=1 / total)
    # One threshold for all layers: they end up unequally sparse.
    assert len({round(_zeros(m) / m.weight.numel(), 2) for m in layers}) > 1
    torch.testing.assert_close(model.classifier.weight, head, rtol=0, atol=0)

    # A second call on the masked model asks for a new total, not 80% of what is left.
    pruning.prune_unstructured(model, 0.8)
    assert sum(_zeros(module) for module in layers) == round(0.8 * total)
    # ... and so does one after the masks are made permanent (zeros, no masks).
    pruning.make_permanent(model)
    pruning.prune_unstructured(model, 0.9)
    assert pruning.weight_sparsity(model) == pytest.approx(0.9, abs=1 / total)
    with pytest.raises(InputError, match="already pruned"):
        pruning.prune_unstructured(model, 0.5)


def test_layer_pruning_gives_each_layer_the_target(tiny_timm_dir):
    model, _ = _load(tiny_timm_dir)
    head = model.get_submodule(head_module_name(model))
    head_weight = head.weight.detach().clone()
    pruning.prune_unstructured(model, 0.6, scope="layer")
    for name, module in pruning.prunable_weights(model):
        assert _zeros(module) == round(0.6 * module.weight.numel()), name
        kept = module.weight[module.weight != 0]
        assert module.weight_orig[module.weight == 0].abs().max() <= kept.abs().min(), name
    assert _zeros(head) == 0
    torch.testing.assert_close(head.weight, head_weight, rtol=0, atol=0)


def test_magnitude_pruning_keeps_a_trained_model_where_random_pruning_breaks_it(digits_lite0):
    """On a real digits classifier (94%), the smallest 30% of the weights matter little; a random 30% do."""
    pixels, labels = digits_lite0.pixels["test"][::2], digits_lite0.labels["test"][::2]  # 180 images suffice

    def accuracy(model):
        logits = torch.cat([_logits(model, torch.from_numpy(batch)) for batch in np.array_split(pixels, 2)])
        return float((logits.argmax(1).numpy() == labels).mean())

    magnitude = copy.deepcopy(digits_lite0.model)
    pruning.prune_unstructured(magnitude, 0.3)
    rand = copy.deepcopy(digits_lite0.model)
    for _, module in pruning.prunable_weights(rand):
        prune.random_unstructured(module, "weight", amount=0.3)
    assert pruning.weight_sparsity(rand) == pytest.approx(pruning.weight_sparsity(magnitude), abs=0.005)
    assert accuracy(magnitude) > accuracy(digits_lite0.model) - 0.1
    assert accuracy(rand) < 0.3


def test_unknown_scope_is_refused(tiny_vit_dir):
    model, _ = _load(tiny_vit_dir)
    with pytest.raises(InputError, match="'channel'"):
        pruning.prune_unstructured(model, 0.5, scope="channel")


def test_masks_keep_zeros_through_training_and_the_permanent_model_reloads(tiny_timm_dir, tmp_path):
    model, _ = _load(tiny_timm_dir)
    pruning.prune_unstructured(model, 0.7)
    before = {name: module.weight.detach().clone() for name, module in pruning.prunable_weights(model)}

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        loss = model(pixel_values=torch.randn(8, 3, 32, 32), labels=torch.randint(0, 10, (8,))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    _logits(model, pixel_values)  # the weights the model computes with after the last step
    for name, module in pruning.prunable_weights(model):
        pruned = before[name] == 0
        assert (module.weight[pruned] == 0).all(), name
        assert not torch.equal(module.weight[~pruned], before[name][~pruned]), name  # the rest did train
    assert pruning.weight_sparsity(model) == pytest.approx(0.7, abs=1e-3)

    with pytest.raises(InputError, match="make_permanent"):
        pruning.save_pruned(model, tmp_path / "masked")
    pruning.make_permanent(model)
    assert not any(name.endswith(("_orig", "_mask")) for name in model.state_dict())
    pruning.save_pruned(model, tmp_path / "pruned")
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert "pruned_structure" not in config  # same shapes: a plain checkpoint

    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "pruned").eval()
    torch.testing.assert_close(_logits(reloaded, pixel_values), _logits(model, pixel_values), rtol=0, atol=0)
    assert pruning.weight_sparsity(reloaded) == pruning.weight_sparsity(model)
    again = load_saved_classifier(str(tmp_path / "pruned"))
    torch.testing.assert_close(_logits(again, pixel_values), _logits(model, pixel_values), rtol=0, atol=0)


# ---------------------------------------------------------------- structured


def _check_structured(model, processor, target_share, pixel_values, tmp_path, image):
    """Prune to `target_share` of the parameters, save, reload; return the reloaded model."""
    _, total = count_parameters(model)
    target = round(target_share * total)
    pruning.prune_structured(model, target, pixel_values)
    _, pruned = count_parameters(model)
    assert target - 0.03 * total <= pruned <= target
    assert _logits(model, pixel_values).shape == (len(pixel_values), model.config.num_labels)

    pruning.save_pruned(model, tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = load_saved_classifier(str(tmp_path))
    assert pruning.is_structurally_pruned(reloaded.config)
    assert type(reloaded) is type(model)
    assert count_parameters(reloaded)[1] == pruned
    torch.testing.assert_close(_logits(reloaded, pixel_values), _logits(model, pixel_values), rtol=0, atol=1e-5)

    # Plain from_pretrained builds the unpruned architecture from config.json and refuses the weights.
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForImageClassification.from_pretrained(tmp_path)

    classifier = pipeline("image-classification", model=reloaded, image_processor=processor)
    predictions = classifier(image)
    assert predictions[0]["label"] in model.config.id2label.values()
    return reloaded


@pytest.fixture(scope="module")
def image(digits_dir):
    return Image.open(next((digits_dir / "test" / "3").iterdir())).convert("RGB")


def test_structured_timm_resnet_reaches_targets_iteratively_and_reloads(tiny_timm_dir, tmp_path, image):
    model, processor = _load(tiny_timm_dir)
    pixel_values = torch.randn(2, 3, 32, 32)
    pruning.check_structured_support(model, pixel_values)
    _, total = count_parameters(model)

    first = _check_structured(model, processor, 0.7, pixel_values, tmp_path / "70", image)
    # Iterative schedule: prune the reloaded 70% model further, to half the original size.
    first.train()
    pruning.prune_structured(first, round(0.5 * total), pixel_values)
    assert first.training  # pruning keeps the mode a following fine-tune expects
    first.eval()
    pruning.save_pruned(first, tmp_path / "50")
    reloaded = load_saved_classifier(str(tmp_path / "50"))
    assert 0.47 * total <= count_parameters(reloaded)[1] <= 0.5 * total
    torch.testing.assert_close(_logits(reloaded, pixel_values), _logits(first, pixel_values), rtol=0, atol=1e-5)
    # The head keeps its outputs (the classes); its inputs shrink with the last stage.
    head = reloaded.get_submodule(head_module_name(reloaded))
    assert head.out_features == 10 and head.in_features < model.timm_model.num_features


def test_structured_vit_prunes_mlp_and_head_dims_and_reloads(tiny_vit_dir, tmp_path, image):
    model, processor = _load(tiny_vit_dir, ["a", "b", "c"])
    pixel_values = torch.randn(2, 3, 32, 32)
    pruning.check_structured_support(model, pixel_values)
    reloaded = _check_structured(model, processor, 0.6, pixel_values, tmp_path, image)
    for layer in reloaded.vit.layers:
        assert layer.mlp.fc1.out_features < 64
        assert layer.attention.head_dim < 16
        assert layer.attention.q_proj.out_features == 2 * layer.attention.head_dim  # both heads kept
        assert layer.layernorm_before.normalized_shape == (32,)  # the embedding width is kept


def test_structured_vit_removes_exactly_the_dead_channels(tiny_vit_dir):
    """MLP neurons and per-head dimensions whose weights are all zero compute nothing: removing them must
    leave the logits unchanged, which only holds if every head loses the same dimensions of q, k and v."""
    model, _ = _load(tiny_vit_dir, ["a", "b", "c"])
    dead_dims = torch.cat([torch.arange(head * 16, head * 16 + 8) for head in range(2)])  # half of each head
    with torch.no_grad():
        for layer in model.vit.layers:
            layer.mlp.fc1.weight[::2] = 0
            layer.mlp.fc1.bias[::2] = 0
            layer.mlp.fc2.weight[:, ::2] = 0
            for projection in (layer.attention.q_proj, layer.attention.k_proj, layer.attention.v_proj):
                projection.weight[dead_dims] = 0
                projection.bias[dead_dims] = 0
            layer.attention.o_proj.weight[:, dead_dims] = 0
    pixel_values = torch.randn(4, 3, 32, 32)
    before = _logits(model, pixel_values)
    pruning.prune_structured(model, round(0.75 * count_parameters(model)[1]), pixel_values)
    attention = model.vit.layers[0].attention
    assert 8 < attention.head_dim < 16 and 32 < model.vit.layers[0].mlp.fc1.out_features < 64
    torch.testing.assert_close(_logits(model, pixel_values), before, rtol=0, atol=1e-6)


def test_attention_without_a_known_head_layout_is_left_whole(tmp_path):
    """timm's ViT attention (one fused `qkv` layer reshaped by `num_heads`/`head_dim`) is kept whole; its MLPs
    are pruned."""
    import timm

    torch.manual_seed(0)
    timm.models.save_for_hf(timm.create_model("test_vit", num_classes=10), tmp_path / "vit")
    model, _ = _load(tmp_path / "vit")
    size = model.config.pretrained_cfg["input_size"][1]
    pixel_values = torch.randn(2, 3, size, size)
    qkv = [block.attn.qkv.out_features for block in model.timm_model.blocks]
    hidden = [block.mlp.fc1.out_features for block in model.timm_model.blocks]
    pruning.prune_structured(model, round(0.7 * count_parameters(model)[1]), pixel_values)
    assert [block.attn.qkv.out_features for block in model.timm_model.blocks] == qkv
    assert all(block.mlp.fc1.out_features < width for block, width in zip(model.timm_model.blocks, hidden))
    pruning.save_pruned(model, tmp_path / "pruned")
    reloaded = load_saved_classifier(str(tmp_path / "pruned"))
    torch.testing.assert_close(_logits(reloaded, pixel_values), _logits(model, pixel_values), rtol=0, atol=1e-5)


def test_structured_efficientnet_lite0_keeps_depthwise_convs_consistent(lite0_dir, tmp_path, image):
    model, processor = _load(lite0_dir)
    pixel_values = torch.randn(2, 3, 64, 64)
    pruning.check_structured_support(model, pixel_values)
    reloaded = _check_structured(model, processor, 0.5, pixel_values, tmp_path, image)
    depthwise = [m for m in reloaded.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise
    for conv in depthwise:
        assert conv.groups == conv.in_channels == conv.out_channels == conv.weight.shape[0]
    assert reloaded.timm_model.conv_head.out_channels < 1280


def test_model_torch_pruning_cannot_handle_is_refused_before_any_work():
    """LeViT's downsampling attention subsamples its query tokens with a strided view: torch-pruning traces the
    model but maps the channels through that view wrongly, and the pruned copy no longer runs."""
    from transformers import LevitConfig, LevitForImageClassification

    model = LevitForImageClassification(
        LevitConfig(image_size=32, hidden_sizes=[32, 48, 64], num_attention_heads=[2, 2, 2], depths=[1, 1, 1],
                    key_dim=[8, 8, 8], num_labels=3)
    ).eval()
    _, total = count_parameters(model)
    with pytest.raises(InputError, match="LevitForImageClassification.*pruning_method: unstructured"):
        pruning.check_structured_support(model, torch.randn(2, 3, 32, 32))
    assert count_parameters(model)[1] == total  # the check prunes a copy


def test_unreachable_targets_are_refused(tiny_vit_dir):
    model, _ = _load(tiny_vit_dir, ["a", "b", "c"])
    pixel_values = torch.randn(2, 3, 32, 32)
    with pytest.raises(InputError, match="classification head"):
        pruning.prune_structured(model, 50, pixel_values)  # the head alone has 32 * 3 + 3 = 99
    # The embedding width (patch embedding, position embeddings, LayerNorms) and the head are kept: a third of it.
    with pytest.raises(InputError, match="stops at"):
        pruning.prune_structured(model, round(0.2 * count_parameters(model)[1]), pixel_values)


def test_checkpoint_that_does_not_match_its_record_is_refused(tiny_timm_dir, tmp_path):
    model, _ = _load(tiny_timm_dir)
    pixel_values = torch.randn(2, 3, 32, 32)
    pruning.prune_structured(model, round(0.6 * count_parameters(model)[1]), pixel_values)
    pruning.save_pruned(model, tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    name = next(iter(config["pruned_structure"]["tensors"]))
    del config["pruned_structure"]["tensors"][name]
    config_path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="does not match the pruned architecture"):
        load_saved_classifier(str(tmp_path))


def test_pruned_checkpoint_goes_through_the_normal_loading_path(tiny_timm_dir, tmp_path):
    """The recipes' loaders rebuild a pruned checkpoint; new labels (a new head) are refused, never re-initialised."""
    from hf_ft.compress.pruning import load_finetuned_classifier

    model, processor = _load(tiny_timm_dir)
    pixel_values = torch.randn(2, 3, 32, 32)
    pruning.prune_structured(model, round(0.6 * count_parameters(model)[1]), pixel_values)
    pruning.save_pruned(model.eval(), tmp_path)
    processor.save_pretrained(tmp_path)

    finetuned, _ = load_finetuned_classifier(str(tmp_path))
    again, _ = load_image_classifier(ModelArguments(model_name_or_path=str(tmp_path)), LABELS)
    for loaded in (finetuned, again):
        assert count_parameters(loaded)[1] == count_parameters(model)[1]
        torch.testing.assert_close(_logits(loaded.eval(), pixel_values), _logits(model, pixel_values), rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="structurally pruned"):
        load_image_classifier(ModelArguments(model_name_or_path=str(tmp_path)), ["cat", "dog"])
