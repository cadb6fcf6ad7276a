"""ONNX export (opset checks, logits against PyTorch) and ONNX Runtime int8 (what it quantizes, what it keeps).

EfficientNet-Lite0 (the `digits_lite0` classifier) is exported once per module (~12 s on 2 cores), and
quantized static int8 for both CPU families (`vnni`, `avx2`). Each file is checked on this CPU with the
kernels that compute what its target CPU computes, so the thresholds hold on both families.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_ft.compress import onnx_export
from hf_ft.errors import InputError
from hf_ft.compress.inference import predict_batches
from hf_ft.compress.onnx_export import (
    INT8_TARGETS,
    check_opset,
    detect_int8_target,
    export_onnx,
    int8_target_from_cpuinfo,
    onnx_predictor,
    onnxruntime_max_opset,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    resolve_int8_target,
)
from hf_ft.compress.quantization import torch_predictor

OPSET = 18


def _op_types(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(path).graph.node)


def _agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == reference.argmax(1)))


# --- opset checks -------------------------------------------------------------------------------------------


def test_supported_opsets_pass():
    newest = min(onnx.defs.onnx_opset_version(), onnxruntime_max_opset())
    assert newest >= 21  # onnxruntime 1.20 runs opset 21
    check_opset(onnx_export.MIN_EXPORT_OPSET)
    check_opset(newest)


@pytest.mark.parametrize(
    "opset", [onnxruntime_max_opset() + 1, onnx_export.MIN_EXPORT_OPSET - 1], ids=["newer-than-runtime", "below-18"]
)
def test_unsupported_opset_is_refused_before_export(opset, tmp_path):
    model = torch.nn.Linear(2, 2)  # never traced: the check comes first
    with pytest.raises(InputError, match=rf"--onnx_opset {opset} is not supported.*Set --onnx_opset between 18 and"):
        export_onnx(model, torch.zeros(1, 3, 4, 4), tmp_path / "model.onnx", opset=opset)
    assert not (tmp_path / "model.onnx").exists()


# --- tiny ViT: export and dynamic int8 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_onnx(tiny_vit_dir, tmp_path_factory):
    """The tiny ViT, left in training mode, and its export (from a batch of 1)."""
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir).train()
    path = export_onnx(model, torch.zeros(1, 3, 32, 32), tmp_path_factory.mktemp("vit") / "model.onnx", opset=OPSET)
    return model, path


def test_vit_export_matches_pytorch_at_any_batch_size(vit_onnx):
    model, path = vit_onnx
    proto = onnx.load(path)
    predict = onnx_predictor(path, 2)
    pixel_values = np.random.default_rng(0).standard_normal((5, 3, 32, 32), dtype=np.float32)

    assert model.training  # exported in eval mode, then given back as it was
    assert [i.name for i in proto.graph.input] == ["pixel_values"] and [o.name for o in proto.graph.output] == ["logits"]
    assert [entry.version for entry in proto.opset_import if entry.domain == ""] == [OPSET]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # one file, no external data
    reference = torch_predictor(model.eval(), 2)(pixel_values)
    for batch in (pixel_values[:1], pixel_values):
        np.testing.assert_allclose(predict(batch), reference[: len(batch)], atol=1e-5, rtol=0)


def test_vit_dynamic_int8_quantizes_matmuls(vit_onnx, tmp_path):
    model, fp32 = vit_onnx
    int8 = quantize_onnx_dynamic(fp32, tmp_path / "int8.onnx")
    pixel_values = np.random.default_rng(1).standard_normal((4, 3, 32, 32), dtype=np.float32)

    ops = _op_types(int8)
    assert ops["MatMulInteger"] == 13 and "ConvInteger" not in ops  # all 13 Linear layers, no Conv
    assert int8.stat().st_size < fp32.stat().st_size
    np.testing.assert_allclose(
        onnx_predictor(int8, 2)(pixel_values), torch_predictor(model.eval(), 2)(pixel_values), atol=0.05, rtol=0
    )


# --- EfficientNet-Lite0 on the digits: export, static and dynamic int8 ---------------------------------------


@pytest.fixture(scope="module")
def lite0_onnx(digits_lite0, tmp_path_factory):
    """fp32 export and its static int8 for each target (calibrated on 128 training images)."""
    directory = tmp_path_factory.mktemp("lite0")
    pixels = digits_lite0.pixels
    fp32 = export_onnx(digits_lite0.model, torch.from_numpy(pixels["test"][:2]), directory / "model.onnx", opset=OPSET)
    calibration = pixels["train"][np.random.default_rng(0).permutation(len(pixels["train"]))[:128]]
    batches = np.array_split(calibration, 8)
    static = {
        target: quantize_onnx_static(fp32, directory / f"static_{target}.onnx", batches, target=target)
        for target in INT8_TARGETS
    }
    return fp32, static


def _static_logits(path: Path, target: str, pixels: np.ndarray) -> np.ndarray:
    """Logits of a static int8 file as its target CPU computes them, on this CPU.

    A `vnni` file run on x86 without VNNI goes to the saturating uint8 x int8 kernel; ONNX Runtime's
    `session.x64quantprecision` option makes it convert the weights to uint8 (what an `avx2` file stores)
    and compute exactly, as a VNNI CPU does. Elsewhere both files run as they are.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    if target == "vnni" and detect_int8_target() == "avx2":
        options.add_session_config_entry("session.x64quantprecision", "1")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return predict_batches(lambda batch: session.run(["logits"], {"pixel_values": batch})[0], pixels)


