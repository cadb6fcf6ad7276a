"""Trainer checkpoints that resume completely: pick the last complete one, and load every weight or stop.

Two things transformers 5.24 gets wrong, both silently:
- `get_last_checkpoint` takes the highest-numbered `checkpoint-N` folder, even one a kill interrupted while it was
  being written (weights, but no `trainer_state.json`), and the resume then fails on the missing file.
- `Trainer._load_from_checkpoint` (resume) and `Trainer._load_best_model` (`load_best_model_at_end`) load the saved
  weights with `load_state_dict(strict=False)`. `save_pretrained` writes some families under their legacy key names
  (ViT: `vit.encoder.layer.N.attention.attention.query`, where the model has `vit.layers.N.attention.q_proj`), so
  every renamed weight is "missing", only a warning is logged, and training goes on from the base weights
  (transformers#43701).

`StrictResumeTrainer` loads checkpoints through `load_checkpoint_weights`: the key names `from_pretrained` would map,
and an error for anything that does not fit.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from .errors import InputError

logger = logging.getLogger("hf_ft")

TRAINER_STATE_FILE = "trainer_state.json"  # written last by Trainer._save_checkpoint: its presence marks a whole one
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# Any one of these holds a checkpoint's model weights (plain, sharded, PEFT adapter, FSDP).
_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, "adapter_model.safetensors", "pytorch_model.bin")


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded completely into the model being trained."""


def is_complete_checkpoint(path: str | Path) -> bool:
    """Whether `path` holds a checkpoint Trainer finished writing: weights and a readable `trainer_state.json`."""
    path = Path(path)
    try:
        state = json.loads((path / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or cut short by a kill while being written
        return False
    has_weights = any((path / name).is_file() for name in _WEIGHT_FILES) or any(path.glob("pytorch_model_fsdp*"))
    return isinstance(state, dict) and "global_step" in state and has_weights


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The highest-numbered complete `checkpoint-N` in `output_dir`, or None.

    Incomplete ones (a kill while they were being written) are skipped with a warning and left where they are.
    """
    path = Path(output_dir)
    if not path.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in path.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    for _, checkpoint in sorted(numbered, reverse=True):
        if is_complete_checkpoint(checkpoint):
            return str(checkpoint)
        logger.warning(
            "Skipping %s: it is incomplete (no readable %s or no weights; a run stopped while writing it). It is kept.",
            checkpoint, TRAINER_STATE_FILE,
        )
    return None


def load_checkpoint_weights(model: PreTrainedModel, checkpoint_dir: str | Path) -> None:
    """Load the weights saved in `checkpoint_dir` into `model`, every one of them, in place.

    Keys saved under the model's own names load directly. Otherwise (legacy names that `save_pretrained` writes for
    Hub compatibility) the checkpoint is read by `from_pretrained`, which applies the same key conversion as for any
    checkpoint, and its weights are copied over.

    Raises:
        CheckpointError: a weight of the model is not in the checkpoint, the checkpoint holds weights the model does
            not have, or shapes differ.
    """
    checkpoint_dir = Path(checkpoint_dir)
    expected = model.state_dict()
    weights = _read_weights(checkpoint_dir)
    if set(weights) != set(expected):
        weights = _through_from_pretrained(model, checkpoint_dir)
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(weights) if weights[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{checkpoint_dir} does not fit {type(model).__name__}: {len(missing)} weights missing (e.g. "
            f"{missing[:3]}), {len(unexpected)} unexpected ({unexpected[:3]}), {len(mismatched)} of another shape "
            f"({mismatched[:3]}). Resume with the model it was trained from, or start a new --output_dir."
        )
    model.load_state_dict(weights, strict=True)


def _read_weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    index = checkpoint_dir / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return {key: value for shard in shards for key, value in load_file(checkpoint_dir / shard).items()}
    return load_file(checkpoint_dir / SAFE_WEIGHTS_NAME)


def _through_from_pretrained(model: PreTrainedModel, checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    loaded, info = type(model).from_pretrained(
        checkpoint_dir, config=model.config, output_loading_info=True, dtype=model.dtype
    )
    problems = {kind: info.get(kind) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)}
    if problems:
        details = "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {sorted(keys)[:3]})" for kind, keys in problems.items())
        raise CheckpointError(
            f"{checkpoint_dir} does not fit {type(model).__name__}: {details}. Resume with the model it was trained "
            "from, or start a new --output_dir."
        )
    return loaded.state_dict()


class StrictResumeTrainer(Trainer):
    """A `Trainer` whose resume and `load_best_model_at_end` load every weight of a checkpoint, or raise.

    Applies to plain `PreTrainedModel` checkpoints in safetensors, which is every single-process and DDP run; PEFT
    adapters (PEFT's own `load_adapter`), FSDP and DeepSpeed checkpoints keep Trainer's loaders. These two methods
    are private Trainer API; `tests/test_checkpoints.py` pins what they do.

    `train_sampler` replaces the Trainer's shuffling of the training set (e.g. `hf_ft.imbalance.ClassBalancedSampler`);
    it goes in through the private `_get_train_sampler`, pinned by `tests/test_imbalance.py`.
    """

    def __init__(self, *args, train_sampler: torch.utils.data.Sampler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_sampler = train_sampler

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is not None:
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if self._loads_plain_weights(model, resume_from_checkpoint):
            logger.info("Loading the model weights of %s (all of them, or an error)", resume_from_checkpoint)
            load_checkpoint_weights(model, resume_from_checkpoint)
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        checkpoint = self.state.best_model_checkpoint
        if self._loads_plain_weights(self.model, checkpoint):
            logger.info("Loading the best model, %s (score %s)", checkpoint, self.state.best_metric)
            load_checkpoint_weights(self.model, checkpoint)
        else:
            super()._load_best_model()

    def _loads_plain_weights(self, model, checkpoint_dir) -> bool:
        path = Path(checkpoint_dir)
        saved = (path / SAFE_WEIGHTS_NAME).is_file() or (path / SAFE_WEIGHTS_INDEX_NAME).is_file()
        sharded_training = self.is_deepspeed_enabled or self.is_fsdp_enabled
        return saved and not sharded_training and isinstance(model, PreTrainedModel)  # a PeftModel is not one
