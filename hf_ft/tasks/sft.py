"""Supervised fine-tuning (SFT) of a causal language model on chat, prompt-completion or plain-text data, with TRL's
`SFTTrainer` doing the training (packing, padding-free batches, the loss) and hf_ft the checks and the report.

    data = load_data(data_args, seed=..., token=..., cache_dir=...)        # checked: columns, roles, types
    model, tokenizer = load_model(model_args, data.data_format)           # a chat template is always there
    splits = tokenize(data, tokenizer, training_args)                     # input_ids + labels (-100: not trained)
    check_training_samples(splits["train"], tokenizer, training_args)     # the silent mistakes, as errors
    trainer = sft_trainer(model, tokenizer, splits, training_args)
    check_collated_labels(trainer.data_collator, splits["train"], tokenizer)  # the collator keeps EOS trained
    baseline = score_base_model(...)                                      # the same scores, before training
    runs.finish(..., evaluate=lambda d, p: evaluate(d, ..., splits=splits), predict_splits=False)  # per sample

Data layouts are TRL's: a `messages` column (lists of {role, content}; ShareGPT's `conversations` of
{from, value} is converted), `prompt` + `completion` (strings, or lists of messages), or `text`. Other column names
are mapped with `--messages_column_name`, `--prompt_column_name`, `--completion_column_name`, `--text_column_name`.

Which tokens are trained (TRL's option names): `assistant_only_loss` (hf_ft's default: true) trains the assistant
turns of a conversation, `completion_only_loss` (default: true) the completion of a prompt-completion pair; plain
text trains everything. The mask is built here, not by TRL, because TRL builds the assistant mask from
`{% generation %}` markers, which most chat templates (SmolLM2's among them) do not have: the mask then comes out
empty. hf_ft renders each conversation up to every assistant turn and marks the characters the turn adds, which
works for every template that renders a conversation's beginning the same way whether or not it goes on (all
common ones). A template that does not falls back to its `{% generation %}` markers, or stops with what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
)

from .. import hub, runs
from .. import markdown as md
from ..args import ConfigError, DataArguments, ModelArguments
from ..bootstrap import example_id
from ..checkpoints import StrictResumeTrainer
from ..data import sources
from ..errors import InputError
from ..models import offline_hint, saved_label_names
from ..peft import load_trained
from ..predict import Inputs, PredictArguments, Predictions, Predictor, batches, load_input
from ..report import TaskReport
from ..runs import baseline_scores

try:
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import has_generation_markers
    from trl.data_utils import maybe_convert_to_chatml
except ModuleNotFoundError as err:  # the recipe's first import: one line that says what to install
    raise InputError(f"{err}: SFT needs TRL. Run `pip install -e \".[llm]\"` (or `pip install trl`).") from None

logger = logging.getLogger("hf_ft")

TASK = "text-generation"
PEFT_TASK_TYPE = "CAUSAL_LM"
CHAT, PROMPT_COMPLETION, TEXT = "messages", "prompt-completion", "text"
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}
# How a rendered training sample shows the tokens the loss falls on.
TRAINED_START, TRAINED_END = "[[", "]]"
# For tokenizers without a chat template: role headers in plain text and the tokenizer's own EOS closing every turn,
# so no token is added to the vocabulary and the model learns to stop where generation stops.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass
class SFTDataArguments(DataArguments):
    """Chat, prompt-completion or plain-text data, and what the report generates from it."""

    messages_column_name: str = field(
        default="messages",
        metadata={"help": "The column of conversations: lists of {role, content} (roles: system, user, assistant, tool)."},
    )
    prompt_column_name: str = field(default="prompt", metadata={"help": "The prompt column of prompt-completion data."})
    completion_column_name: str = field(
        default="completion", metadata={"help": "The completion column of prompt-completion data."}
    )
    text_column_name: str = field(default="text", metadata={"help": "The column of plain-text data (all of it trained)."})
    truncation: bool = field(
        default=False,
        metadata={
            "help": "Cut samples longer than `max_length` (their ends, EOS included, are lost: the model learns not "
            "to stop). False (default): such a sample stops the run before training, naming it."
        },
    )
    exact_match: bool = field(
        default=False,
        metadata={
            "help": "Also score greedy generations against the reference answers (the last assistant turn, or the "
            "completion) of validation and test, for both the base and the tuned model. For data with checkable "
            "answers."
        },
    )
    max_generation_samples: int = field(
        default=200, metadata={"help": "Score generations on at most this many samples per split (`exact_match`)."}
    )
    max_new_tokens: int = field(
        default=64, metadata={"help": "Tokens generated per prompt for `exact_match` and the report's generations."}
    )
    num_sample_prompts: int = field(
        default=5,
        metadata={"help": "Held-out prompts (test, else validation) whose base and tuned generations the report shows."},
    )

    def __post_init__(self):
        super().__post_init__()
        unused = {
            "train_dir": self.train_dir or self.validation_dir or self.test_dir,
            "label_column_name": self.label_column_name,
            "class_weight": self.class_weight,
            "class_balanced_sampling": self.class_balanced_sampling,
        }
        for name, value in unused.items():
            if value:
                raise ConfigError(f"--{name} is not an SFT argument: SFT data has no labels or image folders. Drop it.")
        for name in ("max_generation_samples", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.num_sample_prompts < 0:
            raise ConfigError(f"--num_sample_prompts must be >= 0, got {self.num_sample_prompts}")


@dataclass
class CausalLMModelArguments(ModelArguments):
    """The checkpoint, plus how to load a large one."""

    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: `auto` (the checkpoint's), `bfloat16`, `float16` or `float32`."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "`sdpa`, `eager`, `flash_attention_2`, ... Unset: transformers' choice for the model."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"--dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")


def parser_defaults(speed_defaults: Mapping[str, object]) -> dict[str, object]:
    """`SFTConfig` defaults for this machine under the YAML and the command line.

    TRL turns an unset `bf16` into True, which fails on a CPU, and defaults gradient checkpointing on, which only
    slows a CPU run down; both are decided here by the machine instead (an explicit value still wins). Losses fall
    on the assistant turns by default.
    """
    on_gpu = torch.cuda.is_available()
    return {
        **speed_defaults,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "gradient_checkpointing": on_gpu,
        "assistant_only_loss": True,
        "dataset_num_proc": None,
    }


# --- data ---------------------------------------------------------------------------------------------------


@dataclass
class SFTData:
    """The splits in TRL's column names (`messages`, or `prompt` + `completion`, or `text`), and which layout."""

    splits: DatasetDict
    data_format: str
    conversational: bool  # messages, or prompt-completion as lists of messages


