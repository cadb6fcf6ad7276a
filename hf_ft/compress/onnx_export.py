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
- static (`quantize_onnx_static`): weights 8-bit per output channel and activation ranges fixed beforehand
  from calibration images, written as QuantizeLinear/DequantizeLinear pairs (QDQ) that ONNX Runtime fuses
  into int8 kernels. The int8 path for convnets (~29% of the fp32 file for EfficientNet-Lite0).

ONNX Runtime chooses its int8 kernels on the machine that runs the file, from that CPU's features, so a
static file is quantized for a CPU family (`INT8_TARGETS`; `detect_int8_target` reads this CPU's): x86 without
VNNI multiplies uint8 activations by int8 weights with VPMADDUBSW, which adds pairs of products in 16 bits
and saturates; VNNI (AVX-512 or AVX), AMX and ARM accumulate in 32 bits and are exact.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from ..errors import InputError
from .inference import Predictor

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
# The dynamo exporter writes this opset natively; it down-converts to lower ones afterwards, and when that
# conversion fails (it does for convnets: ReduceMean's axes) it silently keeps opset 18.
MIN_EXPORT_OPSET = 18
# A protobuf message cannot exceed 2 GiB; larger models keep their weights in a `.data` file beside the .onnx.
_PROTOBUF_LIMIT_BYTES = 2**31
# The CPU families a static int8 file is quantized for, and how its weights are stored for each.
INT8_TARGETS = {
    "vnni": "int8 weights, run by ONNX Runtime's uint8 x int8 kernels: exact on x86 with VNNI or AMX and on ARM",
    "avx2": "uint8 weights (int8 + 128), run by ONNX Runtime's uint8 x uint8 kernels: exact on every CPU, for x86 "
    "without VNNI (AVX2, AVX-512 without VNNI), where uint8 x int8 saturates",
}
# x86 extensions that multiply uint8 by int8 with 32-bit accumulation (VPDPBUSD, TDPBUSD): no saturation.
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Static int8 keeps the first convolutions fp32 (see quantize_onnx_static).
STATIC_FP32_CONVOLUTIONS = 9


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


def int8_target_from_cpuinfo(cpuinfo: str) -> str:
    """The static int8 target (`vnni` or `avx2`, see `INT8_TARGETS`) of the CPU that `cpuinfo` describes.

    Args:
        cpuinfo: The text of Linux's /proc/cpuinfo. x86 lists its extensions on `flags` lines: VNNI (AVX-512 or
            AVX) or AMX int8 give `vnni`, anything else (AVX2, AVX-512 without VNNI, SSE4.1) `avx2`. ARM lists
            `Features` instead and gives `vnni`: the uint8 x int8 saturation, and ONNX Runtime's workaround for
            it, exist on x86 only. Text with neither gives `avx2`, whose files are exact on every CPU.
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags":
            return "vnni" if _VNNI_FLAGS & set(value.split()) else "avx2"
        if key == "features":
            return "vnni"
    return "avx2"


def detect_int8_target(cpuinfo_path: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The static int8 target of this CPU, from its /proc/cpuinfo (see `int8_target_from_cpuinfo`).

    Where there is no such file (macOS, Windows), ARM machines give `vnni` and the others `avx2`, the target
    whose files are exact everywhere.
    """
    try:
        cpuinfo = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "vnni" if platform.machine().lower() in ("arm64", "aarch64") else "avx2"
    return int8_target_from_cpuinfo(cpuinfo)


def resolve_int8_target(target: str) -> str:
    """`target` (`auto` or a key of `INT8_TARGETS`) with `auto` replaced by this CPU's (`detect_int8_target`).

    Raises:
        InputError: `target` is none of those.
    """
    if target == "auto":
        return detect_int8_target()
    if target not in INT8_TARGETS:
        raise InputError(f"int8 target must be `auto` or one of {sorted(INT8_TARGETS)}, got {target!r}.")
    return target


def quantize_onnx_static(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Iterable[np.ndarray], *, target: str
) -> Path:
    """ONNX Runtime static int8 (QDQ): per-channel 8-bit weights, activation ranges calibrated on `calibration`.

    Activations are uint8 (MinMax ranges); weights use their full 8-bit range, stored for the `target` CPU
    family (`INT8_TARGETS`): int8 for VNNI, AMX and ARM; uint8 for x86 without VNNI, whose uint8 x int8 kernel
    (VPMADDUBSW) saturates on full-range int8 weights (on the digits demo, measured on AVX2: 88% agreement
    with fp32) and whose uint8 x uint8 kernel does not. ONNX Runtime's answer for that CPU, `reduce_range` (7-bit
    weights), stays off: with 7 bits the mean squared error of the logits is 2.5 to 3 times larger, and the
    tests' linear-probe EfficientNet-Lite0 agreed with fp32 on 96.7 to 98.6% of the digits test set whichever
    first 3 to 24 convolutions stayed fp32. The two files hold the same numbers and give the same logits; on
    a VNNI CPU the `avx2` one is the slower (batch 32: 22 ms against 9.5, fp32 15; batch 1: 1.0, 0.8, 0.9-1.3).
    The first nine convolutions stay fp32 (`_full_precision_nodes`); agreement on that test set with 8-bit
    weights, first 3 / 9 / 15 convolutions kept: 98.1% / 98.6 to 99.2% / 98.9 to 99.7% (calibration draws of
    128 to 512 images), the file 29 to 30% of fp32 (Intel Sapphire Rapids, 2 cores, onnxruntime 1.32).
    Percentile or entropy calibration, int8 activations and moving-average ranges did no better than MinMax;
    per-tensor weights fell to 77%.

    Args:
        fp32_path: An fp32 ONNX file from `export_onnx`.
        out_path: The int8 `.onnx` file to write.
        calibration: Batches (N, C, H, W) of training images preprocessed like evaluation images; their
            activation min/max set the quantization ranges (64 to 1024 images gave the same agreement on
            the digits demo).
        target: `vnni` or `avx2` (`resolve_int8_target` turns `auto` into this CPU's).

    Returns:
        `out_path` as a Path.

    Raises:
        InputError: `calibration` holds no images, or `target` is not a key of `INT8_TARGETS`.
    """
    if target not in INT8_TARGETS:
        raise InputError(f"quantize_onnx_static target must be one of {sorted(INT8_TARGETS)}, got {target!r}.")
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
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_full_precision_nodes(graph),
        )
    if target == "avx2":
        _store_weights_as_uint8(out_path)
    return out_path


