"""PyTorch post-training dynamic int8 quantization of a classifier, its save format, and a numpy predictor.

Dynamic quantization stores the weights of `nn.Linear` layers as int8 and quantizes their inputs on the fly;
no calibration data is needed. It covers Linear layers only: convolutions stay fp32. A ViT is almost all Linear
(ViT-Base: the int8 file is 26% of the fp32 one); a convnet is not (EfficientNet-Lite0, whose only Linear is
its classifier: 100.3%, and the same speed). For convnets use ONNX Runtime static int8 (`hf_ft.compress.onnx_export`).

Why `torch.ao.quantization` and not torchao: torch 2.14 marks `torch.ao.quantization` deprecated in favour of
torchao's `quantize_`, but torchao 0.18's int8 dynamic-activation config has no x86 CPU kernel: on a ViT-Base
sized MLP at 2 threads it ran ~15x slower than fp32 (also under torch.compile), and its weight-only int8 only
~1.4x faster, while `torch.ao.quantization.quantize_dynamic` ran ~3x faster. So this module keeps
torch.ao, which torch 2.14 (the highest version hf_ft supports) still ships and runs, and silences its
deprecation warnings in `_quiet_torch_ao` only.

The saved format is `config.json` plus `model_int8.pt`, the quantized state dict written with `torch.save`
(quantized tensors cannot go into safetensors). It loads with `torch.load(weights_only=True)`, so loading
never executes pickled code.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel

from ..errors import InputError
from .inference import Predictor

WEIGHTS_NAME = "model_int8.pt"


@contextlib.contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    """Silence the deprecation warnings torch 2.14 raises on every use of dynamic quantization (see the module
    docstring for why torch.ao is used anyway); every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch.quantize_per_tensor, torch.quantize_per_channel", category=UserWarning)
        # torch.load rebuilds quantized tensors through TypedStorage.
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        yield


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with every `nn.Linear` quantized to int8 (dynamic activations), in eval mode.

    `model` itself is left unchanged. The result runs on the CPU only (torch's quantized kernels).

    Args:
        model: An fp32 model on the CPU, e.g. a fine-tuned `AutoModelForImageClassification`.

    Raises:
        InputError: `model` has no `nn.Linear` layer (nothing would be quantized) or is not on the CPU.
    """
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise InputError(
            f"{type(model).__name__} has no nn.Linear layer, so dynamic int8 would change nothing; set "
            "--quantize_dynamic_int8 false and use ONNX Runtime int8 (--onnx_quantization) instead."
        )
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise InputError(f"Dynamic int8 quantization runs on the CPU, but the model is on {device}; call model.cpu() first.")
    with _quiet_torch_ao():
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8).eval()


def save_dynamic_int8(quantized: PreTrainedModel, output_dir: str | os.PathLike) -> Path:
    """Save a model from `quantize_dynamic_int8`: its `config.json` and `model_int8.pt` (the int8 state dict).

    Save the image processor into the same directory yourself (`processor.save_pretrained(output_dir)`).

    Args:
        quantized: The result of `quantize_dynamic_int8` on a transformers model (it needs `.config`).
        output_dir: Directory to write into; created if missing.

    Returns:
        `output_dir` as a Path, for `load_dynamic_int8`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    quantized.config.save_pretrained(output_dir)
    torch.save(quantized.state_dict(), output_dir / WEIGHTS_NAME)
    return output_dir


def load_dynamic_int8(path: str | os.PathLike) -> PreTrainedModel:
    """Load a model saved by `save_dynamic_int8`, in eval mode.

    The fp32 architecture is built from `config.json` (random weights, nothing downloaded), quantized the same
    way, and then given the saved int8 state dict, so it computes exactly what the saved model did.

    Args:
        path: The directory `save_dynamic_int8` wrote.

    Raises:
        InputError: `path` lacks `config.json` or `model_int8.pt`.
    """
    path = Path(path)
    missing = [name for name in ("config.json", WEIGHTS_NAME) if not (path / name).is_file()]
    if missing:
        raise InputError(f"{path} is not a dynamic int8 model dir ({', '.join(missing)} missing); pass the dir "
                         "that save_dynamic_int8 wrote.")
    model = quantize_dynamic_int8(AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(path)))
    with _quiet_torch_ao():
        state_dict = torch.load(path / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    # nn.Module's own load_state_dict: TimmWrapper's override rebuilds the dict and so drops its `_metadata`,
    # without which quantized Linear layers read the state dict in the old (pre-version-3) layout and fail.
    nn.Module.load_state_dict(model, state_dict)
    return model


def torch_predictor(model: nn.Module, num_threads: int) -> Predictor:
    """A function from float32 NCHW pixel values to logits (numpy) that runs `model` on the CPU.

    Sets torch's process-wide intra-op thread count to `num_threads` (torch has no per-model setting), and puts
    `model` in eval mode.

    Args:
        model: A transformers image classifier (fp32, pruned or quantized) on the CPU; it takes `pixel_values`
            and returns an output with `.logits`.
        num_threads: CPU threads for torch's intra-op parallelism.

    Raises:
        InputError: `num_threads` is not positive.
    """
    if num_threads < 1:
        raise InputError(f"num_threads must be at least 1, got {num_threads}.")
    torch.set_num_threads(num_threads)
    model.eval()

    def predict(pixel_values: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(pixel_values=torch.from_numpy(pixel_values)).logits.numpy()

    return predict
