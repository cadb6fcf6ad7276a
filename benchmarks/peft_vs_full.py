"""ViT-B/16: LoRA vs full fine-tuning — trainable parameters, peak memory, training images/s.

    python benchmarks/peft_vs_full.py                      # CPU: batch 8, 3 timed steps
    python benchmarks/peft_vs_full.py --batch_size 64 --steps 20 --bf16   # a CUDA GPU

Each mode runs in its own process, so peak memory is that mode's alone: `torch.cuda.max_memory_allocated` on
a GPU, the process's peak resident set size on the CPU (it includes the ~1 GB of imported libraries). The
model is ViT-B/16 built from its config (random init, no download): speed and memory do not depend on the
weights. LoRA uses hf_ft's own path (`hf_ft.peft.apply_peft`, `target_modules: auto`, r 16).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MODES = ("full", "lora")


def run_mode(mode: str, batch_size: int, steps: int, warmup: int, bf16: bool) -> dict:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from hf_ft.args import PeftArguments
    from hf_ft.models import count_parameters
    from hf_ft.peft import apply_peft

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ViTForImageClassification(ViTConfig(num_labels=10))
    if mode == "lora":
        model = apply_peft(model, PeftArguments(peft_method="lora", lora_r=16, lora_alpha=16))
    model.to(device).train()
    trainable, total = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    pixel_values = torch.randn(batch_size, 3, 224, 224, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {
        "mode": mode,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "trainable": trainable,
        "total": total,
        "peak_gib": peak,
        "images_per_s": batch_size * steps / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after --warmup untimed ones")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.batch_size, args.steps, args.warmup, args.bf16)))
        return
    rows = []
    for mode in MODES:
        command = [sys.executable, __file__, "--mode", mode, "--batch_size", str(args.batch_size),
                   "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--bf16"] if args.bf16 else [])
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"ViT-B/16, 224 px, batch {args.batch_size}, {'bf16 autocast' if args.bf16 else 'fp32'}, {rows[0]['device']}")
    print(f"| {'mode':<5} | {'trainable params':>16} | {'share':>7} | {'peak memory (GiB)':>17} | {'img/s':>7} |")
    print(f"|{'-' * 7}|{'-' * 18}|{'-' * 9}|{'-' * 19}|{'-' * 9}|")
    for row in rows:
        share = 100 * row["trainable"] / row["total"]
        print(f"| {row['mode']:<5} | {row['trainable']:>16,} | {share:>6.2f}% | {row['peak_gib']:>17.2f} | "
              f"{row['images_per_s']:>7.1f} |")


if __name__ == "__main__":
    main()
