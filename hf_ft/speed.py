"""Fast training defaults: what the hardware allows, chosen for every option the user left unset.

None of these change what a run learns beyond numerical noise (tested in `tests/test_speed.py`); they change
how long it takes. Measured with `benchmarks/image_cls_throughput.py`.

Two steps, because some choices need the parsed run:
- `parser_defaults()` goes into the argument parser, under the YAML and the command line: `use_cpu` on a machine
  without an accelerator (so `accelerate launch` with two CPU processes trains as one DDP run), data loader workers
  sized to the machine (pinned memory and fused AdamW are TrainingArguments' defaults already), and `bf16`,
  `torch_compile` and persistent workers left undecided (None, which TrainingArguments treats as off) so that an
  explicit `true` or `false` from the user is never second-guessed.
- `resolve_training_args()` decides the undecided ones once the device and the run's length are known.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
from transformers import TrainingArguments
from transformers.utils import is_torch_tf32_available

logger = logging.getLogger("hf_ft")

# A cap, so a 128-core machine does not fork 127 processes that each hold their prefetched batches; 16 workers
# feed ~4,300 img/s at the 3.7 ms a 300-500 px JPEG costs one core (decode + augmentation,
# benchmarks/input_pipeline_cost.py).
MAX_DATALOADER_WORKERS = 16
# torch.compile spends about a minute compiling (once for training, once for evaluation) and then saves a share
# of every step. Below this many training samples that minute is not paid back. An estimate until measured on a
# GPU with the benchmark (its warm-up column is the compile cost, its img/s columns the saving).
COMPILE_MIN_TRAIN_SAMPLES = 500_000


def parser_defaults() -> dict[str, object]:
    """TrainingArguments defaults for this machine, to be overridden by the YAML and the command line."""
    return {
        # Without an accelerator, Trainer joins the processes of `accelerate launch` into one (gloo) DDP group only
        # when told to train on the CPU; otherwise each process trains alone, into the same output dir.
        "use_cpu": not _has_accelerator(),
        "dataloader_num_workers": dataloader_workers(),
        "dataloader_persistent_workers": None,
        "bf16": None,
        "torch_compile": None,
    }


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def dataloader_workers() -> int:
    """One worker per CPU core this process may use, keeping one core for the training loop itself."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    return max(0, min(MAX_DATALOADER_WORKERS, cores // processes_here - 1))


def resolve_training_args(training_args: TrainingArguments, *, train_size: int) -> TrainingArguments:
    """`training_args` with the undecided speed options decided (`speed_choices`) for this machine and this run.

    `train_size` is the number of training samples; the run's length follows from it (`planned_train_samples`).
    """
    num_train_samples = planned_train_samples(training_args, train_size)
    on_gpu = training_args.device.type == "cuda"
    changes = speed_choices(
        training_args,
        num_train_samples=num_train_samples,
        on_gpu=on_gpu,
        bf16_supported=on_gpu and torch.cuda.is_bf16_supported(),
        tf32_supported=on_gpu and is_torch_tf32_available(),
    )
    resolved = dataclasses.replace(training_args, **changes)  # re-runs __post_init__: mixed precision, compile backend
    logger.info(
        "Speed: mixed precision %s, tf32 %s, torch.compile %s (%s training samples), %d data loader workers%s",
        resolved.mixed_precision,
        resolved.tf32,
        resolved.torch_compile,
        f"{num_train_samples:,}",
        resolved.dataloader_num_workers,
        " (persistent)" if resolved.dataloader_persistent_workers else "",
    )
    logger.info("Effective global batch size: %d (%d processes)", global_batch_size(resolved), resolved.world_size)
    return resolved


def speed_choices(
    training_args: TrainingArguments,
    *,
    num_train_samples: int,
    on_gpu: bool,
    bf16_supported: bool,
    tf32_supported: bool,
) -> dict[str, bool]:
    """Values for the speed options `training_args` leaves undecided (None):

    - `bf16` autocast on a GPU that supports it, unless fp16 or the Accelerate config already chose a precision;
    - `tf32` matmuls where supported (Ampere and newer), for the fp32 work outside autocast;
    - `torch_compile` on a GPU for runs of at least `COMPILE_MIN_TRAIN_SAMPLES` samples;
    - persistent data loader workers whenever there are workers. Restarting them forks the training process
      again for every worker, each epoch and each evaluation: 0.15-0.27 s an epoch with one worker, 0.24-0.39 s
      with two, from a 4.9 GB process (`benchmarks/worker_restart_cost.py`, 2 CPU cores). A resume still ends
      where an unbroken run ends: augmentation is seeded by batch (`hf_ft.vision.seeding`).
    """
    choices = {}
    if training_args.bf16 is None:
        accelerate_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        choices["bf16"] = bf16_supported and not training_args.fp16 and accelerate_precision == "no"
    if training_args.tf32 is None and tf32_supported:
        choices["tf32"] = True
    if training_args.torch_compile is None:
        choices["torch_compile"] = on_gpu and num_train_samples >= COMPILE_MIN_TRAIN_SAMPLES
    if training_args.dataloader_persistent_workers is None:
        choices["dataloader_persistent_workers"] = training_args.dataloader_num_workers > 0
    return choices


def global_batch_size(training_args: TrainingArguments) -> int:
    """Samples per optimizer step, all processes and gradient accumulation together."""
    return (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    )


def planned_train_samples(training_args: TrainingArguments, train_size: int) -> int:
    """How many samples the run trains on: `max_steps` batches when set, else `num_train_epochs` passes."""
    if training_args.max_steps > 0:
        return training_args.max_steps * global_batch_size(training_args)
    return int(training_args.num_train_epochs * train_size)
