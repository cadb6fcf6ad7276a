"""Training throughput of the image recipe against plain Trainer, from JPEG files on disk, in one process.

    python benchmarks/image_cls_throughput.py                      # a CUDA GPU: ViT-B/16 and ResNet-50, 20k JPEGs
    python benchmarks/image_cls_throughput.py --models vit_b16 --setups trainer_bf16 hf_ft
    python benchmarks/image_cls_throughput.py --tiny               # CPU smoke run: tiny models, 64 small JPEGs

Setups, each on the same data, model and batch size:
- `trainer_fp32`, `trainer_bf16`: the peer, transformers' `run_image_classification.py` way: plain `Trainer`
  with default arguments (and `bf16=True`), torchvision RandomResizedCrop/flip/ToTensor/Normalize in
  `with_transform`;
- `hf_ft`: the recipe's own path with its defaults (`hf_ft.speed`, uint8 workers, on-device normalisation,
  channels-last for convnets), resolved as for a run of `--epochs` epochs over this data (that length decides
  `torch.compile`); `hf_ft_eager` the same with `torch_compile: false`; `hf_ft_cache` with `cache_images: true`;
- `ceiling`: a bare loop on synthetic batches already on the device (bf16 autocast, fused AdamW, channels-last,
  torch.compile on a GPU): the model's speed with no input pipeline at all.

Models are built from their configs (random init, no download) and saved once, so every setup loads the same
weights the way users load checkpoints: ViT-B/16 (transformers) and ResNet-50 (timm, through TimmWrapper). The
data is an imagefolder of `--num_images` JPEGs, 300-500 px on each side, cut from scikit-learn's sample photos,
written once to `--data_dir` and read through `hf_ft.tasks.image_classification.load_image_classification_data`.

Columns: images/s over the steps after `--warmup_steps` (compilation and worker start-up fall in the warm-up,
whose length is shown), peak GPU memory, MFU (model FLOPs per training image, counted with
`torch.utils.flop_counter`, times images/s, over the dense matmul peak measured here in bf16 on a GPU, fp32 on a
CPU), and the CPU cores busy in the data loader workers and in the training process itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from hf_ft import speed
from hf_ft.args import ModelArguments, parse_args
from hf_ft.tasks.image_classification import (
    ImageDataArguments,
    classification_trainer,
    load_image_classification_data,
    load_image_classifier,
)
from hf_ft.vision.cache import cache_decoded_images, cached_size_for
from hf_ft.vision.models import use_channels_last
from hf_ft.vision.transforms import attach_transforms, collate, data_config

SETUPS = ("trainer_fp32", "trainer_bf16", "hf_ft", "hf_ft_eager", "hf_ft_cache", "ceiling")
MODELS = ("vit_b16", "resnet50")
NUM_CLASSES = 10


# ---- Data: JPEGs of mixed sizes cut from real photos ----


def write_jpegs(data_dir: Path, num_images: int, sizes: tuple[int, int]) -> Path:
    """An imagefolder `data_dir/<set>/train/<class>/<n>.jpg`, written once (a `done` file marks it complete)."""
    dataset_dir = data_dir / f"{num_images}-jpegs-{sizes[0]}-{sizes[1]}px"
    train_dir, marker = dataset_dir / "train", dataset_dir / "done"
    if marker.exists():
        return train_dir
    jobs = [(train_dir / f"class_{i % NUM_CLASSES}" / f"{i:06d}.jpg", i, sizes) for i in range(num_images)]
    for class_dir in {path.parent for path, _, _ in jobs}:
        class_dir.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=256))
    marker.touch()
    return train_dir


@functools.cache
def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return load_sample_images().images  # two 427 x 640 photos


def _write_jpeg(job: tuple[Path, int, tuple[int, int]]) -> None:
    path, seed, (low, high) = job
    rng = np.random.default_rng(seed)
    photo = _photos()[seed % 2]
    height, width = (int(v) for v in rng.integers(low, high + 1, size=2))
    crop_h, crop_w = int(rng.integers(200, 428)), int(rng.integers(200, 641))
    top, left = int(rng.integers(0, 428 - crop_h)), int(rng.integers(0, 641 - crop_w))
    image = Image.fromarray(photo[top : top + crop_h, left : left + crop_w]).resize((width, height), Image.BICUBIC)
    image.save(path, quality=90)


# ---- Models: saved once, loaded by every setup ----


def save_checkpoint(name: str, tiny_resolution: int | None, root: Path) -> Path:
    """ViT-B/16 or ResNet-50 at 224 px; or, given `tiny_resolution`, a 2-layer ViT / timm's test_resnet at it."""
    path = root / name
    if name == "vit_b16":
        config = ViTConfig(num_labels=NUM_CLASSES)  # ViT-B/16 at 224 px
        if tiny_resolution:
            config = ViTConfig(
                image_size=tiny_resolution,
                patch_size=16 if tiny_resolution >= 128 else 8,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=128,
                num_labels=NUM_CLASSES,
            )
        ViTForImageClassification(config).save_pretrained(path)
        ViTImageProcessor(size={"height": config.image_size, "width": config.image_size}).save_pretrained(path)
    else:
        import timm

        model = timm.create_model("test_resnet" if tiny_resolution else "resnet50", num_classes=NUM_CLASSES)
        if tiny_resolution:
            model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, tiny_resolution, tiny_resolution)}
        timm.models.save_for_hf(model, path)
    return path


