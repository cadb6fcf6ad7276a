"""What the text tasks share about tokenizing: the length arguments, and the sequence length they train at, saved
with the tokenizer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from .args import ConfigError, DataArguments

logger = logging.getLogger("hf_ft")

DEFAULT_MAX_SEQ_LENGTH = 512
# Tokenizers without a length limit report model_max_length as a huge sentinel (int(1e30)).
_NO_LIMIT = 10**6


@dataclass
class TokenizedDataArguments(DataArguments):
    """Data that is tokenized: how long a tokenized example may be, and how batches are padded."""

    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Sub-word tokens per example after tokenization; longer ones are truncated (counted in the log, "
            f"per split). Unset: min(tokenizer.model_max_length, {DEFAULT_MAX_SEQ_LENGTH}), never above the model's "
            "positions."
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every example to max_seq_length. False pads each batch to its longest (faster)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.train_dir or self.validation_dir or self.test_dir:
            raise ConfigError(
                "--train_dir/--validation_dir/--test_dir are image folders; for text use --train_file/"
                "--validation_file/--test_file or --dataset_name."
            )


def set_max_seq_length(requested: int | None, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> int:
    """The sequence length to train at: `requested`, or min(tokenizer.model_max_length, 512); never above the model's
    position embeddings. It becomes the tokenizer's `model_max_length`, so the tokenizer saved with the model makes
    `pipeline(..., truncation=True)` cut where training did."""
    limits = [DEFAULT_MAX_SEQ_LENGTH if requested is None else requested]
    if requested is None and tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
        limits.append(tokenizer.model_max_length)
    if getattr(config, "max_position_embeddings", None):
        limits.append(config.max_position_embeddings)
    length = min(limits)
    if requested is not None and length < requested:
        logger.warning("--max_seq_length %d exceeds the model's %d positions: using %d", requested, length, length)
    tokenizer.model_max_length = length
    return length