def load_data(
    data_args: SFTDataArguments, *, seed: int, token: str | None = None, cache_dir: str | None = None
) -> SFTData:
    """Load, find the layout, rename to TRL's columns, check every row, split off validation, subsample.

    Raises:
        InputError: no known column (the message lists the real ones and the flags), a value of the wrong type, a
            message without a role or content, an unknown role, an empty text.
    """
    raw = sources.load_raw_splits(data_args, token=token, cache_dir=cache_dir)
    data_format, columns = find_format(raw["train"].column_names, data_args)
    splits = {}
    for name, split in raw.items():
        missing = [column for column in columns if column not in split.column_names]
        if missing:
            raise InputError(f"The {name} split has no column {missing}; it has {split.column_names}.")
        split = split.select_columns(list(columns)).rename_columns(
            {old: new for old, new in columns.items() if old != new}
        )
        if "conversations" in columns.values():
            split = split.map(_from_sharegpt, remove_columns=["conversations"])
        splits[name] = split
    conversational = check_rows(splits)
    splits = DatasetDict(splits)
    if "validation" not in splits:
        parts = splits["train"].train_test_split(test_size=data_args.train_val_split, seed=seed)
        splits = DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
    splits = sources.cap_samples(splits, data_args, seed)
    return SFTData(splits, data_format, conversational)


def _from_sharegpt(example: dict) -> dict:
    """ShareGPT's {from, value} messages as {role, content} (TRL's conversion), its `human`/`gpt` roles renamed."""
    messages = maybe_convert_to_chatml(example)["messages"]
    return {"messages": [{**m, "role": SHAREGPT_ROLES.get(m.get("role"), m.get("role"))} for m in messages]}


def find_format(column_names: Sequence[str], data_args: SFTDataArguments) -> tuple[str, dict[str, str]]:
    """The data's layout and its columns as {data column: TRL column}, looked for in TRL's order."""
    if data_args.messages_column_name in column_names:
        return CHAT, {data_args.messages_column_name: "messages"}
    if "conversations" in column_names:
        return CHAT, {"conversations": "conversations"}
    prompt, completion = data_args.prompt_column_name, data_args.completion_column_name
    if prompt in column_names and completion in column_names:
        return PROMPT_COMPLETION, {prompt: "prompt", completion: "completion"}
    if data_args.text_column_name in column_names:
        return TEXT, {data_args.text_column_name: "text"}
    raise InputError(
        f"No SFT column in the data: it has {list(column_names)}. Name a conversation column with "
        f"--messages_column_name (now `{data_args.messages_column_name}`), prompt and completion columns with "
        f"--prompt_column_name/--completion_column_name (now `{prompt}`/`{completion}`), or a text column with "
        f"--text_column_name (now `{data_args.text_column_name}`)."
    )


def check_rows(splits: Mapping[str, Dataset]) -> bool:
    """Check every value's type and every message's role and content; return whether the data is conversational.

    Raises:
        InputError: naming the split, row and column, what was found and what is expected.
    """
    conversational = None
    for name, split in splits.items():
        for row, example in enumerate(split):
            for column, value in example.items():
                where = f"{name} row {row}, column `{column}`"
                if isinstance(value, str) and column != "messages":
                    if not value.strip() and column != "prompt":
                        raise InputError(f"{where} is empty. Drop the row or fill it in.")
                    is_chat = False
                elif isinstance(value, list) and column != "text":
                    _check_messages(value, where)
                    is_chat = True
                else:
                    expected = "a list of {role, content} messages" if column == "messages" else "a string"
                    if column in ("prompt", "completion"):
                        expected += " or a list of {role, content} messages"
                    raise InputError(
                        f"{where} holds {type(value).__name__} {_short(value)}; expected {expected}. A conversation "
                        "stored as a JSON string must be parsed into a list first."
                    )
                if conversational is None:
                    conversational = is_chat
                elif is_chat != conversational:
                    raise InputError(
                        f"{where} is {'a list of messages' if is_chat else 'a string'}, but earlier rows are "
                        f"{'lists of messages' if conversational else 'strings'}: use one layout throughout."
                    )
    return bool(conversational)