def _full_precision_nodes(graph: onnx.GraphProto, convolutions: int = STATIC_FP32_CONVOLUTIONS) -> list[str]:
    """Names of the nodes static int8 leaves in fp32: the node that reads the pixels and the first convolutions.

    In a MobileNet-style convnet these are the layers at the highest resolutions (in EfficientNet-Lite0 the
    stem and the first two stages, about 15,000 of its 3.4 M weights), whose quantization costs the most
    agreement (with BatchNorm folded in, the stem's weights span 0.4 to 325 across channels). Only a leading run of
    the graph can stay fp32: when an excluded Conv reads a dequantized tensor and writes one that is quantized
    again, ONNX Runtime quantizes its float weights itself, per tensor (its WeightBiasQuantization pass), which
    loses more than quantizing them per channel (one depthwise conv excluded mid-graph: 93% agreement).
    """
    first_convs = [node.name for node in graph.node if node.op_type == "Conv"][:convolutions]
    return list(dict.fromkeys([*(node.name for node in graph.node if INPUT_NAME in node.input), *first_convs]))


def _store_weights_as_uint8(path: Path) -> None:
    """Rewrite a QDQ file's int8 weights and zero points as uint8 (+ 128): the same numbers, which ONNX Runtime
    then multiplies with its uint8 x uint8 kernels, exact on x86 without VNNI.

    ONNX Runtime makes this rewrite itself when a session sets `session.x64quantprecision=1`; in the file, the
    CPU that runs it needs no option. (`quantize_static` with uint8 weights is not the same: it gives all-zero
    channels a zero point of 0 instead of 128, and that file ran about 6 times slower than this rewrite.)
    """
    model = onnx.load(path)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    shifted: set[str] = set()  # a zero point may be shared by several DequantizeLinear nodes
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        tensors = [initializers.get(name) for name in (node.input[0], node.input[2])]
        if any(t is None or t.data_type != onnx.TensorProto.INT8 for t in tensors):
            continue  # activations (uint8 here) and int32 biases
        for tensor in tensors:
            if tensor.name not in shifted:
                values = numpy_helper.to_array(tensor).astype(np.int16) + 128
                tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), tensor.name))
                shifted.add(tensor.name)
    onnx.save(model, path)


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
