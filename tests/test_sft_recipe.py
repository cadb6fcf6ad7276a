"""recipes/sft.py end to end on a tiny local Llama and chat data with checkable answers: through `accelerate
launch`, with LoRA and a merged copy, packed full fine-tuning, a kill -9 and resume, and bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from . import recipe_runs
from .conftest import REPO
from .recipe_runs import kill_after, results, same_weights
from .tiny_llm import build_tiny_llama, colour_conversations, write_jsonl

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "sft.py"


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("ckpt") / "tiny-llama")


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat")
    sizes = {"train": 96, "validation": 16, "test": 24}
    return {split: write_jsonl(root / f"{split}.jsonl", colour_conversations(size, seed))
            for seed, (split, size) in enumerate(sizes.items())}


def write_config(tmp_path: Path, data: dict[str, Path], checkpoint: Path, output_dir: Path, **overrides) -> Path:
    config = {
        "model_name_or_path": str(checkpoint),
        "train_file": str(data["train"]),
        "validation_file": str(data["validation"]),
        "test_file": str(data["test"]),
        "exact_match": True,
        "max_new_tokens": 4,
        "num_sample_prompts": 3,
        "output_dir": str(output_dir),
        "max_length": 64,
        "max_steps": 60,
        "learning_rate": 0.02,
        "per_device_train_batch_size": 8,
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 30,
        "logging_steps": 10,
        "dataloader_num_workers": 0,
        "seed": 0,
        "report_to": "none",
        **overrides,
    }
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return recipe_runs.launch(RECIPE, config, *extra, check=check)


def greedy(model_dir: Path, prompts: list[str], *, adapter: bool = False) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if adapter:  # as the model card says to load it
        from hf_ft.peft import load_adapter_model

        model = load_adapter_model(None, model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    return [out[0]["generated_text"][-1]["content"] for out in (
        generator([{"role": "user", "content": p}], max_new_tokens=4, do_sample=False) for p in prompts)]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, chat_data, tiny_llama_dir):
    tmp_path = tmp_path_factory.mktemp("lora")
    output_dir = tmp_path / "out"
    config = write_config(tmp_path, chat_data, tiny_llama_dir, output_dir, peft_method="lora", lora_r=8,
                          lora_alpha=16, merge_adapter=True, learning_rate=0.03)
    launch(config)
    return output_dir


def test_lora_run_learns_and_reports_before_and_after(lora_run):
    metrics = results(lora_run)
    for split in ("validation", "test"):
        assert metrics[split]["loss"] < metrics[split]["baseline_loss"] / 2
        assert metrics[split]["exact_match"] >= metrics[split]["baseline_exact_match"]
        assert metrics[split]["perplexity"] == pytest.approx(2.718281828 ** metrics[split]["loss"])
    report = (lora_run / "report.md").read_text()
    assert "<|im_start|>assistant\n[[" in report  # the rendered sample, trained tokens marked
    assert "| Prompt (end) | Reference | Base model | Fine-tuned |" in report
    assert "Greedy decoding (`do_sample=False`)" in report
    intervals = json.loads((lora_run / "confidence_intervals.json").read_text())["intervals"]
    for key in ("loss", "perplexity", "exact_match"):  # over the 24 test conversations, each scored once
        low, high = intervals["test"][key]
        assert low <= metrics["test"][key] <= high
    assert intervals["test"]["perplexity"][0] < metrics["test"]["perplexity"] < intervals["test"]["perplexity"][1]
    records = [json.loads(line) for line in (lora_run / "test_predictions.jsonl").read_text().splitlines()]
    assert len(records) == 24 and sum(r["correct"] for r in records) / 24 == pytest.approx(metrics["test"]["exact_match"])
    loss = sum(r["loss_sum"] for r in records) / sum(r["trained_tokens"] for r in records)
    assert loss == pytest.approx(metrics["test"]["loss"])
    assert "## How sure these numbers are" in report
    saved = json.loads((lora_run / "base_model_results.json").read_text())
    assert saved["scores"]["metrics"]["test"]["loss"] == metrics["test"]["baseline_loss"]
    card = (lora_run / "README.md").read_text()
    assert "text-generation" in card and "labels" not in card.split("## Results")[0].lower()


def test_merged_model_loads_in_pipeline_and_equals_the_adapter(lora_run):
    merged = lora_run / "merged"
    assert (merged / "chat_template.jinja").is_file()
    generation_config = json.loads((merged / "generation_config.json").read_text())
    tokenizer_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert generation_config["eos_token_id"] == [2] and tokenizer_config["eos_token"] == "<|im_end|>"
    prompts = ["what colour is the sky", "what colour is the grass", "what colour is the fire"]
    assert greedy(merged, prompts) == greedy(lora_run, prompts, adapter=True)


def test_predict_answers_as_the_report_scored_them(lora_run, chat_data, tmp_path):
    """`hf-ft predict` on the test conversations, from the adapter-only dir and from the merged copy: the report's
    exact match (the same prompts, greedy answers and comparison), and the answers pipeline() gives."""
    test = results(lora_run)["test"]
    adapter = recipe_runs.predict(lora_run, chat_data["test"], tmp_path / "adapter.jsonl", batch_size=5)
    merged = recipe_runs.predict(lora_run / "merged", chat_data["test"], tmp_path / "merged.csv")
    assert adapter.metrics["exact_match"] == pytest.approx(test["exact_match"], abs=1e-12)
    assert adapter.metrics["num_samples"] == 24
    assert [row["generation"] for row in adapter.rows] == [row["generation"] for row in merged.rows]
    questions = [row["input"] for row in adapter.rows[:3]]
    assert [row["generation"] for row in adapter.rows[:3]] == greedy(lora_run / "merged", questions)
    assert all(row["correct"] == (row["generation"].strip() == row["reference"].strip()) for row in adapter.rows)


def test_merged_logits_equal_the_adapter_models(lora_run):
    from transformers import AutoModelForCausalLM

    from hf_ft.peft import load_adapter_model

    ids = torch.tensor([[1, 5, 9, 17, 33, 2]])
    with torch.no_grad():
        adapter = load_adapter_model(None, lora_run)(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged").eval()(ids).logits
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)


def test_packed_full_fine_tune_learns(tmp_path, chat_data, tiny_llama_dir):
    output_dir = tmp_path / "packed"
    config = write_config(tmp_path, chat_data, tiny_llama_dir, output_dir, packing=True, save_strategy="no",
                          max_steps=40)
    result = launch(config)
    metrics = results(output_dir)
    assert metrics["test"]["loss"] < metrics["test"]["baseline_loss"] / 2
    assert metrics["test"]["exact_match"] >= 0.9 > metrics["test"]["baseline_exact_match"]
    assert "Packing train dataset" in result.stderr + result.stdout
    assert "packing with attn_implementation=sdpa" in result.stdout  # the cost without flash attention, stated
    # the tuned model answers as the report says, through pipeline() and the saved chat template
    assert greedy(output_dir, ["what colour is the sky", "what colour is the grass"]) == ["blue", "green"]


def test_killed_run_resumes_to_the_same_bits(tmp_path, chat_data, tiny_llama_dir):
    unbroken_dir, output_dir = tmp_path / "unbroken", tmp_path / "killed"
    launch(write_config(tmp_path, chat_data, tiny_llama_dir, unbroken_dir))
    config = write_config(tmp_path, chat_data, tiny_llama_dir, output_dir)
    kill_after(RECIPE, config, output_dir / "checkpoint-30")
    result = launch(config)
    assert "Resuming the run" in result.stdout
    assert results(output_dir) == results(unbroken_dir)
    assert same_weights(output_dir / "model.safetensors", unbroken_dir / "model.safetensors")


def test_continued_run_measures_forgetting_on_the_earlier_runs_test_set(tmp_path, chat_data, tiny_llama_dir):
    """A full fine-tune continued on the same data: that run's test conversations are scored again with the new
    model (here this run's own test split, so the same scores) and paired per sample with that run's. Each test
    conversation once: repeated ones cannot be paired by content."""
    unique = [{"messages": [{"role": "user", "content": f"what colour is the {thing}"},
                            {"role": "assistant", "content": colour}]}
              for thing, colour in (("sky", "blue"), ("grass", "green"), ("fire", "red"), ("leaf", "green"))]
    data = {**chat_data, "test": write_jsonl(tmp_path / "test.jsonl", unique)}
    first, second = tmp_path / "first", tmp_path / "second"
    launch(write_config(tmp_path, data, tiny_llama_dir, first, save_strategy="no", max_steps=30))
    launch(write_config(tmp_path, data, first, second, save_strategy="no", max_steps=6, learning_rate=0.005))
    before, after = results(first)["test"], results(second / "forgetting")["test"]
    assert after["num_samples"] == 4 and after["loss"] == pytest.approx(results(second)["test"]["loss"], rel=1e-6)
    assert results(second)["test"]["baseline_loss"] == pytest.approx(before["loss"], rel=1e-5)  # it starts there
    section = (second / "report.md").read_text().split("## Forgetting: the earlier run's test set")[1]
    assert f"| Loss | {before['loss']:.4f} | {after['loss']:.4f} |" in section
    assert f"| Exact match | {before['exact_match']:.4f} | {after['exact_match']:.4f} |" in section


def test_bad_data_is_one_line_before_any_model_is_trained(tmp_path, tiny_llama_dir):
    bad = write_jsonl(tmp_path / "train.jsonl", [{"question": "what colour is the sky", "reply": "blue"}] * 8)
    output_dir = tmp_path / "out"
    config = write_config(tmp_path, {"train": bad, "validation": bad, "test": bad}, tiny_llama_dir, output_dir)
    result = launch(config, check=False)
    assert result.returncode != 0  # the recipe exits 2; accelerate launch reports it as 1
    assert "error: No SFT column in the data: it has ['question', 'reply']" in result.stderr
    assert "hf_ft/tasks/sft.py" not in result.stderr  # one clear line, not a stack trace into our code
    assert not (output_dir / "model.safetensors").exists()


def test_two_processes_score_train_and_report(tmp_path, chat_data, tiny_llama_dir):
    """DDP over gloo: the base model is scored on both processes before training (a collective predict), the tuned
    model's generations on the main one only. No `use_cpu` in the config: hf_ft's machine default makes the two
    processes one run (without it, each would train alone into the same output dir)."""
    output_dir = tmp_path / "ddp"
    config = write_config(tmp_path, chat_data, tiny_llama_dir, output_dir, save_strategy="no", max_steps=30)
    result = recipe_runs.launch(RECIPE, config, accelerate_config=recipe_runs.TWO_PROCESS_CONFIG)
    assert "(2 processes)" in result.stdout
    metrics = results(output_dir)
    assert metrics["test"]["loss"] < metrics["test"]["baseline_loss"] / 2
    assert metrics["test"]["exact_match"] > metrics["test"]["baseline_exact_match"]
