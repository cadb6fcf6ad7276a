"""Metrics that work offline: `evaluate` modules shipped inside hf_ft.

`evaluate.load("accuracy")` fetches the metric script from the Hub, so it fails offline (and is slow unless
`HF_HUB_OFFLINE=1`). hf_ft ships its own modules, `hf_ft/metrics/<name>/<name>.py`, each an
`evaluate.Metric` over scikit-learn with the compute arguments of the Hub metric of the same name, and loads
them by local path: nothing is downloaded, ever.

    >>> from hf_ft import metrics
    >>> metrics.load("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0], average="macro")

The tasks build their `compute_metrics` on these (`hf_ft.classification` for single-label classification).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

_MODULES_DIR = Path(__file__).resolve().parent


def shipped_names() -> list[str]:
    """Names of the metric modules shipped with hf_ft (a folder `<name>/` holding `<name>.py`)."""
    return sorted(p.name for p in _MODULES_DIR.iterdir() if (p / f"{p.name}.py").is_file())


@functools.cache
def load(name: str) -> evaluate.EvaluationModule:
    """Load a metric module shipped with hf_ft, offline, once per process.

    The module is cached: Trainer calls `compute_metrics` at every evaluation, and loading copies and imports
    a script each time. Use `compute(...)` on it (not `add_batch`), so no state carries over between callers.

    Args:
        name: One of `shipped_names()`, e.g. "accuracy", "f1", "precision", "recall", "top_k_accuracy",
            "confusion_matrix".

    Raises:
        ValueError: `name` is not a shipped module.
    """
    # Imported here: `import evaluate` pulls in transformers' pipelines (seconds), which only a load needs.
    import evaluate

    names = shipped_names()
    if name not in names:
        raise ValueError(f"Unknown metric {name!r}. hf_ft ships these (they work offline): {', '.join(names)}.")
    # keep_in_memory: no cache files or file locks on disk, so processes evaluating side by side (DDP) cannot
    # collide on them, and nothing is left behind.
    # evaluate.load draws from Python's global RNG. The first evaluation of a resumed run loads the modules
    # later than the unbroken run did, so that draw would shift the run's augmentations: keep the state.
    rng_state = random.getstate()
    try:
        return evaluate.load(str(_MODULES_DIR / name), keep_in_memory=True)
    finally:
        random.setstate(rng_state)
