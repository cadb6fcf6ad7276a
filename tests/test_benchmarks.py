"""The throughput benchmark stays runnable: its CPU smoke mode measures every setup on both models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import REPO

SCRIPT = REPO / "benchmarks" / "image_cls_throughput.py"


def test_throughput_benchmark_runs_every_setup_on_cpu(tmp_path):
    rows_file = tmp_path / "rows.json"
    command = [sys.executable, str(SCRIPT), "--tiny", "--data_dir", str(tmp_path / "jpegs"), "--json", str(rows_file)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]

    assert len(list((tmp_path / "jpegs").glob("*/train/*/*.jpg"))) == 64
    measured = json.loads(rows_file.read_text())
    rows = {(row["model"], row["setup"]): row for row in measured["rows"]}
    assert set(rows) == {
        (m, s)
        for m in ("vit_b16", "resnet50")
        for s in ("trainer_fp32", "trainer_bf16", "hf_ft", "hf_ft_eager", "hf_ft_cache", "ceiling")
    }
    for (_, setup), row in rows.items():
        assert row["images_per_s"] > 0 and row["warmup_s"] > 0 and row["main_cores"] > 0 and row["flops_per_image"] > 0
        # hf_ft loads in worker processes; the peers (0 workers by default) and the bare loop have none. Their CPU in
        # the timed window is no test of that: persistent workers may have prefetched every tiny cached batch before.
        assert (row["loader_workers"] > 0) == setup.startswith("hf_ft"), (setup, row["loader_workers"])
        assert row["worker_cores"] >= 0 and (row["worker_cores"] == 0 or row["loader_workers"] > 0)
    assert measured["peak_flops"] > 0
    for line in ("| model | setup | img/s |", "| vit_b16 | trainer_bf16 |", "| resnet50 | hf_ft_cache |"):
        assert line in result.stdout


def test_input_pipeline_cost_times_every_step(tmp_path):
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "input_pipeline_cost.py"),
        "--images",
        "8",
        "--jpeg_size",
        "40",
        "60",
        "--resolution",
        "32",
        "--repeats",
        "1",
        "--data_dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "ms per image" not in line]
    assert len(rows) == 7
    assert all(float(row.split("|")[2]) > 0 for row in rows)


def test_worker_restart_cost_compares_restarted_and_persistent_workers(tmp_path):
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "worker_restart_cost.py"),
        *("--images", "80", "--jpeg_size", "40", "60", "--resolution", "32", "--batch_size", "4"),
        *("--workers", "1", "--ballast_gib", "0", "0.5", "--epochs", "3", "--data_dir", str(tmp_path)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "RSS" not in line]
    assert len(rows) == 2
    (small_rss, *small), (large_rss, *large) = ([float(cell) for cell in row] for row in rows)
    assert large_rss > small_rss + 0.3  # the ballast is resident
    assert all(seconds > 0 for seconds in small[1:3] + large[1:3])


def test_sft_benchmark_measures_each_setup_on_cpu(tmp_path):
    rows_file = tmp_path / "rows.json"
    command = [sys.executable, str(REPO / "benchmarks" / "sft_throughput.py"), "--samples", "48", "--steps", "3",
               "--json", str(rows_file)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["setup"]: row for row in json.loads(rows_file.read_text())["rows"]}
    assert set(rows) == {"trainer_padded", "hf_ft", "hf_ft_packed"}
    assert rows["hf_ft_packed"]["padding_share"] == 0.0  # packed, padding-free rows hold no padding
    assert rows["trainer_padded"]["padding_share"] > 0.1  # log-normal lengths padded to each batch's longest
    for row in rows.values():
        assert row["real_tokens_per_s"] > 0 and 0 < row["loss_last"] < 20
    assert "| hf_ft_packed |" in result.stdout


def test_detection_augmentation_benchmark_times_both_libraries_or_says_one_is_missing(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "detection_augmentation_cost.py"), "--quick"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| torchvision v2 |")]
    assert len(rows) == 2 and all(float(row.split("|")[3]) > 0 for row in rows)  # two image sizes, real timings
    assert result.stdout.count("| albumentations |") == 2  # timed, or "not installed" (not a dependency)
    assert result.stdout.count("| hf_ft recipe |") == 2
    assert "every output box checked inside the image" in result.stdout