def _check_messages(messages: list, where: str) -> None:
    if not messages:
        raise InputError(f"{where} is an empty conversation. Drop the row.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InputError(
                f"{where}, message {index} is {_short(message)}; each message needs `role` and `content` keys "
                "(ShareGPT's `from`/`value` are converted when the column is named `conversations`)."
            )
        if message["role"] not in ROLES:
            raise InputError(
                f"{where}, message {index} has role {message['role']!r}; roles must be one of {', '.join(ROLES)}. "
                "Map the data's roles to these names before training."
            )
        if not isinstance(message["content"], str):
            raise InputError(
                f"{where}, message {index} has content of type {type(message['content']).__name__}; expected a string."
            )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- model and tokenizer -----------------------------------------------------------------------------------------


def load_model(
    model_args: CausalLMModelArguments, *, chat_template_path: str | None = None, quantization_config=None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`AutoModelForCausalLM` and its tokenizer, with a chat template (`chat_template_path`, a .jinja file, wins;
    a tokenizer without one gets `DEFAULT_CHAT_TEMPLATE`, stated in the log) and a pad token.

    Raises:
        InputError: the checkpoint cannot be found (offline), or `chat_template_path` is not a readable .jinja file.
    """
    source = model_args.model_name_or_path
    hub_kwargs = model_args.hub_kwargs()
    with offline_hint(source):
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=model_args.dtype,
            attn_implementation=model_args.attn_implementation,
            quantization_config=quantization_config,
            **hub_kwargs,
        )
    if chat_template_path:
        path = Path(chat_template_path)
        if path.suffix not in (".jinja", ".j2") or not path.is_file():
            raise InputError(f"--chat_template_path {chat_template_path} is not a .jinja file. Point it at one.")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
        logger.info("Chat template from %s (saved with the tokenizer)", path)
    elif not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        logger.warning(
            "%s has no chat template: using hf_ft's default (`<|role|>` headers, each turn closed by EOS %r); it is "
            "saved with the tokenizer, so inference formats prompts the same way.", source, tokenizer.eos_token,
        )
    if tokenizer.eos_token is None:
        raise InputError(f"The tokenizer of {source} has no eos_token: the model could never learn to stop. Set one.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # safe: TRL's collator pads by position (check_collated_labels)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    """The tokens that end a generation: the tokenizer's EOS and the generation config's (e.g. Llama 3's
    `<|eot_id|>` next to `<|end_of_text|>`)."""
    configured = model.generation_config.eos_token_id
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    return sorted({tokenizer.eos_token_id, *configured})


# --- tokens and the loss mask ------------------------------------------------------------------------------------


def tokenize(data: SFTData, tokenizer: PreTrainedTokenizerBase, training_args: SFTConfig) -> DatasetDict:
    """Every split as `input_ids` and `labels`, the tokens not trained set to -100 (spans from `chat_spans` for
    conversations); nothing is cut here: `truncate` does that, after `check_training_samples`.

    Raises:
        InputError: a conversation the chat template cannot be split into turns (with what to do).
    """
    encode = _encoder(data, tokenizer, training_args)
    return DatasetDict(
        {name: split.map(encode, remove_columns=split.column_names, desc=f"Tokenizing {name}") for name, split in
         data.splits.items()}
    )


def _encoder(data: SFTData, tokenizer: PreTrainedTokenizerBase, training_args: SFTConfig) -> Callable[[dict], dict]:
    assistant_only = training_args.assistant_only_loss
    completion_only = training_args.completion_only_loss is not False

    def encode(example: dict) -> dict:
        if data.data_format == CHAT:
            text, spans = chat_spans(tokenizer, example["messages"], trained=_assistant_turns if assistant_only else None)
        elif data.conversational:  # prompt-completion as messages
            messages = example["prompt"] + example["completion"]
            first = len(example["prompt"])
            text, spans = chat_spans(
                tokenizer, messages, trained=(lambda m: range(first, len(m))) if completion_only else None
            )
        elif data.data_format == PROMPT_COMPLETION:
            text = example["prompt"] + example["completion"] + tokenizer.eos_token
            spans = [(len(example["prompt"]) if completion_only else 0, len(text))]
        else:
            text = example["text"] + tokenizer.eos_token
            spans = [(0, len(text))]
        encoding = tokenizer(text, add_special_tokens=adds_special_tokens(data), return_offsets_mapping=True)
        labels = [
            token if any(start <= begin < end for start, end in spans) else -100
            for token, (begin, _) in zip(encoding["input_ids"], encoding["offset_mapping"])
        ]
        return {"input_ids": encoding["input_ids"], "labels": labels}

    return encode


def adds_special_tokens(data: SFTData) -> bool:
    """Whether the tokenizer adds its special tokens (BOS) to a sample: to plain text and plain prompts, as TRL
    does; never to a rendered conversation, whose template writes them itself."""
    return not data.conversational


def _assistant_turns(messages: list[dict]) -> list[int]:
    return [index for index, message in enumerate(messages) if message["role"] == "assistant"]


def chat_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], *, trained: Callable[[list[dict]], Sequence[int]] | None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the turns `trained(messages)` picks (None: all).

    A turn's span runs from the end of the conversation rendered up to it with the generation prompt (so the
    `<|im_start|>assistant\\n` header is context, not target) to the end of the conversation rendered through it
    (so its end-of-turn token is trained).

    Raises:
        InputError: the template renders a conversation's beginning differently when it goes on (e.g. it drops
            earlier turns' reasoning); the message says how to train such a template.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    if trained is None:
        return text, [(0, len(text))]
    spans = []
    for index in trained(messages):
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(prefix) and text.startswith(through)):
            return text, _marker_spans(tokenizer, messages)
        spans.append((len(prefix), len(through)))
    return text, spans


def _marker_spans(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[tuple[int, int]]:
    """The assistant spans from the template's `{% generation %}` markers, for templates that do not render a
    conversation's beginning the same way when it goes on."""
    if not has_generation_markers(tokenizer.chat_template):
        raise InputError(
            "The chat template renders the start of a conversation differently once it goes on (it rewrites earlier "
            "turns), so the assistant turns cannot be found by rendering it turn by turn, and it has no "
            "`{% generation %}` markers to find them by. Pass a template with `{% generation %}...{% endgeneration %}` "
            "around each assistant reply (--chat_template_path), or set --assistant_only_loss false to train on "
            "whole conversations."
        )
    encoding = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_offsets_mapping=True
    )
    return [
        (begin, end) for (begin, end), trained in zip(encoding["offset_mapping"], encoding["assistant_masks"]) if trained
    ]


