"""PyTorch dynamic int8: what it quantizes, its save format round trip, and the numpy predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForImageClassification

from hf_ft.errors import InputError
from hf_ft.compress.inference import predict_batches, weights_size_bytes
from hf_ft.compress.quantization import (
    WEIGHTS_NAME,
    load_dynamic_int8,
    quantize_dynamic_int8,
    save_dynamic_int8,
    torch_predictor,
)

DynamicQuantizedLinear = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture
def tiny_vit(tiny_vit_dir):
    return AutoModelForImageClassification.from_pretrained(tiny_vit_dir).eval()


@pytest.fixture
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(pixel_values=pixel_values).logits


def test_vit_linear_layers_become_int8_and_the_original_is_untouched(tiny_vit):
    int8 = quantize_dynamic_int8(tiny_vit)

    linear_names = [name for name, module in tiny_vit.named_modules() if isinstance(module, nn.Linear)]
    quantized = dict(int8.named_modules())
    assert len(linear_names) == 13  # 2 layers x (q, k, v, attention output, intermediate, output) + classifier
    assert all(isinstance(quantized[name], DynamicQuantizedLinear) for name in linear_names)
    assert isinstance(quantized["vit.embeddings.patch_embeddings.projection"], nn.Conv2d)  # convolutions stay fp32
    assert all(type(module) is nn.Linear for name, module in tiny_vit.named_modules() if name in linear_names)
    assert not int8.training


def test_vit_int8_save_and_reload_give_identical_logits(tiny_vit, tmp_path):
    int8 = quantize_dynamic_int8(tiny_vit)
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    path = save_dynamic_int8(int8, tmp_path / "int8")
    reloaded = load_dynamic_int8(path)

    assert path == tmp_path / "int8"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", WEIGHTS_NAME]
    torch.load(path / WEIGHTS_NAME, weights_only=True)  # loads without executing pickled code
    assert torch.equal(_logits(reloaded, pixel_values), _logits(int8, pixel_values))
    # int8 weights move the logits a little.
    torch.testing.assert_close(_logits(int8, pixel_values), _logits(tiny_vit, pixel_values), atol=0.05, rtol=0)


def test_convnet_int8_keeps_predictions_and_size_and_reloads(digits_lite0, tmp_path):
    """EfficientNet-Lite0's only Linear layer is its classifier: int8 changes neither predictions nor size."""
    model, pixels = digits_lite0.model, digits_lite0.pixels["test"]
    int8 = quantize_dynamic_int8(model)

    assert isinstance(int8.timm_model.classifier, DynamicQuantizedLinear)
    assert isinstance(int8.timm_model.conv_stem, nn.Conv2d)
    fp32_logits = digits_lite0.test_logits
    int8_logits = predict_batches(torch_predictor(int8, 2), pixels)
    assert np.mean(fp32_logits.argmax(1) == digits_lite0.labels["test"]) > 0.9  # a real classifier
    assert np.mean(int8_logits.argmax(1) == fp32_logits.argmax(1)) >= 0.99
    model.save_pretrained(tmp_path / "fp32")
    path = save_dynamic_int8(int8, tmp_path / "int8")
    assert 0.95 < weights_size_bytes(path) / weights_size_bytes(tmp_path / "fp32") < 1.05
    # TimmWrapper's own load_state_dict would lose the quantized layers' format version: the reload avoids it.
    batch = torch.from_numpy(pixels[:8])
    assert torch.equal(_logits(load_dynamic_int8(path), batch), _logits(int8, batch))


def test_torch_predictor_sets_threads_and_returns_numpy_logits(tiny_vit, restore_torch_threads):
    pixel_values = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    tiny_vit.train()

    predict = torch_predictor(tiny_vit, 1)
    logits = predict(pixel_values)

    assert torch.get_num_threads() == 1
    assert not tiny_vit.training  # dropout off: the same input gives the same logits
    assert isinstance(logits, np.ndarray) and logits.shape == (3, 3)
    np.testing.assert_array_equal(logits, predict(pixel_values))
    np.testing.assert_allclose(logits, _logits(tiny_vit, torch.from_numpy(pixel_values)).numpy())


def test_bad_inputs_are_refused(tiny_vit, tmp_path):
    with pytest.raises(InputError, match="no nn.Linear layer"):
        quantize_dynamic_int8(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    tiny_vit.config.save_pretrained(tmp_path)
    with pytest.raises(InputError, match=f"{WEIGHTS_NAME} missing"):
        load_dynamic_int8(tmp_path)
    with pytest.raises(InputError, match="num_threads must be at least 1, got 0"):
        torch_predictor(tiny_vit, 0)
