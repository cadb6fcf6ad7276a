"""ONNX export (opset checks, logits against PyTorch) and ONNX Runtime int8 (what it quantizes, what it keeps).

EfficientNet-Lite0 (the `digits_lite0` classifier) is exported once per module (~12 s on 2 cores).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_ft import onnx_export
from hf_ft.errors import InputError
from hf_ft.inference import predict_batches
from hf_ft.onnx_export import (
    check_opset,
    export_onnx,
    onnx_predictor,
    onnxruntime_max_opset,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from hf_ft.quantization import torch_predictor

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
    """fp32 export and its static int8 (calibrated on 128 training images)."""
    directory = tmp_path_factory.mktemp("lite0")
    pixels = digits_lite0.pixels
    fp32 = export_onnx(digits_lite0.model, torch.from_numpy(pixels["test"][:2]), directory / "model.onnx", opset=OPSET)
    calibration = pixels["train"][np.random.default_rng(0).permutation(len(pixels["train"]))[:128]]
    static = quantize_onnx_static(fp32, directory / "static.onnx", np.array_split(calibration, 8))
    return fp32, static


def test_lite0_export_matches_pytorch(lite0_onnx, digits_lite0):
    fp32, _ = lite0_onnx
    logits, reference = predict_batches(onnx_predictor(fp32, 2), digits_lite0.pixels["test"]), digits_lite0.test_logits

    np.testing.assert_allclose(logits, reference, atol=1e-3, rtol=0)  # measured: ~5e-5
    assert _agreement(logits, reference) == 1.0
    # BatchNorm folded into the convolutions and TF "same" padding into their pads: a plain graph.
    assert set(_op_types(fp32)) == {"Conv", "Clip", "Add", "ReduceMean", "Reshape", "Gemm"}


def test_lite0_static_int8_is_a_third_of_the_size_and_keeps_predictions(lite0_onnx, digits_lite0):
    fp32, static = lite0_onnx
    logits, reference = predict_batches(onnx_predictor(static, 2), digits_lite0.pixels["test"]), digits_lite0.test_logits
    labels = digits_lite0.labels["test"]

    assert static.stat().st_size <= 0.35 * fp32.stat().st_size  # measured: 29%
    assert _agreement(logits, reference) >= 0.98
    assert np.mean(logits.argmax(1) == labels) >= np.mean(reference.argmax(1) == labels) - 0.02
    ops = _op_types(static)
    assert ops["QuantizeLinear"] > 40 and ops["DequantizeLinear"] > 40
    first = next(node for node in onnx.load(static).graph.node if "pixel_values" in node.input)
    assert first.op_type == "Conv"  # the stem reads the pixels itself: it stays fp32 (and the next two convs)


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
        quantize_onnx_static(fp32, tmp_path / "static.onnx", [])
    with pytest.raises(InputError, match="does not exist"):
        onnx_predictor(tmp_path / "missing.onnx", 2)
    with pytest.raises(InputError, match="num_threads must be at least 1"):
        onnx_predictor(fp32, 0)
    with pytest.raises(InputError, match=r"shape \(N, C, H, W\), got \(3, 32, 32\)"):
        export_onnx(torch.nn.Linear(2, 2), torch.zeros(3, 32, 32), tmp_path / "model.onnx", opset=OPSET)