def truncate(data: SFTData, splits: DatasetDict, max_length: int) -> tuple[SFTData, DatasetDict]:
    """Cut every sample to `max_length` tokens from the end, as TRL's `keep_start` does; drop samples left with no
    trained token (both counted in the log), from the tokens and from `data` alike, so that row i of a split is the
    same sample in both (the report scores each held-out sample's tokens and its generation together)."""
    rows, cut = {}, {}
    for name, split in splits.items():
        long_rows = sum(len(ids) > max_length for ids in split["input_ids"])
        split = split.map(lambda e: {"input_ids": e["input_ids"][:max_length], "labels": e["labels"][:max_length]})
        kept = [i for i, labels in enumerate(split["labels"]) if any(label != -100 for label in labels)]
        if long_rows:
            logger.warning(
                "%s: %d of %d samples cut to max_length %d (%d left with nothing to train, dropped)",
                name, long_rows, len(split), max_length, len(split) - len(kept),
            )
        cut[name] = split.select(kept)
        rows[name] = data.splits[name].select(kept)
    return dataclasses.replace(data, splits=DatasetDict(rows)), DatasetDict(cut)


# --- checks before training --------------------------------------------------------------------------------------


def check_training_samples(
    train: Dataset, tokenizer: PreTrainedTokenizerBase, stop_ids: Sequence[int], *, max_length: int | None,
    truncation: bool,
) -> None:
    """Stop on the mistakes that train without an error, before any training: a sample with nothing to train, a
    sample whose trained tokens never include the end-of-turn token (the model would never stop), a sample longer
    than `max_length` with truncation off.

    Raises:
        InputError: naming the first such row, how many there are, and the fix.
    """
    empty, no_stop, too_long = [], [], []
    for row, (ids, labels) in enumerate(zip(train["input_ids"], train["labels"])):
        trained = [label for label in labels if label != -100]
        if not trained:
            empty.append(row)
        elif not set(trained) & set(stop_ids):
            no_stop.append(row)
        if max_length is not None and len(ids) > max_length:
            too_long.append((row, len(ids)))
    stops = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)!r} (id {i})" for i in stop_ids)
    if empty:
        raise InputError(
            f"train row {empty[0]} ({len(empty)} of {len(train)} rows) has no token to train on: "
            f"{render_trained(tokenizer, train[empty[0]]['input_ids'], train[empty[0]]['labels'])!r}. Every "
            "conversation needs an assistant turn (every pair a completion); or set --assistant_only_loss false / "
            "--completion_only_loss false to train on the whole sequence."
        )
    if no_stop:
        raise InputError(
            f"train row {no_stop[0]} ({len(no_stop)} of {len(train)} rows): the trained tokens never include the "
            f"end-of-turn token {stops}, so the model would never learn to stop: "
            f"{render_trained(tokenizer, train[no_stop[0]]['input_ids'], train[no_stop[0]]['labels'])!r}. Use a "
            "chat template that closes each assistant turn with the EOS token (--chat_template_path)."
        )
    if too_long and not truncation:
        row, length = too_long[0]
        raise InputError(
            f"train row {row} is {length:,} tokens, over --max_length {max_length:,} ({len(too_long)} rows are): "
            "raise --max_length, drop the long rows, or set --truncation true (cut rows lose their ends, EOS "
            "included)."
        )


def check_collated_labels(collator: Callable, train: Dataset, stop_ids: Sequence[int], pad_token_id: int,
                          samples: int = 8) -> None:
    """Run the trainer's data collator on the first training samples and check that every trained end-of-turn
    token is still a label: a collator that masks padding by token id drops EOS whenever pad == EOS.

    Raises:
        InputError: with the pad token and the fix.
    """
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in train.select(range(min(samples,
                                                                                                     len(train))))]
    wanted = sum(label in stop_ids for e in examples for label in e["labels"])
    batch = collator(examples)
    kept = int(sum((batch["labels"] == stop).sum() for stop in stop_ids))
    if kept < wanted:
        raise InputError(
            f"The data collator drops {wanted - kept} of {wanted} trained end-of-turn tokens from the labels: the pad "
            f"token (id {pad_token_id}) is the EOS token and the collator masks padding by id, so the model would "
            "never learn to stop. Set a pad token distinct from EOS, or use a collator that masks padding by position "
            "(TRL's)."
        )


