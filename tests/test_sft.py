"""SFT pieces on a tiny local tokenizer and Llama: the loss mask token by token, the pre-flight checks, packing
isolation, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import LlamaForCausalLM
from trl import SFTConfig
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

from hf_ft import bootstrap
from hf_ft.args import ConfigError, ModelArguments, parse_args
from hf_ft.errors import InputError
from hf_ft.tasks import sft

from .tiny_llm import build_tiny_llama, build_tokenizer, colour_conversations, write_jsonl

NO_EOS_TEMPLATE = (  # closes turns with a newline only: nothing tells the model to stop
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
REWRITING_TEMPLATE = (  # marks the last turn: a conversation's start renders differently once it goes on
    "{% for message in messages %}{% if loop.last %}{{ 'last ' }}{% endif %}{{'<|im_start|>' + message['role'] + "
    "'\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def args(**overrides) -> SFTConfig:
    return SFTConfig(**{"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": [],
                        "assistant_only_loss": True, **overrides})


def sft_data(rows: list[dict], data_format: str, conversational: bool = True) -> sft.SFTData:
    return sft.SFTData(DatasetDict({"train": Dataset.from_list(rows)}), data_format, conversational)


def trained_text(tokenizer, example: dict) -> str:
    return sft.render_trained(tokenizer, example["input_ids"], example["labels"])


CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what colour is the sky"},
    {"role": "assistant", "content": "blue"},
    {"role": "user", "content": "the grass"},
    {"role": "assistant", "content": "green"},
]


def test_chat_mask_trains_every_assistant_turn_and_its_end_of_turn_token_only(tokenizer):
    tokenized = sft.tokenize(sft_data([{"messages": CONVERSATION}], sft.CHAT), tokenizer, args())["train"][0]
    assert trained_text(tokenizer, tokenized) == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nwhat colour is the sky<|im_end|>\n"
        "<|im_start|>assistant\n[[blue<|im_end|>\n]]<|im_start|>user\nthe grass<|im_end|>\n"
        "<|im_start|>assistant\n[[green<|im_end|>\n]]"
    )
    # token by token: trained labels are exactly the input ids of those two spans
    trained = [i for i, label in enumerate(tokenized["labels"]) if label != -100]
    assert [tokenized["input_ids"][i] for i in trained] == [tokenized["labels"][i] for i in trained]
    assert tokenizer.decode([tokenized["input_ids"][i] for i in trained]) == "blue<|im_end|>\ngreen<|im_end|>\n"


def test_full_sequence_loss_trains_every_token(tokenizer):
    tokenized = sft.tokenize(sft_data([{"messages": CONVERSATION}], sft.CHAT), tokenizer,
                             args(assistant_only_loss=False))["train"][0]
    assert tokenized["labels"] == tokenized["input_ids"]


def test_prompt_completion_mask_trains_the_completion_and_eos(tokenizer):
    rows = [{"prompt": "what colour is the sky ", "completion": "blue"}]
    tokenized = sft.tokenize(sft_data(rows, sft.PROMPT_COMPLETION, conversational=False), tokenizer, args())
    assert trained_text(tokenizer, tokenized["train"][0]) == "what colour is the sky [[blue<|im_end|>]]"
    whole = sft.tokenize(sft_data(rows, sft.PROMPT_COMPLETION, conversational=False), tokenizer,
                         args(completion_only_loss=False))["train"][0]
    assert whole["labels"] == whole["input_ids"]


def test_conversational_prompt_completion_trains_the_completion_turn_only(tokenizer):
    rows = [{"prompt": CONVERSATION[:4], "completion": [CONVERSATION[4]]}]  # the prompt has an assistant turn too
    tokenized = sft.tokenize(sft_data(rows, sft.PROMPT_COMPLETION), tokenizer, args())["train"][0]
    assert trained_text(tokenizer, tokenized).count("[[") == 1
    assert trained_text(tokenizer, tokenized).endswith("<|im_start|>assistant\n[[green<|im_end|>\n]]")


def test_a_template_that_rewrites_earlier_turns_without_markers_says_what_to_do(tokenizer):
    rewriting = build_tokenizer(REWRITING_TEMPLATE)
    with pytest.raises(InputError, match=r"generation %\}"):
        sft.tokenize(sft_data([{"messages": CONVERSATION}], sft.CHAT), rewriting, args())


def check(tokenizer, rows, template=None, max_length=None, truncation=False, **training):
    if template is not None:
        tokenizer = build_tokenizer(template)
    data = sft_data(rows, sft.CHAT)
    train = sft.tokenize(data, tokenizer, args(**training))["train"]
    sft.check_training_samples(train, tokenizer, [tokenizer.eos_token_id], max_length=max_length,
                               truncation=truncation)
    return train


def test_a_conversation_without_an_assistant_turn_stops_the_run(tokenizer):
    rows = [{"messages": CONVERSATION}, {"messages": CONVERSATION[:2]}]
    with pytest.raises(InputError, match=r"train row 1 \(1 of 2 rows\) has no token to train on"):
        check(tokenizer, rows)


def test_a_template_without_eos_in_the_trained_tokens_stops_the_run(tokenizer):
    with pytest.raises(InputError, match=r"never include the end-of-turn token '<\|im_end\|>'"):
        check(tokenizer, [{"messages": CONVERSATION}], template=NO_EOS_TEMPLATE)


def test_a_sample_over_max_length_stops_the_run_unless_truncation_is_on(tokenizer):
    long_turn = [{"role": "user", "content": "the sky " * 40}, {"role": "assistant", "content": "blue"}]
    rows = [{"messages": CONVERSATION}, {"messages": long_turn}]
    with pytest.raises(InputError, match=r"train row 1 is \d+ tokens, over --max_length 64 \(1 rows are\)"):
        check(tokenizer, rows, max_length=64)
    train = check(tokenizer, rows, max_length=64, truncation=True)
    data, cut = sft.truncate(sft_data(rows, sft.CHAT), DatasetDict({"train": train}), 64)
    assert len(cut["train"]) == 1  # the long row kept only its prompt: nothing left to train, dropped
    assert cut["train"][0] == train[0]
    assert data.splits["train"][0] == rows[0]  # the samples dropped alike: row i is the same sample in both


def test_a_collator_that_masks_pad_eos_stops_the_run_and_trls_passes(tokenizer):
    train = check(tokenizer, [{"messages": CONVERSATION}, {"messages": CONVERSATION[:3]}])
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    eos = [tokenizer.eos_token_id]
    sft.check_collated_labels(TRLCollator(pad_token_id=tokenizer.pad_token_id), train, eos, tokenizer.pad_token_id)
    sft.check_collated_labels(TRLCollator(pad_token_id=tokenizer.pad_token_id, padding_free=True), train, eos,
                              tokenizer.pad_token_id)

    def masks_padding_by_id(examples):  # the classic collator: labels from the ids, padding masked by its id
        batch = tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")
        labels = batch["input_ids"].clone()
        labels[labels == tokenizer.pad_token_id] = -100
        return {**batch, "labels": labels}

    with pytest.raises(InputError, match="drops 3 of 3 trained end-of-turn tokens"):
        sft.check_collated_labels(masks_padding_by_id, train, eos, tokenizer.pad_token_id)


def test_packed_samples_do_not_attend_across_each_other(tmp_path, tokenizer):
    """A padding-free packed batch (TRL's collator: position ids restart per sample, no attention mask) gives each
    sample the logits it has alone, as long as no KV cache is built: TRL's compute_loss passes use_cache=False, and
    with transformers 5.24's default cache the samples DO see each other."""
    model = LlamaForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "tiny")).eval()
    rows = [{"messages": CONVERSATION}, {"messages": CONVERSATION[:3]}, {"messages": CONVERSATION[1:3]}]
    train = sft.tokenize(sft_data(rows, sft.CHAT), tokenizer, args())["train"]
    batch = TRLCollator(pad_token_id=tokenizer.pad_token_id, padding_free=True)(
        [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in train]
    )
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]
        leaky = model(**inputs).logits[0]
        start = 0
        for example in train:
            alone = model(torch.tensor([example["input_ids"]]), use_cache=False).logits[0]
            end = start + len(example["input_ids"])
            torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-5)
            start = end
    assert not torch.allclose(leaky, packed, atol=1e-3)


