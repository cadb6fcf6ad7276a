"""A run's output directory: start fresh, resume the same run, or refuse to touch another run's results."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from transformers.trainer_utils import get_last_checkpoint
from .errors import InputError

logger = logging.getLogger("hf_ft")

ARGS_FILE = "args.yaml"
# Arguments that do not change what a run computes: a rerun that differs only in these is the same run.
_NOT_RESULT_AFFECTING = {
    "output_dir",
    "resume_from_checkpoint",
    "push_to_hub",
    "hub_model_id",
    "hub_strategy",
    "hub_private_repo",
    "hub_always_push",
    "hub_revision",
    "report_to",
    "run_name",
    "compare_with",
    "logging_steps",
    "disable_tqdm",
    # speed only (hf_ft.speed); their defaults follow the machine, so a resume elsewhere must not be refused
    "dataloader_num_workers",
    "dataloader_persistent_workers",
    "dataloader_pin_memory",
    "dataloader_prefetch_factor",
    "bf16",
    "tf32",
    "torch_compile",
    "torch_compile_backend",
    "torch_compile_mode",
}


class OutputDirError(InputError):
    """`output_dir` holds something this run must not overwrite."""


def setup_logging(is_main_process: bool) -> None:
    """INFO logs from hf_ft on the main process, warnings only from the libraries and other processes."""
    level = logging.INFO if is_main_process else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout, level=level)
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()


def prepare_output_dir(output_dir: str, run_args: dict[str, Any], *, resume_from_checkpoint: str | None, is_main_process: bool) -> str | None:
    """Decide how this run uses `output_dir`, and record its arguments in `args.yaml`.

    - empty or new: a fresh run;
    - holds a run with the same arguments (the same command again, e.g. after a crash): resume from its
      last checkpoint;
    - holds anything else: refuse, so no earlier result is overwritten.

    Returns:
        The checkpoint to resume from, or None.

    Raises:
        OutputDirError: `output_dir` holds files of another run, or files hf_ft did not write.
    """
    path = Path(output_dir)
    resume = resume_from_checkpoint
    if path.is_dir() and any(path.iterdir()):
        earlier = _read_args(path)
        if earlier is None:
            raise OutputDirError(
                f"output_dir {path} is not empty and holds no {ARGS_FILE} from an hf_ft run. Choose a new "
                "--output_dir; nothing was changed."
            )
        differences = _differences(earlier, run_args)
        if differences:
            shown = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences[:5])
            raise OutputDirError(
                f"output_dir {path} holds another run ({shown}). Choose a new --output_dir, or delete that one; "
                "nothing was changed."
            )
        resume = resume or get_last_checkpoint(str(path))
        if resume:
            logger.info("Resuming the run in %s from %s", path, resume)
    if is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        with open(path / ARGS_FILE, "w", encoding="utf-8") as f:
            yaml.safe_dump(run_args, f, sort_keys=True)
    return resume


def _read_args(path: Path) -> dict[str, Any] | None:
    file = path / ARGS_FILE
    if not file.is_file():
        return None
    with open(file, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = sorted((set(old) | set(new)) - _NOT_RESULT_AFFECTING)
    return [(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]
