"""The compression report and the measurement helpers behind it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_ft.compress.inference import measure_latency, predict_batches, weights_size_bytes
from hf_ft.compress.report import VariantResult, static_int8_note, write_compression_report


def _variant(name, accuracy, size, latency, **kw):
    return VariantResult(name=name, method=kw.pop("method", "m"), path=name, metrics={"accuracy": accuracy, "f1": accuracy},
                         agreement=kw.pop("agreement", 1.0), num_parameters=kw.pop("num_parameters", 1000),
                         size_bytes=size, latency_ms=latency, **kw)


def test_report_compares_every_variant_with_the_original(tmp_path):
    variants = [
        _variant("original", 0.97, 14_000_000, {1: 10.0, 32: 100.0}),
        _variant("pruned 50%", 0.95, 7_000_000, {1: 5.0, 32: 50.0}, sparsity=0.5, method="structured pruning",
                 num_parameters=500),
        _variant("ONNX int8", 0.96, 3_500_000, {1: 2.5, 32: 40.0}, agreement=0.99, notes=["static, 128 images"]),
    ]
    summary = {"model": "outputs/demo", "dataset": "digits/test", "num_test_samples": 359, "threads": 2,
               "cpu": "x86_64", "versions": {"torch": "2.14"}, "config": {"seed": 42}}
    results = write_compression_report(tmp_path, variants, summary)

    saved = json.loads((tmp_path / "compression_results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert [v["name"] for v in saved["variants"]] == ["original", "pruned 50%", "ONNX int8"]
    report = (tmp_path / "report.md").read_text()
    assert "| ONNX int8 | m | 96.00% | 0.9600 | 99.00% | 1,000 | 3.50 MB | 4.00× | 2.50 | 40.00 | 4.00× |" in report
    assert "| pruned 50% | structured pruning | 95.00% |" in report and "2 thread(s)" in report
    assert "static, 128 images" in report and "seed: 42" in report
    for figure in ("accuracy_vs_latency.png", "accuracy_vs_sparsity.png"):
        assert (tmp_path / figure).stat().st_size > 5_000 and figure in report


def test_static_int8_note_states_the_target_and_what_holds_on_another_cpu(tmp_path):
    same = static_int8_note("auto", "vnni", "vnni", "int8 weights")
    assert same.startswith("quantized for `vnni` CPUs (`auto`: this CPU's family): int8 weights; reduce_range off")
    assert "session.x64quantprecision=1" in same and "`--onnx_quantization_target vnni` or `avx2`" in same
    assert "Measured on" not in same
    for_avx2 = static_int8_note("avx2", "avx2", "vnni", "uint8 weights")
    assert "(set with `--onnx_quantization_target`; this CPU is `vnni`)" in for_avx2
    assert for_avx2.endswith("**Measured on a VNNI CPU**: the accuracy holds on the target; its latency there is not "
                             "this CPU's.")
    assert "**Measured on a CPU without VNNI**: the accuracy here is that of the saturating kernel" in static_int8_note(
        "vnni", "vnni", "avx2", "int8 weights"
    )

    variants = [_variant("original", 0.9, 10, {1: 1.0}),
                _variant("ONNX int8 static", 0.9, 3, {1: 0.5}, notes=[for_avx2])]
    write_compression_report(tmp_path, variants, {"threads": 1})
    assert f"- **ONNX int8 static**: {for_avx2}" in (tmp_path / "report.md").read_text()


def test_no_sparsity_plot_without_pruning(tmp_path):
    write_compression_report(tmp_path, [_variant("original", 0.9, 10, {1: 1.0})], {"threads": 1})
    assert not (tmp_path / "accuracy_vs_sparsity.png").exists()
    assert "accuracy_vs_sparsity" not in (tmp_path / "report.md").read_text()


def test_latency_is_the_median_per_batch_size():
    calls = []

    def predict(batch):
        calls.append(batch.shape)
        return np.zeros((len(batch), 3), np.float32)

    sample = np.zeros((5, 3, 8, 8), np.float32)
    timings = measure_latency(predict, sample, batch_sizes=(1, 32), repeats=4, warmup=1)
    assert set(timings) == {1, 32} and all(ms >= 0 for ms in timings.values())
    assert calls == [(1, 3, 8, 8)] * 5 + [(32, 3, 8, 8)] * 5  # warm-up + repeats, batches repeated from the sample
    logits = predict_batches(lambda b: b.reshape(len(b), -1)[:, :2], np.arange(130 * 12, dtype=np.float32).reshape(130, 3, 2, 2), 64)
    assert logits.shape == (130, 2) and logits[129, 0] == pytest.approx(129 * 12)


def test_weights_size_counts_model_files_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"x" * 500)
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "model.safetensors").write_bytes(b"x" * 1000)
    assert weights_size_bytes(tmp_path) == 1000
    assert weights_size_bytes(tmp_path / "model.safetensors") == 1000