def load_checkpoint(checkpoint: Path, data):
    """The saved model with a head for the data's labels, and its processor: hf_ft's loader, as the recipe calls it."""
    return load_image_classifier(ModelArguments(model_name_or_path=str(checkpoint)), data.label_names)


def flops_per_image(model: torch.nn.Module, input_size: tuple[int, int, int]) -> float:
    """Forward + backward FLOPs of one training image (matmuls and convolutions, as FLOP counters count)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu").train()
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=torch.randn(2, *input_size)).logits.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def matmul_peak_flops(device: torch.device) -> float:
    """Dense matmul FLOP/s measured here: bf16 on a GPU, fp32 on a CPU (the MFU denominator)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    repeats = 50 if device.type == "cuda" else 5
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- Measuring ----


class Meter(TrainerCallback):
    """Images/s after warm-up, and the CPU time of this process and of its children (the data loader workers) then.

    CPU time is read at the two ends of the timed window only, so measuring adds no work to the timed steps.
    """

    def __init__(self, batch_size: int, warmup_steps: int, device: torch.device):
        self.batch_size, self.warmup_steps, self.device = batch_size, warmup_steps, device
        self.process = psutil.Process()
        self.started = time.perf_counter()
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.step()

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.warmup_steps:
            _sync(self.device)
            self.warmup_s = time.perf_counter() - self.started
            self.window_start = time.perf_counter()
            self.cpu_start = _cpu_seconds(self.process)

    def result(self) -> dict[str, float]:
        _sync(self.device)
        elapsed = time.perf_counter() - self.window_start
        (main_start, children_start), (main_end, children_end) = self.cpu_start, _cpu_seconds(self.process)
        return {
            "images_per_s": (self.steps - self.warmup_steps) * self.batch_size / elapsed,
            "warmup_s": self.warmup_s,
            "worker_cores": (children_end - children_start) / elapsed,
            "main_cores": (main_end - main_start) / elapsed,
        }


def _cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of `process`, and of all its children, living or ended.

    Non-persistent data loader workers end with each epoch: an ended child's whole time is in the parent's
    `children_*` times once it is reaped, and a living one reports its own, so the difference of two readings is the
    children's time between them.
    """
    living = 0.0
    for child in process.children(recursive=True):
        try:
            living += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    times = process.cpu_times()
    return times.user + times.system, living + times.children_user + times.children_system


# ---- Setups ----


def peer_transform(processor):
    """transformers' run_image_classification.py training transform."""
    from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop, ToTensor

    config = data_config(processor)
    transform = Compose(
        [
            RandomResizedCrop(config["input_size"][1:]),
            RandomHorizontalFlip(),
            ToTensor(),
            Normalize(config["mean"], config["std"]),
        ]
    )

    def apply(batch):
        return {"pixel_values": [transform(image.convert("RGB")) for image in batch["image"]], "labels": batch["label"]}

    return apply


