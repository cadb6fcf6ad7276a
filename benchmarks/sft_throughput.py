"""LLM SFT: the plain peer (Trainer + PEFT LoRA, batches padded to their longest sample) against recipes/sft.py's
path (hf_ft's tokenization and mask, TRL's SFTTrainer: `hf_ft` with the recipe's defaults, padded batches;
`hf_ft_packed` with `packing: true`, best-fit packing into padding-free rows), on the same variable-length chat data,
side by side in one process.

    python benchmarks/sft_throughput.py                    # CPU: a tiny Llama, short sequences
    python benchmarks/sft_throughput.py --gpu               # a CUDA GPU: Llama-3.2-1B-shaped (random init), bf16

Columns: real (non-pad) tokens per second, the share of computed tokens that are padding, peak memory (CUDA:
`max_memory_allocated`; CPU: the process's peak resident set, which only grows, so only the first setup's is its
own), and the training loss after the timed steps, which shows the faster path trains the same model. Both setups
train LoRA r 16 on every linear layer of the decoder blocks, on the same samples in the same order of epochs;
lengths are drawn from a log-normal with median `--median_length`, capped at `--max_length`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_llm: the tokenizer built locally

from transformers import TrainerCallback  # noqa: E402

SETUPS = ("trainer_padded", "hf_ft", "hf_ft_packed")
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, max_position_embeddings=8192, vocab_size=128256)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048)


def chat_rows(count: int, median: int, max_length: int, seed: int) -> list[dict]:
    """Conversations whose rendered length follows a log-normal (sigma 0.8) around `median` tokens."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        length = min(max_length - 16, max(8, int(math.exp(rng.gauss(math.log(median), 0.8)))))
        words = [rng.choice(("the", "sky", "sea", "grass", "fire", "leaf", "water", "apple")) for _ in range(length)]
        cut = max(1, length // 3)
        rows.append({"messages": [{"role": "user", "content": " ".join(words[:cut])},
                                  {"role": "assistant", "content": " ".join(words[cut:])}]})
    return rows


def build(args, tmp: Path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_llm import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    # the 1B shape keeps Llama 3's 128,256-row vocabulary (the LM head's cost); the small tokenizer uses its first rows
    shape = LLAMA_1B if args.gpu else {**TINY, "vocab_size": len(tokenizer)}
    config = LlamaConfig(**shape, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    return tmp / "model"


def run_setup(setup: str, model_dir: Path, rows: list[dict], args) -> dict:
    import torch
    from datasets import Dataset, DatasetDict
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from trl import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from hf_ft.args import PeftArguments
    from hf_ft.peft import apply_peft
    from hf_ft.tasks import sft

    on_gpu = torch.cuda.is_available() and args.gpu
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32)
    model = apply_peft(model, PeftArguments(peft_method="lora", lora_r=16, lora_alpha=32), "CAUSAL_LM")
    common = dict(output_dir=str(model_dir.parent / setup), per_device_train_batch_size=args.batch_size,
                  max_steps=args.warmup + args.steps, learning_rate=1e-3, logging_steps=1, report_to=[],
                  save_strategy="no", bf16=on_gpu, use_cpu=not on_gpu, seed=0, dataloader_num_workers=0,
                  gradient_checkpointing=on_gpu)
    training = SFTConfig(**common, max_length=args.max_length, assistant_only_loss=True,
                         packing=setup == "hf_ft_packed")
    data = sft.SFTData(DatasetDict({"train": Dataset.from_list(rows)}), sft.CHAT, True)
    # cut to max_length for every setup, as TRL would for its own, so all three train on the same tokens
    tokenized = sft.truncate(data, sft.tokenize(data, tokenizer, training), args.max_length)[1]["train"]
    if setup.startswith("hf_ft"):
        trainer = sft.sft_trainer(model, tokenizer, DatasetDict({"train": tokenized}), training)
    else:  # the peer: the same tokens and labels, padded to each batch's longest, a plain Trainer
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=tokenized,
                          data_collator=DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id))
    meter = StepMeter(args.warmup, on_gpu)
    trainer.add_callback(meter)
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        # padded batches mark their real tokens in the attention mask; padding-free ones hold no padding at all
        meter.real.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel())
        meter.computed.append(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting_collator
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = slice(args.warmup, args.warmup + args.steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "setup": setup,
        "real_tokens_per_s": sum(meter.real[timed]) / (meter.end - meter.start),
        "padding_share": 1 - sum(meter.real[timed]) / sum(meter.computed[timed]),
        "peak_memory_gib": peak,
        "loss_last": float(sum(losses[-3:]) / len(losses[-3:])),
        "steps": args.steps,
    }


class StepMeter(TrainerCallback):
    """The tokens of each batch (filled by the collator) and the wall time of the steps after the warm-up."""

    def __init__(self, warmup: int, on_gpu: bool):
        self.warmup, self.on_gpu = warmup, on_gpu
        self.real, self.computed = [], []
        self.start = self.end = None

    def _now(self) -> float:
        if self.on_gpu:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = self._now()

    def on_train_end(self, args, state, control, **kwargs):
        self.end = self._now()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="Llama-3.2-1B shape, bf16, on CUDA")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--median_length", type=int, default=None)
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    defaults = dict(samples=512, median_length=330, max_length=2048, batch_size=8, steps=30) if args.gpu else \
        dict(samples=256, median_length=60, max_length=384, batch_size=8, steps=20)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    import tempfile

    import torch

    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("error: --gpu needs a CUDA GPU; without one, run the CPU mode (no --gpu).")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = chat_rows(args.samples, args.median_length, args.max_length, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build(args, Path(tmp))
        measured = [run_setup(setup, model_dir, rows, args) for setup in SETUPS]
    print("| setup | real tokens/s | padding share | peak memory (GiB) | loss (last 3 steps) |")
    print("|---|---:|---:|---:|---:|")
    for row in measured:
        print(f"| {row['setup']} | {row['real_tokens_per_s']:,.0f} | {row['padding_share']:.1%} | "
              f"{row['peak_memory_gib']:.2f} | {row['loss_last']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": measured}))


if __name__ == "__main__":
    main()
