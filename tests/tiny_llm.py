"""A tiny Llama-shaped causal LM with a byte-level BPE tokenizer trained here, a ChatML template like SmolLM2's
(no `{% generation %}` markers), and chat data with checkable answers: all built locally."""

from __future__ import annotations

import json
import random
from pathlib import Path

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
COLOURS = ["red", "green", "blue"]
WORDS = "the a sky grass sea fire leaf water apple lime ocean what colour is of answer one word".split()


def corpus() -> list[str]:
    return [" ".join(WORDS + COLOURS), "system user assistant tool", "\n"] * 20


def build_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|im_start|>", unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_llama(path: Path, *, chat_template: str | None = CHATML, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        initializer_range=0.2,  # at 32 wide, 0.02 leaves a random model so flat that a LoRA barely moves it
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def colour_conversations(size: int, seed: int) -> list[dict]:
    """'What colour is the sky?' -> 'blue': an answer a tiny model learns in a few steps and exact match checks."""
    rng = random.Random(seed)
    things = {"sky": "blue", "sea": "blue", "grass": "green", "leaf": "green", "fire": "red", "apple": "red"}
    rows = []
    for _ in range(size):
        thing = rng.choice(sorted(things))
        rows.append({"messages": [
            {"role": "user", "content": f"what colour is the {thing}"},
            {"role": "assistant", "content": things[thing]},
        ]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