# --- bad input ---------------------------------------------------------------------------------------------------


def load(tmp_path, rows: list[dict], **data_args) -> sft.SFTData:
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    return sft.load_data(sft.SFTDataArguments(train_file=str(path), **data_args), seed=0)


def test_missing_columns_are_named_with_the_flags(tmp_path):
    with pytest.raises(InputError, match=r"No SFT column in the data: it has \['question', 'answer'\].*"
                                         r"--prompt_column_name"):
        load(tmp_path, [{"question": "q", "answer": "a"}] * 4)


def test_other_column_names_map_to_trls(tmp_path):
    data = load(tmp_path, [{"question": "q", "answer": "a"}] * 8, prompt_column_name="question",
                completion_column_name="answer")
    assert data.data_format == sft.PROMPT_COMPLETION and not data.conversational
    assert data.splits["train"].column_names == ["prompt", "completion"]


def test_sharegpt_conversations_are_converted(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}] * 8
    data = load(tmp_path, rows)
    assert data.splits["train"][0]["messages"] == [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize("messages, error", [
    ([{"role": "human", "content": "hi"}], r"train row 1, column `messages`, message 0 has role 'human'; roles must"),
    ([{"role": "user", "text": "hi"}], r"train row 1, column `messages`, message 0 is .* needs `role` and `content`"),
    ([{"role": "user", "content": 3}], r"message 0 has content of type int; expected a string"),
    ("hello", r"train row 1, column `messages` holds str 'hello'; expected a list of \{role, content\} messages"),
])
def test_bad_messages_are_refused_before_training(tmp_path, messages, error):
    good = {"messages": CONVERSATION[1:3]}
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [good, {"messages": messages}, good, good])
    with pytest.raises(InputError, match=error):
        sft.load_data(sft.SFTDataArguments(train_file=str(path), validation_file=str(path)), seed=0)