def run_trainer_setup(setup: str, checkpoint: Path, data, data_args, args) -> dict[str, float]:
    output_dir = tempfile.mkdtemp(prefix=f"bench-{setup}-")
    common = [
        "--output_dir",
        output_dir,
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--max_steps",
        str(args.warmup_steps + args.steps),
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_strategy",
        "no",
        "--remove_unused_columns",
        "false",
        "--seed",
        "0",
        "--disable_tqdm",
        "true",
    ]
    if not torch.cuda.is_available():
        common += ["--use_cpu", "true"]  # bf16 on a CPU needs it said
    memory_before = _start_memory_count()
    model, processor = load_checkpoint(checkpoint, data)
    if setup.startswith("trainer"):
        (training_args,) = parse_args((TrainingArguments,), common + ["--bf16", str(setup == "trainer_bf16")])
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=data.splits["train"].with_transform(peer_transform(processor)),
            data_collator=collate,
        )
    else:
        extra = ["--torch_compile", "false"] if setup == "hf_ft_eager" else []
        (training_args,) = parse_args((TrainingArguments,), common + extra, defaults=speed.parser_defaults())
        use_channels_last(model)
        # Resolved as for an `--epochs` run, as a user's run would be (that length decides torch.compile), then
        # timed for the benchmark's steps only.
        as_run = dataclasses.replace(training_args, max_steps=-1, num_train_epochs=args.epochs)
        resolved = speed.resolve_training_args(as_run, train_size=len(data.splits["train"]))
        training_args = dataclasses.replace(resolved, max_steps=training_args.max_steps)
        splits = data.splits
        if setup == "hf_ft_cache":
            splits = {
                **splits,
                "train": cache_decoded_images(
                    splits["train"],
                    max_size=cached_size_for(processor),
                    num_proc=training_args.dataloader_num_workers or None,
                ),
            }
        splits = attach_transforms(splits, processor, data_args)
        trainer = classification_trainer(model, processor, splits, training_args, num_labels=NUM_CLASSES)
    meter = Meter(args.batch_size, args.warmup_steps, training_args.device)
    trainer.add_callback(meter)
    trainer.train()
    workers = training_args.dataloader_num_workers
    return {**meter.result(), "peak_gib": _peak_memory_gib(memory_before), "loader_workers": workers}


