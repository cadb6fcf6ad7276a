"""Running a recipe in tests the way users run it: `accelerate launch` in a subprocess, `main()` in this process
(where the Hub client can be replaced), or killed with SIGKILL once a checkpoint is written."""

from __future__ import annotations

import inspect
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path

from hf_ft.args import parse_args

from .conftest import REPO

CPU_CONFIG = REPO / "accelerate_configs" / "cpu.yaml"
PREDICT_RECIPE = REPO / "recipes" / "predict.py"
TWO_PROCESS_CONFIG = REPO / "accelerate_configs" / "multi_cpu.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1"}


def _command(recipe: Path | tuple[str, ...], config: Path, extra: tuple[str, ...], accelerate_config: Path) -> list[str]:
    target = list(recipe) if isinstance(recipe, tuple) else [str(recipe)]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
            "--main_process_port", str(free_port()), *target, "--config", str(config), *extra]


def launch(recipe: Path | tuple[str, ...], config: Path, *extra: str, accelerate_config: Path = CPU_CONFIG,
           check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """`accelerate launch <recipe> --config <config> <extra>`, offline; a failure shows its error lines.

    `recipe` is a script's path, or what follows `accelerate launch` instead (`("-m", "hf_ft", "train", "image_cls")`).
    """
    result = subprocess.run(_command(recipe, config, extra, accelerate_config), capture_output=True, text=True,
                            cwd=REPO, env=offline_env(), timeout=timeout)
    if check and result.returncode != 0:
        errors = "\n".join(line for line in result.stderr.splitlines() if "Error" in line or "error:" in line)
        raise AssertionError(f"{recipe} failed ({result.returncode}):\n{errors}\n{result.stderr[-3000:]}")
    return result


def run_in_process(recipe: Path, config: Path, *extra: str):
    """The recipe's `main()` in this process, its arguments parsed from `config` into the types `main` declares."""
    namespace = runpy.run_path(str(recipe))
    main = namespace["main"]
    hints = typing.get_type_hints(main)
    types = tuple(hints[name] for name in inspect.signature(main).parameters)
    return main(*parse_args(types, ["--config", str(config), *extra]))


def predict(model: Path, input: Path | str, output_file: Path, **arguments):
    """`hf-ft predict --model_name_or_path <model> --input <input> --output_file <output_file> --key value ...` in
    this process; returns its `Predictions` (rows and metrics), also written to `output_file`."""
    from hf_ft.predict import PredictArguments

    argv = [f"--{key}={value}" for key, value in
            {"model_name_or_path": model, "input": input, "output_file": output_file, **arguments}.items()]
    return runpy.run_path(str(PREDICT_RECIPE))["main"](*parse_args((PredictArguments,), argv))


def kill_after(recipe: Path, config: Path, checkpoint: Path) -> None:
    """Start the recipe on `config` and kill -9 its process group once `checkpoint` is complete."""
    process = subprocess.Popen(_command(recipe, config, (), CPU_CONFIG), cwd=REPO, env=offline_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = checkpoint / "trainer_state.json"
    deadline = time.time() + 300
    while not state.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert state.exists(), "the run never wrote its first checkpoint"
    assert not (checkpoint.parent / "eval_results.json").exists(), "the run finished before it could be killed"


def check_search_reruns(recipe: Path, output_dir: Path, best: dict, metric: str) -> list[dict]:
    """A finished search in `output_dir` (`best`: what the recipe returned): its trials, best first, and best.yaml
    run as a config trains to the best trial's validation `metric` exactly. Returns the trials.csv rows."""
    import csv

    import yaml

    with open(output_dir / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert int(trials[0]["trial"]) == best["number"] and float(trials[0][metric]) == best["value"]
    assert len({tuple(row.values())[1:-2] for row in trials}) == len(trials)  # different values, not one trial twice
    assert (output_dir / "search.png").stat().st_size > 0 and "Best: trial" in (output_dir / "search.md").read_text()
    config = yaml.safe_load((output_dir / "best.yaml").read_text())
    assert {name: config[name] for name in best["params"]} == best["params"] and "n_trials" not in config
    assert config["output_dir"] == str(output_dir / "best")
    run_in_process(recipe, output_dir / "best.yaml")
    assert results(output_dir / "best")["validation"][metric] == best["value"]
    return trials


def results(output_dir: Path) -> dict:
    return json.loads((output_dir / "eval_results.json").read_text())


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    first, second = load_file(a), load_file(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