def test_trust_remote_code_is_one_option_for_both_namespaces():
    model_args, training_args = parse_args(
        (ModelArguments, SFTConfig),
        ["--model_name_or_path", "m", "--output_dir", "o", "--use_cpu", "true", "--bf16", "false",
         "--trust_remote_code", "true"],
    )
    assert model_args.trust_remote_code is True and training_args.trust_remote_code is True


def test_any_other_shared_field_is_refused():
    from dataclasses import dataclass

    @dataclass
    class Clashing:
        learning_rate: float = 0.1

    with pytest.raises(ConfigError, match="--learning_rate is a field of both"):
        parse_args((Clashing, SFTConfig), ["--output_dir", "o"])


# --- model loading and defaults ----------------------------------------------------------------------------------


def test_a_tokenizer_without_chat_template_gets_the_stated_default_and_saves_it(tmp_path, caplog):
    checkpoint = build_tiny_llama(tmp_path / "no_template", chat_template=None)
    caplog.set_level("WARNING", logger="hf_ft")
    model, tokenizer = sft.load_model(sft.CausalLMModelArguments(model_name_or_path=str(checkpoint)))
    assert tokenizer.chat_template == sft.DEFAULT_CHAT_TEMPLATE
    assert "has no chat template: using hf_ft's default" in caplog.text
    rendered = tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=False)
    assert rendered == "<|user|>\nwhat colour is the sky<|im_end|>\n<|assistant|>\nblue<|im_end|>\n"
    train = sft.tokenize(sft_data([{"messages": CONVERSATION[1:3]}], sft.CHAT), tokenizer, args())["train"]
    assert trained_text(tokenizer, train[0]).endswith("<|assistant|>\n[[blue<|im_end|>\n]]")
    tokenizer.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "chat_template.jinja").read_text() == sft.DEFAULT_CHAT_TEMPLATE
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id]