def run_ceiling(checkpoint: Path, data, args, device: torch.device) -> dict[str, float]:
    """A bare training loop on random batches already on the device: no data loading, no Trainer."""
    memory_before = _start_memory_count()
    model, processor = load_checkpoint(checkpoint, data)
    use_channels_last(model)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_fn = torch.compile(model) if device.type == "cuda" else model
    pixel_values = torch.randn(args.batch_size, *data_config(processor)["input_size"], device=device)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    meter = Meter(args.batch_size, args.warmup_steps, device)
    for _ in range(args.warmup_steps + args.steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = step_fn(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        meter.step()
    return {**meter.result(), "peak_gib": _peak_memory_gib(memory_before), "loader_workers": 0}


def _start_memory_count() -> int | None:
    """GPU bytes allocated before a setup loads its model (None on a CPU), after clearing the last setup's peak."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _peak_memory_gib(memory_before: int | None) -> float:
    """The setup's own peak GPU memory: anything an earlier setup left allocated is not counted."""
    return math.nan if memory_before is None else (torch.cuda.max_memory_allocated() - memory_before) / 2**30


# ---- Table ----


def print_table(rows: list[dict], peak_flops: float) -> None:
    print(
        "| model | setup | img/s | vs trainer_bf16 | peak GPU mem (GiB) | MFU | loader cores busy | "
        "main process cores busy | warm-up (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        peer = next((r for r in rows if r["model"] == row["model"] and r["setup"] == "trainer_bf16"), None)
        ratio = f"{row['images_per_s'] / peer['images_per_s']:.2f}x" if peer else "-"
        mfu = row["images_per_s"] * row["flops_per_image"] / peak_flops
        memory = "-" if math.isnan(row["peak_gib"]) else f"{row['peak_gib']:.1f}"
        print(
            f"| {row['model']} | {row['setup']} | {row['images_per_s']:,.1f} | {ratio} | {memory} | "
            f"{100 * mfu:.1f}% | {row['worker_cores']:.1f} | {row['main_cores']:.1f} | {row['warmup_s']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "hf_ft_bench_jpegs"))
    parser.add_argument("--num_images", type=int, default=20_000)
    parser.add_argument("--jpeg_size", nargs=2, type=int, default=[300, 500], help="side length range, px")
    parser.add_argument("--batch_size", type=int, default=128, help="per device, the same for every setup")
    parser.add_argument("--warmup_steps", type=int, default=30, help="untimed steps (compilation, worker start)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps after the warm-up")
    parser.add_argument("--epochs", type=float, default=30, help="the run length hf_ft's defaults are chosen for")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="CPU smoke run: tiny models; 64 JPEGs of 40-60 px, 3 timed steps unless given",
    )
    parser.add_argument(
        "--tiny_resolution",
        type=int,
        default=32,
        help="the tiny models' training resolution (224: a CPU measure of "
        "the input pipeline at the real models' resolution)",
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.tiny:  # smaller defaults; any given on the command line still win
        parser.set_defaults(num_images=64, jpeg_size=[40, 60], batch_size=8, warmup_steps=2, steps=3)
        args = parser.parse_args()
    sizes = tuple(args.jpeg_size)

    start = time.perf_counter()
    train_dir = write_jpegs(Path(args.data_dir), args.num_images, sizes)
    data_args = ImageDataArguments(train_dir=str(train_dir))
    data = load_image_classification_data(data_args, seed=0)  # the recipe's path: split, labels, image check
    print(
        f"data: {len(data.splits['train']):,} training JPEGs of {sizes[0]}-{sizes[1]} px in {train_dir} "
        f"(written and checked in {time.perf_counter() - start:.0f} s)"
    )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak_flops = matmul_peak_flops(device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as root:
        checkpoints, flops = {}, {}
        for name in args.models:
            checkpoints[name] = save_checkpoint(name, args.tiny_resolution if args.tiny else None, Path(root))
            model, processor = load_checkpoint(checkpoints[name], data)
            flops[name] = flops_per_image(model, data_config(processor)["input_size"])
        # The peers run first: hf_ft's TF32 is switched on process-wide, and only once per process (transformers'
        # `enable_tf32` is cached), so it can be neither undone for a later peer nor redone for a later hf_ft run.
        for setup in sorted(args.setups, key=SETUPS.index):
            for name in args.models:
                torch.manual_seed(0)
                if setup == "ceiling":
                    result = run_ceiling(checkpoints[name], data, args, device)
                else:
                    result = run_trainer_setup(setup, checkpoints[name], data, data_args, args)
                rows.append({"model": name, "setup": setup, "flops_per_image": flops[name], **result})
                print(json.dumps(rows[-1]), flush=True)
                # the finished setup's workers, GPU memory and compiled graphs go before the next one starts, so
                # each setup's warm-up includes its own compilation
                gc.collect()
                torch._dynamo.reset()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    rows.sort(key=lambda row: args.models.index(row["model"]))

    hardware = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\n{hardware}; {len(os.sched_getaffinity(0))} CPU cores; torch {torch.__version__}; batch "
        f"{args.batch_size}; {args.steps} timed steps after {args.warmup_steps}; measured matmul peak "
        f"{peak_flops / 1e12:.3g} TFLOP/s ({'bf16' if device.type == 'cuda' else 'fp32'})"
    )
    for name in args.models:
        print(
            f"{name}: {flops[name] / 1e9:.3g} GFLOP per training image, compute ceiling "
            f"{peak_flops / flops[name]:,.0f} img/s at 100% MFU"
        )
    print()
    print_table(rows, peak_flops)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_flops": peak_flops, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