def _weight_types(path: Path) -> set[int]:
    """Element types of the weights: the non-bias initializers that DequantizeLinear nodes dequantize."""
    graph = onnx.load(path).graph
    dequantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    return {t.data_type for t in graph.initializer if t.name in dequantized and t.data_type != onnx.TensorProto.INT32}


def test_lite0_export_matches_pytorch(lite0_onnx, digits_lite0):
    fp32, _ = lite0_onnx
    logits, reference = predict_batches(onnx_predictor(fp32, 2), digits_lite0.pixels["test"]), digits_lite0.test_logits

    np.testing.assert_allclose(logits, reference, atol=1e-3, rtol=0)  # measured: ~5e-5
    assert _agreement(logits, reference) == 1.0
    # BatchNorm folded into the convolutions and TF "same" padding into their pads: a plain graph.
    assert set(_op_types(fp32)) == {"Conv", "Clip", "Add", "ReduceMean", "Reshape", "Gemm"}


@pytest.mark.parametrize("target", sorted(INT8_TARGETS))
def test_lite0_static_int8_is_a_third_of_the_size_and_keeps_predictions(lite0_onnx, digits_lite0, target):
    fp32, static = lite0_onnx[0], lite0_onnx[1][target]
    logits, reference = _static_logits(static, target, digits_lite0.pixels["test"]), digits_lite0.test_logits
    labels = digits_lite0.labels["test"]

    assert static.stat().st_size <= 0.35 * fp32.stat().st_size  # measured: 29%
    assert _agreement(logits, reference) >= 0.98  # measured: 99.2% for both (Sapphire Rapids)
    expected = onnx.TensorProto.INT8 if target == "vnni" else onnx.TensorProto.UINT8
    assert _weight_types(static) == {expected}
    assert np.mean(logits.argmax(1) == labels) >= np.mean(reference.argmax(1) == labels) - 0.02
    ops = _op_types(static)
    assert ops["QuantizeLinear"] > 40 and ops["DequantizeLinear"] > 40
    graph = onnx.load(static).graph
    first = next(node for node in graph.node if "pixel_values" in node.input)
    assert first.op_type == "Conv"  # the stem reads the pixels itself: it stays fp32
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    # and so do the next eight convolutions; the others read dequantized 8-bit weights
    assert [conv.input[1] in float_weights for conv in convs] == [True] * 9 + [False] * (len(convs) - 9)


def test_lite0_static_int8_targets_give_the_same_logits(lite0_onnx, digits_lite0):
    """Same numbers, stored as int8 or as uint8 + 128: either file computes exactly what the other does."""
    _, static = lite0_onnx
    pixels = digits_lite0.pixels["test"][:64]
    uint8, int8 = _static_logits(static["avx2"], "avx2", pixels), _static_logits(static["vnni"], "vnni", pixels)
    np.testing.assert_allclose(uint8, int8, atol=1e-4, rtol=0)