def test_chat_template_path_must_be_a_jinja_file(tmp_path):
    checkpoint = build_tiny_llama(tmp_path / "tiny")
    with pytest.raises(InputError, match="is not a .jinja file"):
        sft.load_model(sft.CausalLMModelArguments(model_name_or_path=str(checkpoint)),
                       chat_template_path=str(tmp_path / "missing.jinja"))
    template = tmp_path / "eos.jinja"
    template.write_text(NO_EOS_TEMPLATE)
    _, tokenizer = sft.load_model(sft.CausalLMModelArguments(model_name_or_path=str(checkpoint)),
                                  chat_template_path=str(template))
    assert tokenizer.chat_template == NO_EOS_TEMPLATE


def test_machine_defaults_are_under_the_users_values():
    defaults = sft.parser_defaults({})
    types = (sft.CausalLMModelArguments, SFTConfig)
    _, chosen = parse_args(types, ["--model_name_or_path", "m", "--output_dir", "o"], defaults=defaults)
    assert chosen.bf16 is torch.cuda.is_available() and chosen.gradient_checkpointing is torch.cuda.is_available()
    assert chosen.assistant_only_loss is True  # hf_ft's default; TRL's is False
    _, explicit = parse_args(types, ["--model_name_or_path", "m", "--output_dir", "o", "--assistant_only_loss", "false",
                                     "--gradient_checkpointing", "true"], defaults=defaults)
    assert explicit.assistant_only_loss is False and explicit.gradient_checkpointing is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU")
def test_qlora_loads_4bit_and_trains_the_adapter_only(tmp_path):
    pytest.importorskip("bitsandbytes")
    from hf_ft import peft
    from hf_ft.args import PeftArguments

    peft_args = PeftArguments(peft_method="lora", load_in_4bit=True)
    model, _ = sft.load_model(sft.CausalLMModelArguments(model_name_or_path=str(build_tiny_llama(tmp_path / "t"))),
                              quantization_config=peft.quantization_config(peft_args))
    model = peft.apply_peft(model, peft_args, sft.PEFT_TASK_TYPE)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("4bit" in type(m).__name__ for m in model.modules())


def test_per_sample_losses_make_the_split_loss_and_its_interval(tmp_path, tokenizer):
    """Each held-out sample's summed loss and trained-token count, in batches padded to the longest: a sample's
    quotient is the model's own loss on it alone, the split's is the loss over all its trained tokens, and the
    bootstrap interval of the perplexity holds the split's perplexity."""
    model = LlamaForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "tiny")).eval()
    rows = colour_conversations(12, seed=3)
    rows[4]["messages"] = rows[4]["messages"] * 3  # lengths differ: padding must not change a sample's loss
    split = sft.tokenize(sft_data(rows, sft.CHAT), tokenizer, args())["train"]
    losses, counts = sft.example_losses(model, split, tokenizer.pad_token_id, batch_size=5)
    with torch.no_grad():
        own = [model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss.item()
               for e in split]
    trained = [sum(label != -100 for label in e["labels"][1:]) for e in split]  # the first token predicts nothing
    assert counts == trained and min(counts) > 0
    assert [loss / count for loss, count in zip(losses, counts)] == pytest.approx(own, rel=1e-5)
    records = [{"id": str(i), "reference": "", "prediction": None, "loss_sum": loss, "trained_tokens": count}
               for i, (loss, count) in enumerate(zip(losses, counts))]
    whole = sft.token_loss_scorer(records)(np.arange(len(records)))
    assert whole["loss"] == pytest.approx(np.dot(own, trained) / sum(trained), rel=1e-5)
    assert whole["perplexity"] == pytest.approx(np.exp(whole["loss"])) and "exact_match" not in whole
    found = bootstrap.intervals(records, sft.token_loss_scorer, ["perplexity"], bootstrap.BootstrapSettings(200))
    assert found["perplexity"][0] < whole["perplexity"] < found["perplexity"][1]