def render_trained(tokenizer: PreTrainedTokenizerBase, input_ids: Sequence[int], labels: Sequence[int]) -> str:
    """The sample's text with each run of trained tokens inside [[ ]]."""
    pieces, run, trained_run = [], [], False
    for token, label in [*zip(input_ids, labels), (None, None)]:
        trained = label is not None and label != -100
        if token is None or trained != trained_run:
            if run:
                decoded = tokenizer.decode(run)
                pieces.append(f"{TRAINED_START}{decoded}{TRAINED_END}" if trained_run else decoded)
            run, trained_run = [], trained
        if token is not None:
            run.append(token)
    return "".join(pieces)


# --- training ----------------------------------------------------------------------------------------------------


class StrictResumeSFTTrainer(StrictResumeTrainer, SFTTrainer):
    """TRL's `SFTTrainer` with `StrictResumeTrainer`'s resume (every weight, or an error)."""


def sft_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: DatasetDict,
    training_args: SFTConfig,
    *,
    callbacks: Sequence[TrainerCallback] = (),
) -> StrictResumeSFTTrainer:
    """TRL's trainer on the tokenized splits: it packs (`packing`), flattens batches (`padding_free`), collates and
    computes the loss; the labels are already built, so its own masking options are switched off for it (the run's
    arguments keep the user's choice). Evaluation computes the loss only: gathering a split's logits would take
    vocabulary x tokens floats (SmolLM2: 49,152 per token), and TRL's fused LM head would run a second forward for
    them."""
    trl_args = dataclasses.replace(
        training_args, assistant_only_loss=False, completion_only_loss=False, chat_template_path=None,
        prediction_loss_only=True,
    )
    attention = model.config._attn_implementation
    if training_args.packing and "flash" not in str(attention):
        logger.warning(
            "packing with attn_implementation=%s: each packed row is attended as one sequence under a block mask, "
            "which costs (max_length x per_device_train_batch_size)^2 per layer, more than the padding it saves "
            "(benchmarks/sft_throughput.py). Pack with flash attention (--attn_implementation flash_attention_2), "
            "or set --packing false.", attention,
        )
    return StrictResumeSFTTrainer(
        model=model,
        args=trl_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


# --- scoring: loss, perplexity, exact match, generations --------------------------------------------------------


@dataclass
class Prompt:
    """A held-out sample as the model is asked it: the prompt as the model sees it and the reference answer."""

    text: str
    reference: str
    row: int  # in the split


def held_out_prompts(data: SFTData, tokenizer: PreTrainedTokenizerBase, split: str, limit: int) -> list[Prompt]:
    """The first `limit` samples of `split` that have an answer to check: a conversation up to its last assistant
    turn (rendered with the generation prompt), or a prompt-completion pair. Plain text has none."""
    prompts = []
    for row, example in enumerate(data.splits[split]):
        if len(prompts) >= limit or data.data_format == TEXT:
            break
        if data.data_format == CHAT:
            messages = example["messages"]
            last = max(_assistant_turns(messages), default=None)
            if last is None:
                continue
            text = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
            reference = messages[last]["content"]
        elif data.conversational:
            text = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
            reference = "".join(message["content"] for message in example["completion"])
        else:
            text, reference = example["prompt"], example["completion"]
        prompts.append(Prompt(text, reference, row))
    return prompts


@torch.no_grad()
def generate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *, max_new_tokens: int,
    add_special_tokens: bool, batch_size: int = 16,
) -> list[str]:
    """Greedy continuations of `prompts`, in left-padded batches, tokenized as in training (`adds_special_tokens`)."""
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    outputs = []
    try:
        for begin in range(0, len(prompts), batch_size):
            batch = tokenizer(
                list(prompts[begin: begin + batch_size]), return_tensors="pt", padding=True,
                add_special_tokens=add_special_tokens,
            ).to(model.device)
            generated = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            outputs += tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        model.train(was_training)
        tokenizer.padding_side = padding_side
    return outputs


def exact_match(generations: Sequence[str], references: Sequence[str]) -> float:
    """The share of generations equal to their reference, both stripped of surrounding whitespace."""
    return sum(g.strip() == r.strip() for g, r in zip(generations, references)) / max(len(references), 1)


@dataclass
class Scores:
    """One model's scores on the held-out splits, and its generations for the report's table."""

    metrics: dict[str, dict[str, float]]
    generations: list[str]
    # Split -> one record per held-out sample (`hf_ft.bootstrap`): its summed token loss and trained-token count, and
    # its greedy generation where one was scored for exact match. The intervals and the pairing resample them.
    records: dict[str, list[dict]] = field(default_factory=dict)


