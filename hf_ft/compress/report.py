"""The before/after table of a compression run: every variant measured the same way, in one report.

Writes to the run's output_dir:

    compression_results.json   one entry per variant: test metrics, agreement with the original, parameters,
                               size on disk, CPU latency per batch size, sparsity
    report.md                  the table, how it was measured, the figures, the resolved configuration
    accuracy_vs_latency.png    test accuracy against batch-1 latency, one point per variant
    accuracy_vs_sparsity.png   test accuracy against weight sparsity (runs with pruning)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from .. import markdown as md

RESULTS_FILE = "compression_results.json"


@dataclass
class VariantResult:
    """One row of the report: a model or exported artefact, measured on the test split."""

    name: str
    method: str
    path: str  # relative to the run's output_dir (the original: where it was loaded from)
    metrics: dict[str, float]  # accuracy, f1 (and top5_accuracy) on the test split
    agreement: float  # share of test images where its prediction equals the original model's
    num_parameters: int | None  # None for artefacts that do not expose them (int8 packed weights)
    size_bytes: int
    latency_ms: dict[int, float]  # batch size -> median milliseconds per batch
    sparsity: float | None = None  # share of exact zeros among prunable weights (pruned variants)
    notes: list[str] = field(default_factory=list)


def static_int8_note(requested: str, target: str, this_cpu: str, weights: str) -> str:
    """The report's note on an ONNX Runtime static int8 file: the CPU family it was quantized for, how, and what
    its numbers mean on another machine.

    ONNX Runtime chooses its int8 kernels on the machine that runs the file, so the report's accuracy and
    latency are this CPU's; a deployment often quantizes on one machine and runs on another.

    Args:
        requested: `--onnx_quantization_target` as given (`auto`, `vnni` or `avx2`).
        target: The family it was quantized for (`auto` resolved).
        this_cpu: The family of the CPU that quantized and measured it.
        weights: How the weights are stored for `target` (`onnx_export.INT8_TARGETS[target]`).
    """
    how = (
        "`auto`: this CPU's family"
        if requested == "auto"
        else f"set with `--onnx_quantization_target`; this CPU is `{this_cpu}`"
    )
    text = (
        f"quantized for `{target}` CPUs ({how}): {weights}; reduce_range off (full 8-bit weights). ONNX Runtime "
        "chooses its int8 kernels on the machine that runs the file, and the figures here are this CPU's. On "
        "another machine: a `vnni` file on an x86 CPU without VNNI (AVX2, or AVX-512 without VNNI) saturates "
        "(its uint8 x int8 kernel adds pairs of products in 16 bits) unless the session sets "
        "`session.x64quantprecision=1` (then exact, slower); an `avx2` file gives the same logits on every CPU, "
        "more slowly than a `vnni` file where VNNI is available. Quantize for the CPU that will run it "
        "(`--onnx_quantization_target vnni` or `avx2`)."
    )
    if target == this_cpu:
        return text
    if target == "vnni":
        return text + (
            " **Measured on a CPU without VNNI**: the accuracy here is that of the saturating kernel, not what a "
            "VNNI CPU computes; latency is not the target's either."
        )
    return text + " **Measured on a VNNI CPU**: the accuracy holds on the target; its latency there is not this CPU's."


def write_compression_report(output_dir: str | Path, variants: list[VariantResult], summary: dict) -> dict:
    """Write compression_results.json, report.md and the figures; return the JSON's content.

    Args:
        output_dir: The compression run's directory.
        variants: The rows, the original model first (the reference for sizes, speed-ups and agreement).
        summary: `{"model", "dataset", "num_test_samples", "threads", "cpu", "versions" {name: version},
            "config" (resolved arguments)}`.
    """
    output_dir = Path(output_dir)
    results = {
        "summary": {k: v for k, v in summary.items() if k != "config"},
        "variants": [asdict(v) for v in variants],
    }
    (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    _plot_accuracy_vs_latency(output_dir / "accuracy_vs_latency.png", variants)
    pruned = [v for v in variants if v.sparsity is not None]
    if pruned:
        _plot_accuracy_vs_sparsity(output_dir / "accuracy_vs_sparsity.png", variants[0], pruned)
    (output_dir / "report.md").write_text(_markdown(variants, summary, has_sparsity_plot=bool(pruned)))
    return results


def _markdown(variants: list[VariantResult], summary: dict, *, has_sparsity_plot: bool) -> str:
    original = variants[0]
    batch_sizes = sorted({size for v in variants for size in v.latency_ms})
    header = [
        "Variant",
        "Method",
        "Test accuracy",
        "Macro-F1",
        "Agrees with original",
        "Parameters",
        "Size on disk",
        "Smaller",
    ]
    header += [f"Latency b{size} (ms)" for size in batch_sizes] + [f"Speed-up b{batch_sizes[0]}"]
    rows = []
    for v in variants:
        cells = [
            md.cell(v.name),
            md.cell(v.method),
            md.pct(v.metrics["accuracy"]),
            f"{v.metrics['f1']:.4f}",
            md.pct(v.agreement),
            f"{v.num_parameters:,}" if v.num_parameters is not None else "—",
            _megabytes(v.size_bytes),
            f"{original.size_bytes / v.size_bytes:.2f}×",
        ]
        cells += [f"{v.latency_ms[size]:.2f}" if size in v.latency_ms else "—" for size in batch_sizes]
        first = batch_sizes[0]
        cells.append(f"{original.latency_ms[first] / v.latency_ms[first]:.2f}×")
        rows.append(cells)
    table = md.table(header, rows)

    notes = [f"- **{md.cell(v.name)}**: {note}" for v in variants for note in v.notes]
    versions = ", ".join(f"{name} {version}" for name, version in summary.get("versions", {}).items())
    sections = [
        f"# Compression report: {md.cell(summary.get('model', 'model'))}",
        (
            f"Every variant is evaluated on the same {summary.get('num_test_samples', 0):,} test images of "
            f"{md.code(summary.get('dataset'))}, through the same metrics code; accuracy is measured, never assumed. "
            "*Agrees with original* is the share of test images where the variant predicts the original model's class."
        ),
        table,
        (
            "## How latency was measured\n\n"
            f"CPU inference, {summary.get('threads')} thread(s) ({md.cell(summary.get('cpu', 'unknown CPU'))}), "
            "median of repeated calls after warm-up, preprocessing excluded, batches of preprocessed test images. "
            f"Software: {versions}. Size on disk counts the weight files of the saved artefact."
        ),
    ]
    if notes:
        sections.append("## Notes\n\n" + "\n".join(notes))
    figures = "## Figures\n\n![Accuracy against latency](accuracy_vs_latency.png)"
    if has_sparsity_plot:
        figures += "\n\n![Accuracy against sparsity](accuracy_vs_sparsity.png)"
    sections.append(figures)
    if summary.get("config"):
        sections.append(md.config_section(md.config_yaml(summary["config"])))
    return "\n\n".join(sections) + "\n"


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.2f} MB"


def _plot_accuracy_vs_latency(path: Path, variants: list[VariantResult]) -> None:
    batch_size = min(variants[0].latency_ms)
    figure = Figure(figsize=(7.5, 5), layout="constrained")
    axes = figure.subplots()
    for v in variants:
        axes.scatter(v.latency_ms[batch_size], 100 * v.metrics["accuracy"], s=40)
        axes.annotate(
            v.name,
            (v.latency_ms[batch_size], 100 * v.metrics["accuracy"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axes.set_xlabel(f"CPU latency, batch {batch_size} (ms, median)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Accuracy against latency")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)


def _plot_accuracy_vs_sparsity(path: Path, original: VariantResult, pruned: list[VariantResult]) -> None:
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for method in dict.fromkeys(v.method for v in pruned):
        points = sorted((v.sparsity, v.metrics["accuracy"]) for v in pruned if v.method == method)
        sparsities, accuracies = zip(*[(0.0, original.metrics["accuracy"]), *points])
        axes.plot([100 * s for s in sparsities], [100 * a for a in accuracies], marker="o", label=method)
    axes.set_xlabel("sparsity (% of prunable weights zeroed, or of parameters removed)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Accuracy against sparsity")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=100)
