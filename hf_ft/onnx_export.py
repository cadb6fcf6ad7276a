"""Export an image classifier to ONNX, quantize the export to int8 with ONNX Runtime, and run it from numpy.

Every file has one input, `pixel_values` (float32, N x C x H x W, N free), and one output, `logits` (N x labels).

The export uses torch's dynamo exporter (`torch.export` + onnxscript), the default since torch 2.9; the legacy
TorchScript exporter is deprecated. For timm's TF-padded EfficientNet it also gives the cleaner graph: its
optimizer folds BatchNorm into the convolutions and the "same" padding into the Conv pads (94 nodes), where
the TorchScript exporter computes that padding at run time from the input shape (594 nodes: Shape, Ceil, Pad,
...). It is slower to export (~10 s for EfficientNet-Lite0 on 2 cores, against under 1 s).

int8 variants (ONNX Runtime, CPU):
- dynamic (`quantize_onnx_dynamic`): MatMul weights int8 ahead of time (Gemm is turned into MatMul first),
  activations quantized at run time from their own range; no data needed. Like PyTorch's dynamic int8 it
  leaves convolutions fp32, for two measured reasons: ONNX Runtime quantizes Conv weights per tensor only
  (ConvInteger), which with BatchNorm folded into them (per-channel ranges 0.4 to 325 in EfficientNet-Lite0's
  stem) zeroes whole channels: 13% agreement with fp32 on the digits demo; and its ConvInteger kernel ran
  10 to 18 times slower than the fp32 Conv. So it shrinks transformers (ViT-Base to 26%), not convnets.
- static (`quantize_onnx_static`): weights int8 per output channel and activation ranges fixed beforehand
  from calibration images, written as QuantizeLinear/DequantizeLinear pairs (QDQ) that ONNX Runtime fuses
  into int8 kernels. The int8 path for convnets (~29% of the fp32 file for EfficientNet-Lite0).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from .errors import InputError
from .inference import Predictor

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
# The dynamo exporter writes this opset natively; it down-converts to lower ones afterwards, and when that
# conversion fails (it does for convnets: ReduceMean's axes) it silently keeps opset 18.
MIN_EXPORT_OPSET = 18
# A protobuf message cannot exceed 2 GiB; larger models keep their weights in a `.data` file beside the .onnx.
_PROTOBUF_LIMIT_BYTES = 2**31


def onnxruntime_max_opset() -> int:
    """The newest default-domain (ai.onnx) opset the installed ONNX Runtime can load.

    It is the newest `since_version` among the operator schemas ONNX Runtime was built with: each opset
    version exists because some operator changed in it, and ONNX Runtime refuses models stamped with a newer
    one ("Opset N is under development ... official support for domain ai.onnx is till opset M").
    """
    schemas = onnxruntime.capi.onnxruntime_pybind11_state.get_all_operator_schema()
    return max(schema.since_version for schema in schemas if schema.domain in ("", "ai.onnx"))


def check_opset(opset: int) -> None:
    """Check that the exporter can write `opset` and the installed ONNX Runtime can run it, before any work.

    Args:
        opset: The ONNX opset the export is asked for.

    Raises:
        InputError: `opset` is below what the exporter writes natively or above what the installed `onnx`
            package (used to convert versions) or ONNX Runtime support.
    """
    newest = min(onnx.defs.onnx_opset_version(), onnxruntime_max_opset())
    if not MIN_EXPORT_OPSET <= opset <= newest:
        raise InputError(
            f"--onnx_opset {opset} is not supported here: torch's ONNX exporter writes opset {MIN_EXPORT_OPSET} and "
            f"later, and onnx {onnx.__version__} / onnxruntime {onnxruntime.__version__} run up to {newest}. Set "
            f"--onnx_opset between {MIN_EXPORT_OPSET} and {newest}."
        )


class _LogitsOnly(nn.Module):
    """`model(pixel_values=...).logits`, so the graph has exactly one output, the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: nn.Module, example_pixel_values: torch.Tensor, path: str | os.PathLike, *, opset: int) -> Path:
    """Export a classifier in eval mode to one ONNX file, with a free batch size.

    The model is exported in eval mode (dropout off, BatchNorm running statistics) and left in the mode it
    was in. Models over 2 GiB keep their weights in `<path>.data`.

    Args:
        model: A transformers image classifier (fp32) taking `pixel_values` and returning `.logits`.
        example_pixel_values: A preprocessed batch (N, C, H, W) on the model's device; it fixes C, H and W.
        path: The `.onnx` file to write; its directory is created.
        opset: ONNX opset (see `check_opset`).

    Returns:
        `path` as a Path.

    Raises:
        InputError: `opset` is not supported, or `example_pixel_values` is not a 4-d batch.
        RuntimeError: The exporter could not write `opset` (it would have kept another one).
    """
    check_opset(opset)
    if example_pixel_values.ndim != 4:
        raise InputError(
            f"example_pixel_values must be a batch of shape (N, C, H, W), got {tuple(example_pixel_values.shape)}; "
            "stack preprocessed images."
        )
    # torch.export specializes a dimension whose example size is 1, so the batch axis would not stay free.
    if example_pixel_values.shape[0] == 1:
        example_pixel_values = example_pixel_values.expand(2, -1, -1, -1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    was_training = model.training
    try:
        torch.onnx.export(
            _LogitsOnly(model).eval(),  # eval() reaches the wrapped model: dropout off, BatchNorm statistics
            (example_pixel_values,),
            path,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
            external_data=parameter_bytes >= _PROTOBUF_LIMIT_BYTES,
            verbose=False,
        )
    finally:
        model.train(was_training)
    written = _default_opset(path)
    if written != opset:
        raise RuntimeError(f"torch.onnx.export wrote opset {written}, not {opset} (version conversion failed); "
                           f"export with --onnx_opset {written}.")
    return path


def _default_opset(path: Path) -> int:
    """The ai.onnx opset an ONNX file is stamped with."""
    model = onnx.load(path, load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def quantize_onnx_dynamic(fp32_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """ONNX Runtime dynamic int8 of the MatMul (and Gemm) layers: int8 weights, activations quantized at run time.

    Convolutions stay fp32 (see the module docstring for why), so a convnet keeps almost all of its size.

    Args:
        fp32_path: An fp32 ONNX file from `export_onnx`.
        out_path: The int8 `.onnx` file to write.

    Returns:
        `out_path` as a Path.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _preprocessed(fp32_path) as prepared:
        quantize_dynamic(prepared, out_path, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    return out_path


@contextlib.contextmanager
def _preprocessed(fp32_path: str | os.PathLike) -> Iterator[Path]:
    """A temporary copy of the model after ONNX Runtime's `quant_pre_process` (shape inference, graph
    fusions): the preparation ONNX Runtime asks for before quantizing, so every tensor has a known shape."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        yield prepared


class _BatchReader(CalibrationDataReader):
    """Feeds calibration batches to ONNX Runtime's calibrator as `{"pixel_values": batch}`."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_onnx_static(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Iterable[np.ndarray]
) -> Path:
    """ONNX Runtime static int8 (QDQ): per-channel int8 weights, activation ranges calibrated on `calibration`.

    Activations are uint8 and weights int8 reduced to 7 bits, as ONNX Runtime advises for x86 CPUs: on AVX2
    without VNNI the uint8 x int8 products of full 8-bit weights saturate (on the digits demo, agreement with
    fp32 fell from 98% to 88% without the reduction); with VNNI the 7-bit range costs little.
    The first three convolutions stay fp32 (in a MobileNet-style convnet the stem and the first block, the
    layers at full resolution, whose few weights hardly change the file size; in a ViT the patch embedding).
    The stem's weights (BatchNorm folded in) span 0.4 to 325 across output channels. Agreement with fp32 on the
    digits test set, fine-tuned EfficientNet-Lite0 / linear-probe Lite0 of the tests: everything quantized
    92.8% / —; stem kept 97.8% / 96.7%; first three kept 99.7% / at least 98%, the file 29% of fp32 either way, at a
    latency cost measured in the compression report (batch 32: 19.5 against 12.6 ms on 2 cores).

    Args:
        fp32_path: An fp32 ONNX file from `export_onnx`.
        out_path: The int8 `.onnx` file to write.
        calibration: Batches (N, C, H, W) of training images preprocessed like evaluation images; their
            activation min/max set the quantization ranges (64 to 1024 images gave the same agreement on
            the digits demo).

    Returns:
        `out_path` as a Path.

    Raises:
        InputError: `calibration` holds no images.
    """
    batches = [batch for batch in calibration if len(batch)]
    if not batches:
        raise InputError("quantize_onnx_static got no calibration images; pass batches of preprocessed training images.")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _preprocessed(fp32_path) as prepared:
        graph = onnx.load(prepared, load_external_data=False).graph
        quantize_static(
            prepared,
            out_path,
            _BatchReader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_full_precision_nodes(graph),
        )
    return out_path


def _full_precision_nodes(graph: onnx.GraphProto, convolutions: int = 3) -> list[str]:
    """Names of the nodes static int8 leaves in fp32: the node that reads the pixels and the first convolutions."""
    first_convs = [node.name for node in graph.node if node.op_type == "Conv"][:convolutions]
    return list(dict.fromkeys([*(node.name for node in graph.node if INPUT_NAME in node.input), *first_convs]))


def onnx_predictor(path: str | os.PathLike, num_threads: int) -> Predictor:
    """A function from float32 NCHW pixel values to logits (numpy) that runs an ONNX file on the CPU.

    Args:
        path: An `.onnx` file with input `pixel_values` and output `logits` (any file from this module).
        num_threads: ONNX Runtime intra-op threads (its own pool; torch's setting does not apply).

    Raises:
        InputError: `num_threads` is not positive, or `path` does not exist.
    """
    if num_threads < 1:
        raise InputError(f"num_threads must be at least 1, got {num_threads}.")
    if not Path(path).is_file():
        raise InputError(f"ONNX file {path} does not exist; export it first (export_onnx).")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1  # one classifier graph: no independent branches to run side by side
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(pixel_values: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})[0]

    return predict