def score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: SFTData,
    data_args: SFTDataArguments,
    splits: Mapping[str, Dataset],
    batch_size: int,
) -> Scores:
    """Loss and perplexity of each held-out split of `splits` (the tokens, row-aligned with `data`) and, with
    `exact_match`, the share of greedy generations equal to the reference; plus the greedy generations of the
    report's prompts. The loss is the split's summed cross-entropy over its trained tokens, per trained token."""
    metrics, records = {}, {}
    for split in ("validation", "test"):
        if split not in splits:
            continue
        losses, counts = example_losses(model, splits[split], tokenizer.pad_token_id, batch_size)
        records[split] = [
            {"id": example_id(np.asarray(example["input_ids"], np.int64).tobytes(),
                              np.asarray(example["labels"], np.int64).tobytes()),
             "input": md.shorten(tokenizer.decode(example["input_ids"][-48:]), 160), "reference": "", "prediction": None,
             "loss_sum": loss, "trained_tokens": count}
            for example, loss, count in zip(splits[split], losses, counts)
        ]
        if data_args.exact_match:
            prompts = held_out_prompts(data, tokenizer, split, data_args.max_generation_samples)
            generations = generate(model, tokenizer, [p.text for p in prompts], max_new_tokens=data_args.max_new_tokens,
                                   add_special_tokens=adds_special_tokens(data))
            for prompt, generation in zip(prompts, generations):
                records[split][prompt.row].update(
                    input=md.shorten(prompt.text[-160:], 160), reference=prompt.reference, prediction=generation,
                    correct=generation.strip() == prompt.reference.strip(),
                )
        metrics[split] = token_loss_scorer(records[split])(np.arange(len(records[split])))
    shown = sample_prompts(data, tokenizer, data_args)
    generations = generate(model, tokenizer, [p.text for p in shown], max_new_tokens=data_args.max_new_tokens,
                           add_special_tokens=adds_special_tokens(data))
    return Scores(metrics, generations, records)


@torch.no_grad()
def example_losses(model: PreTrainedModel, split: Dataset, pad_token_id: int, batch_size: int
                   ) -> tuple[list[float], list[int]]:
    """Each sample's summed next-token cross-entropy over its trained tokens (labels != -100), in float32, and how
    many trained tokens it has: what a per-token loss over any set of samples is made of."""
    was_training = model.training
    model.eval()
    losses, counts = [], []
    try:
        for begin in range(0, len(split), batch_size):
            rows = split[begin: begin + batch_size]
            width = max(len(ids) for ids in rows["input_ids"])
            input_ids = torch.full((len(rows["input_ids"]), width), pad_token_id, dtype=torch.long)
            labels = torch.full_like(input_ids, -100)
            attention_mask = torch.zeros_like(input_ids)
            for i, (ids, trained) in enumerate(zip(rows["input_ids"], rows["labels"])):
                input_ids[i, : len(ids)], labels[i, : len(ids)], attention_mask[i, : len(ids)] = (
                    torch.tensor(ids), torch.tensor(trained), 1
                )
            logits = model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device)).logits
            targets = labels[:, 1:].to(logits.device)
            for row_logits, row_targets in zip(logits[:, :-1], targets):  # one row at a time: float32 logits are large
                loss = torch.nn.functional.cross_entropy(row_logits.float(), row_targets, ignore_index=-100,
                                                         reduction="sum")
                losses.append(float(loss))
                counts.append(int((row_targets != -100).sum()))
    finally:
        model.train(was_training)
    return losses, counts


def token_loss_scorer(records: Sequence[dict]) -> Callable[[np.ndarray], dict[str, float]]:
    """`hf_ft.bootstrap.Scorer` of the held-out records: the loss per trained token of a resample of samples (their
    summed losses over their summed counts, as the split's own loss is), its perplexity, and the exact match of the
    resampled samples that were generated."""
    sums = np.array([record["loss_sum"] for record in records], dtype=np.float64)
    counts = np.array([record["trained_tokens"] for record in records], dtype=np.float64)
    generated = np.array(["correct" in record for record in records])
    correct = np.array([bool(record.get("correct")) for record in records], dtype=np.float64)

    def statistic(indices: np.ndarray) -> dict[str, float]:
        tokens = counts[indices].sum()
        loss = float(sums[indices].sum() / tokens) if tokens else float("nan")
        scores = {"loss": loss, "perplexity": _perplexity(loss)}
        if generated.any():
            scored = indices[generated[indices]]
            scores["exact_match"] = float(correct[scored].mean()) if len(scored) else float("nan")
        return scores

    return statistic


def sample_prompts(data: SFTData, tokenizer: PreTrainedTokenizerBase, data_args: SFTDataArguments) -> list[Prompt]:
    split = "test" if "test" in data.splits else "validation"
    return held_out_prompts(data, tokenizer, split, data_args.num_sample_prompts)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


def score_base_model(
    trainer: SFTTrainer,
    tokenizer: PreTrainedTokenizerBase,
    data: SFTData,
    data_args: SFTDataArguments,
    splits: Mapping[str, Dataset],
    output_dir: Path,
) -> Scores:
    """The model's scores before training (the same splits, the same code as after), saved in `output_dir` so that
    a resumed or reloaded run shows the numbers of the model it started from. The saved scores are reused only for
    the same held-out tokens and generation settings."""
    def base_scores() -> dict[str, Any]:
        logger.info("Scoring the base model on %s before training", [n for n in ("validation", "test") if n in splits])
        scores = score(trainer.model, tokenizer, data, data_args, splits, trainer.args.per_device_eval_batch_size)
        return dataclasses.asdict(scores)

    key = _baseline_key(splits, data_args)
    return Scores(**baseline_scores(output_dir, key, base_scores, should_save=trainer.is_world_process_zero()))


