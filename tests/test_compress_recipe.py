"""The compression recipe end to end: `accelerate launch recipes/compress.py --config ...` on a tiny fine-tuned model.

A tiny timm convnet is fine-tuned on the real digits by the image recipe, then distilled into a student,
pruned (structured, iterative, fine-tuned), quantized and exported; every variant lands in one report.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO
from . import recipe_runs
from .recipe_runs import results
from .test_image_cls_recipe import launch, recipe_config, write_config

pytestmark = pytest.mark.slow

COMPRESS = REPO / "recipes" / "compress.py"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, digits_dir, tiny_timm_dir) -> Path:
    tmp = tmp_path_factory.mktemp("finetuned")
    output_dir = tmp / "tiny-resnet-digits"
    launch(recipe_config(tmp, digits_dir, tiny_timm_dir, output_dir, num_train_epochs=4))
    return output_dir


def compress_config(tmp_path: Path, digits_dir: Path, model: Path, student: Path, output_dir: Path, **overrides) -> Path:
    compression = {
        "model_name_or_path": str(model),
        "max_train_samples": 400,
        "student_model_name_or_path": str(student),
        "distillation_temperature": 4.0,
        "pruning_method": "structured",
        "pruning_sparsities": [0.3, 0.5],
        "pruning_schedule": "iterative",
        "pruning_finetune_epochs": 1,
        "pruning_learning_rate": 1.0e-3,
        "calibration_samples": 32,
        "latency_batch_sizes": [1, 8],
        "latency_repeats": 3,
        "num_train_epochs": 2,
    }
    return write_config(tmp_path, digits_dir, output_dir, **{**compression, **overrides})


compress = partial(recipe_runs.launch, COMPRESS)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, digits_dir, tiny_timm_dir, finetuned) -> Path:
    tmp = tmp_path_factory.mktemp("compressed")
    output_dir = tmp / "compressed"
    compress(compress_config(tmp, digits_dir, finetuned, tiny_timm_dir, output_dir))
    return output_dir


def _rows(output_dir: Path) -> dict[str, dict]:
    data = json.loads((output_dir / "compression_results.json").read_text())
    return {row["name"]: row for row in data["variants"]}


def test_every_variant_is_measured_in_one_report(compressed, finetuned):
    rows = _rows(compressed)
    assert list(rows) == [
        "original", "student distilled", "student baseline", "pruned 30%", "pruned 50%",
        "PyTorch int8", "ONNX", "ONNX int8 dynamic", "ONNX int8 static",
    ]
    for row in rows.values():
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0 and row["size_bytes"] > 0
        assert set(row["latency_ms"]) == {"1", "8"} and all(ms > 0 for ms in row["latency_ms"].values())
    # The original is scored by the same metrics code as the run that fine-tuned it: the same test accuracy.
    assert rows["original"]["metrics"]["accuracy"] == pytest.approx(results(finetuned)["test"]["accuracy"], abs=1e-9)
    assert rows["original"]["metrics"]["accuracy"] > 0.5
    # The ONNX export computes the same function.
    assert rows["ONNX"]["agreement"] >= 0.99
    assert rows["ONNX int8 static"]["size_bytes"] < 0.5 * rows["ONNX"]["size_bytes"]
    from hf_ft.compress.onnx_export import detect_int8_target

    target = detect_int8_target()  # `auto`: this CPU's family, stated in the method and the report's note
    assert rows["ONNX int8 static"]["method"].endswith(f"for {target} CPUs)")
    assert any(note.startswith(f"quantized for `{target}` CPUs (`auto`") for note in rows["ONNX int8 static"]["notes"])
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(compressed / "onnx").id2label[3] == "3"  # to name the ONNX model's classes

    report = (compressed / "report.md").read_text()
    for name in rows:
        assert f"| {name} |" in report
    assert "thread(s)" in report
    assert (compressed / "accuracy_vs_latency.png").stat().st_size > 10_000
    assert (compressed / "accuracy_vs_sparsity.png").stat().st_size > 10_000


def test_structured_pruning_reaches_its_targets_and_reloads(compressed, digits_dir):
    from hf_ft.compress.inference import pixel_array
    from hf_ft.compress.pruning import load_saved_classifier
    from hf_ft.tasks.image_classification import ImageDataArguments, load_image_classification_data
    from transformers import AutoImageProcessor

    rows = _rows(compressed)
    original = rows["original"]["num_parameters"]
    for name, sparsity in (("pruned 30%", 0.3), ("pruned 50%", 0.5)):
        row = rows[name]
        assert row["num_parameters"] <= (1 - sparsity) * original
        assert row["num_parameters"] >= (1 - sparsity - 0.1) * original
        assert row["size_bytes"] < rows["original"]["size_bytes"]

    # The saved pruned model reloads and reproduces the accuracy in the report.
    path = compressed / rows["pruned 50%"]["path"]
    model = load_saved_classifier(str(path)).eval()
    processor = AutoImageProcessor.from_pretrained(path)
    data = load_image_classification_data(
        ImageDataArguments(train_dir=str(digits_dir / "train"), test_dir=str(digits_dir / "test")), seed=7
    )
    import torch

    with torch.no_grad():
        logits = model(pixel_values=torch.from_numpy(pixel_array(data.splits["test"], processor))).logits.numpy()
    accuracy = float(np.mean(logits.argmax(1) == np.asarray(data.splits["test"]["label"])))
    assert accuracy == pytest.approx(rows["pruned 50%"]["metrics"]["accuracy"], abs=1e-9)


@pytest.mark.parametrize("variant", ["pruned 50%", "PyTorch int8", "ONNX", "ONNX int8 static"])
def test_predict_runs_every_saved_variant_to_the_reports_accuracy(compressed, digits_dir, tmp_path, variant):
    """`hf-ft predict` on each file the compression run wrote: a pruned dir, a dynamic int8 dir, ONNX files."""
    row = _rows(compressed)[variant]
    predicted = recipe_runs.predict(compressed / row["path"], digits_dir / "test", tmp_path / "p.jsonl")
    assert predicted.metrics["accuracy"] == pytest.approx(row["metrics"]["accuracy"], abs=1e-9)
    assert predicted.metrics["num_samples"] == 359


def test_distilled_student_is_saved_for_pipeline(compressed, digits_dir):
    from transformers import pipeline

    classifier = pipeline("image-classification", model=str(compressed / "student_distilled"))
    image = next((digits_dir / "test" / "3").iterdir())
    assert classifier(str(image))[0]["label"] in {str(d) for d in range(10)}


@pytest.mark.parametrize(
    "override, message",
    [
        (["--pruning_sparsities", "0.5", "1.0"], "1.0"),
        (["--onnx_opset", "99"], "opset"),
        (["--onnx_quantization_target", "avx512"], "--onnx_quantization_target must be one of"),
        (["--student_model_name_or_path", "/nonexistent/student"], "/nonexistent/student"),
        (["--push_to_hub", "true"], "recipes/compress.py does not push"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, digits_dir, tiny_timm_dir, finetuned, override, message, capsys,
                                        monkeypatch):
    """Through `hf-ft train compress` in this process (a launch per case would cost a minute): exit 2, one line."""
    from hf_ft.cli import main

    output_dir = tmp_path / "out"
    config = compress_config(tmp_path, digits_dir, finetuned, tiny_timm_dir, output_dir)
    monkeypatch.setattr(sys, "argv", ["hf-ft"])
    with pytest.raises(SystemExit) as exit_:
        main(["train", "compress", "--config", str(config), *override])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error:") and message in err
    assert not output_dir.exists()