def test_lite0_dynamic_int8_leaves_convolutions_fp32(lite0_onnx, digits_lite0, tmp_path):
    fp32, _ = lite0_onnx
    dynamic = quantize_onnx_dynamic(fp32, tmp_path / "dynamic.onnx")
    logits = predict_batches(onnx_predictor(dynamic, 2), digits_lite0.pixels["test"])

    ops = _op_types(dynamic)
    assert ops["Conv"] == 49 and ops["MatMulInteger"] == 1 and "ConvInteger" not in ops  # only the classifier
    assert dynamic.stat().st_size > 0.95 * fp32.stat().st_size
    assert _agreement(logits, digits_lite0.test_logits) >= 0.99


# --- bad inputs ---------------------------------------------------------------------------------------------


def test_bad_inputs_are_refused(lite0_onnx, tmp_path):
    fp32, _ = lite0_onnx
    with pytest.raises(InputError, match="no calibration images"):
        quantize_onnx_static(fp32, tmp_path / "static.onnx", [], target="vnni")
    with pytest.raises(InputError, match=r"target must be one of \['avx2', 'vnni'\], got 'auto'"):
        quantize_onnx_static(fp32, tmp_path / "static.onnx", [np.zeros((1, 3, 64, 64), np.float32)], target="auto")
    with pytest.raises(InputError, match="int8 target must be `auto` or one of"):
        resolve_int8_target("avx512")
    with pytest.raises(InputError, match="does not exist"):
        onnx_predictor(tmp_path / "missing.onnx", 2)
    with pytest.raises(InputError, match="num_threads must be at least 1"):
        onnx_predictor(fp32, 0)
    with pytest.raises(InputError, match=r"shape \(N, C, H, W\), got \(3, 32, 32\)"):
        export_onnx(torch.nn.Linear(2, 2), torch.zeros(3, 32, 32), tmp_path / "model.onnx", opset=OPSET)


# --- which CPU family static int8 is quantized for --------------------------------------------------------

_X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt avx avx2 bmi2"


@pytest.mark.parametrize(
    "cpuinfo, target",
    [
        (f"processor\t: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: {_X86_FLAGS} sha_ni\n", "avx2"),  # Zen 3
        (f"flags\t\t: {_X86_FLAGS} avx512f avx512bw avx512vl\n", "avx2"),  # Skylake-SP: AVX-512, no VNNI
        (f"flags\t\t: {_X86_FLAGS} avx512f avx512_vnni\n", "vnni"),  # Cascade Lake, Ice Lake, Zen 4
        (f"flags\t\t: {_X86_FLAGS} avx_vnni\n", "vnni"),  # Alder Lake: AVX-VNNI without AVX-512
        (f"flags\t\t: {_X86_FLAGS} amx_tile amx_int8\n", "vnni"),
        ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp\nCPU part\t: 0xd0c\n", "vnni"),
        ("", "avx2"),  # unreadable: the target that is exact everywhere
    ],
    ids=["zen3-avx2", "skylake-avx512", "avx512-vnni", "avx-vnni", "amx", "arm", "empty"],
)
def test_int8_target_from_cpuinfo(cpuinfo, target):
    assert int8_target_from_cpuinfo(cpuinfo) == target


def test_int8_target_of_this_cpu(tmp_path, monkeypatch):
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
        has_vnni = any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))
        if flags:
            assert detect_int8_target() == ("vnni" if has_vnni else "avx2")
    assert resolve_int8_target("auto") == detect_int8_target() and resolve_int8_target("avx2") == "avx2"
    (tmp_path / "cpuinfo").write_text(f"flags\t: {_X86_FLAGS} avx512_vnni\n")
    assert detect_int8_target(tmp_path / "cpuinfo") == "vnni"
    for machine, target in (("arm64", "vnni"), ("x86_64", "avx2")):
        monkeypatch.setattr(onnx_export.platform, "machine", lambda: machine)
        assert detect_int8_target(tmp_path / "missing") == target