def _baseline_key(splits: Mapping[str, Dataset], data_args: SFTDataArguments) -> dict[str, Any]:
    digests = {
        name: hashlib.sha256(json.dumps(list(splits[name]["input_ids"])).encode()).hexdigest()
        for name in ("validation", "test") if name in splits
    }
    settings = ("exact_match", "max_generation_samples", "max_new_tokens", "num_sample_prompts")
    return {"tokens": digests, **{name: getattr(data_args, name) for name in settings}}


# --- report and card ---------------------------------------------------------------------------------------------


def evaluate(
    output_dir: str | Path,
    *,
    trainer: SFTTrainer,
    data: SFTData,
    data_args: SFTDataArguments,
    splits: Mapping[str, Dataset],
    baseline: Scores | None,
    training_sample: str | None,
) -> TaskReport:
    """The tuned model's scores (`score`, on the held-out `splits`) next to the base model's, their intervals over
    the held-out samples, the rendered training sample, and the generations table (`generations.md` too). Without
    a `baseline` (an earlier run's test set, scored for forgetting), the scores alone."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = trainer.processing_class
    tuned = score(trainer.model, tokenizer, data, data_args, splits, trainer.args.per_device_eval_batch_size)
    metrics = {}
    for split, values in tuned.metrics.items():
        before = baseline.metrics.get(split, {}) if baseline else {}
        metrics[split] = {
            **values,
            **{f"baseline_{key}": value for key, value in before.items()},
            "num_samples": len(data.splits[split]),
        }
    keys = ["loss", "perplexity"] + (["exact_match"] if data_args.exact_match else [])
    names = {"loss": "Loss", "perplexity": "Perplexity", "exact_match": "Exact match"}
    columns = {key: names[key] for key in keys}
    split = "test" if "test" in metrics else "validation"
    headline_key = "exact_match" if data_args.exact_match else "perplexity"
    headline = (
        f"On the {split} split ({metrics[split]['num_samples']} samples), the fine-tuned model's "
        f"{names[headline_key].lower()} is **{md.metric_value(headline_key, metrics[split][headline_key])}**"
    )
    sections = []
    if training_sample is not None:
        sections.append(
            "## A training sample\n\nAs the model sees it; the loss falls on the tokens inside "
            f"`{TRAINED_START} {TRAINED_END}`.\n\n```text\n{training_sample}\n```"
        )
    if baseline is not None:
        columns.update({f"baseline_{key}": f"Base model {names[key].lower()}" for key in keys})
        before = metrics[split].get(f"baseline_{headline_key}")
        headline += (f", against {md.metric_value(headline_key, before)} for the base model before fine-tuning, "
                     "scored the same way in the same run")
        shown = sample_prompts(data, tokenizer, data_args)
        table = generations_table(shown, baseline.generations, tuned.generations, data_args.max_new_tokens)
        (output_dir / "generations.md").write_text(f"# Generations, base and fine-tuned ({split})\n\n{table}\n", "utf-8")
        if shown:
            sections.append(f"## Generations, base and fine-tuned ({split})\n\n{table}")
    return TaskReport(
        metrics=metrics,
        headline=headline + ".",
        columns=columns,
        notes="Loss: cross-entropy per trained token (the tokens the training loss falls on), summed over the split "
        "and divided by its trained tokens, so long samples weigh by their length (the Trainer's logged eval loss "
        "averages batches instead, and can differ a little); perplexity is its exponential; both are comparable "
        "only between models with the same tokenizer. Exact match: greedy generations equal to the reference answer, "
        "whitespace stripped. Base model: the checkpoint the run started from, scored before training.",
        facts={"Data layout": data.data_format + (" (conversational)" if data.conversational else "")},
        sections=sections,
        compared={key: names[key] for key in keys},
        curves={"loss": "eval loss"},
        examples=tuned.records,
        scorer=token_loss_scorer,
    )


def earlier_test(
    model_args: ModelArguments, data_args: SFTDataArguments, trainer: SFTTrainer, training_args: SFTConfig
) -> runs.EarlierTest | None:
    """When the checkpoint is an hf_ft SFT run, its test split (loaded as its args.yaml says, tokenized and cut as
    this run's samples are) to measure forgetting on; None for other checkpoints. Paired with that run's own
    scores when the tokens are the same (the same tokenizer and template: a continued run's)."""
    earlier = runs.load_earlier_data(model_args, SFTDataArguments, load_data, saved_label_names(trainer.model.config))
    if earlier is None:
        return None
    earlier = dataclasses.replace(earlier, splits=DatasetDict({"test": earlier.splits["test"]}))
    tokenized = tokenize(earlier, trainer.processing_class, training_args)
    if data_args.truncation and training_args.max_length:
        earlier, tokenized = truncate(earlier, tokenized, training_args.max_length)
    return runs.EarlierTest(
        Path(model_args.model_name_or_path), tokenized["test"],
        evaluate=lambda output_dir, predictions: evaluate(
            output_dir, trainer=trainer, data=earlier, data_args=data_args, splits=tokenized, baseline=None,
            training_sample=None,
        ),
    )


def generations_table(prompts: Sequence[Prompt], before: Sequence[str], after: Sequence[str], max_new_tokens: int
                      ) -> str:
    """Markdown table: each prompt's reference and both models' greedy generations."""
    rows = [
        [md.cell(_tail(p.text)), md.cell(p.reference), md.cell(b), md.cell(a)]
        for p, b, a in zip(prompts, before, after)
    ]
    header = "| Prompt (end) | Reference | Base model | Fine-tuned |\n|---|---|---|---|\n"
    return (
        f"Greedy decoding (`do_sample=False`), at most {max_new_tokens} new tokens.\n\n"
        + header + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    )


def _tail(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def card_facts(model_args: ModelArguments, data_args: SFTDataArguments, data: SFTData, training_args: SFTConfig,
               stop_ids: Sequence[int]) -> hub.CardFacts:
    """What the model card says: base, data set, layout, and how to prompt the model."""
    return hub.CardFacts(
        task=TASK,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        label_names=[],
        facts={
            "data_layout": data.data_format,
            "max_length": training_args.max_length,
            "trained_on": "assistant turns" if data.data_format == CHAT and training_args.assistant_only_loss
            else "completions" if data.data_format == PROMPT_COMPLETION and training_args.completion_only_loss
            is not False else "whole sequences",
            "prompting": "the chat template saved with the tokenizer (`tokenizer.apply_chat_template`)"
            if data.conversational else "plain text",
            "stop_token_ids": list(stop_ids),
        },
    )


# --- predict (hf-ft predict) -------------------------------------------------------------------------------------

DEFAULT_MAX_NEW_TOKENS = 64


def load_predictor(source: str, *, device: torch.device, token: str | None = None, cache_dir: str | None = None
                   ) -> Predictor:
    """An hf_ft output dir (full or adapter-only) or any Hub causal LM, with its tokenizer and chat template; it stops
    at the saved tokenizer's EOS (an adapter's base model's generation config does not know it).

    Raises:
        FileNotFoundError / InputError: the checkpoint cannot be found (offline: not cached).
    """
    hub_kwargs = {"token": token, "cache_dir": cache_dir}
    model, kind = load_trained(source, AutoModelForCausalLM.from_pretrained, **hub_kwargs)
    with offline_hint(source):
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Predictor(model.to(device), tokenizer, [], kind, device)


def read_inputs(args: PredictArguments, trained: dict) -> Inputs:
    """The input (a file or a Hub split) as conversations (`messages`, or ShareGPT `conversations`) or prompts, with
    the run's column names; a conversation is answered after its last assistant turn's question, which is the
    reference (one without an assistant turn is answered at its end), a prompt's reference is its completion.

    Raises:
        InputError: no conversation or prompt column; a malformed message (as in training).
    """
    split = load_input(args)
    messages = trained.get("messages_column_name", "messages")
    prompt, completion = trained.get("prompt_column_name", "prompt"), trained.get("completion_column_name", "completion")
    if messages in split.column_names or "conversations" in split.column_names:
        if messages not in split.column_names:
            split = split.map(_from_sharegpt, remove_columns=["conversations"])
        elif messages != "messages":
            split = split.rename_column(messages, "messages")
        columns, label_column = ["messages"], "messages"
    elif prompt in split.column_names:
        renames = {prompt: "prompt", **({completion: "completion"} if completion in split.column_names else {})}
        split = split.rename_columns({old: new for old, new in renames.items() if old != new})
        columns, label_column = ["prompt"], "completion" if "completion" in split.column_names else None
    else:
        raise InputError(f"--input {args.input} has columns {split.column_names}: text generation reads conversations "
                         f"(`{messages}`, `conversations`) or prompts (`{prompt}`, with `{completion}` as references)")
    check_rows({"input": split.select_columns([c for c in ("messages", "prompt", "completion") if c in split.column_names])})
    names = [_question(example) for example in split]
    return Inputs(split, columns, names, label_column, trained)


def predict(predictor: Predictor, inputs: Inputs, args: PredictArguments) -> Predictions:
    """Greedy answers (`generate`, as the report's); with references, the report's exact match over them."""
    tokenizer = predictor.preprocessor
    prompts, references, conversational = [], [], False
    for example in inputs.split:
        if "messages" in example:
            messages = example["messages"]
            last = max(_assistant_turns(messages), default=None)
            turns, reference = (messages, None) if last is None else (messages[:last], messages[last]["content"])
            prompts.append(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
            conversational = True
        elif isinstance(example["prompt"], list):
            prompts.append(tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True))
            reference = "".join(m["content"] for m in example["completion"]) if example.get("completion") else None
            conversational = True
        else:
            prompts.append(example["prompt"])
            reference = example.get("completion")
        references.append(reference)
    max_new_tokens = args.max_new_tokens or inputs.trained.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    generations = []
    for batch in batches(prompts, args.batch_size, "generating"):
        generations += generate(predictor.model, tokenizer, batch, max_new_tokens=max_new_tokens,
                                add_special_tokens=not conversational, batch_size=len(batch))
    rows = []
    for name, generation, reference in zip(inputs.names, generations, references):
        row = {"input": name, "generation": generation}
        if reference is not None:
            row.update(reference=reference, correct=generation.strip() == reference.strip())
        rows.append(row)
    scored = [(g, r) for g, r in zip(generations, references) if r is not None]
    metrics = None
    if scored:
        metrics = {"exact_match": exact_match(*zip(*scored)), "num_samples": len(scored)}
    return Predictions(rows, metrics)


def _question(example: dict) -> str:
    """What a row asks, for people: the last user message before the answer, or the prompt."""
    if "messages" in example:
        messages = example["messages"]
        last = max(_assistant_turns(messages), default=len(messages))
        users = [m["content"] for m in messages[:last] if m["role"] == "user"]
        return users[-1] if users else messages[0]["content"]
    prompt = example["prompt"]
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]
