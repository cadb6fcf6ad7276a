"""Markdown pieces shared by the reports and the model card: metric names, table cells, numbers, the config block."""

from __future__ import annotations

import math
from typing import Any

import yaml

from hf_ft.metrics import TOP_K

# Display names of hf_ft's metrics (`hf_ft.metrics.classification_metrics`), the same in reports and cards.
# "f1" averages only the classes present in the split scored (see hf_ft.metrics), and the name says so: a reader
# comparing it with a macro F1 over all classes would otherwise be misled.
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "Macro F1 (classes present in the split)",
    f"top{TOP_K}_accuracy": f"Top-{TOP_K} accuracy",
    "majority_baseline_accuracy": "Majority-class baseline accuracy",
    "num_samples": "Samples",
}


def metric_name(key: str) -> str:
    """The display name of metric `key`, or `key` itself for a metric hf_ft does not name."""
    return METRIC_NAMES.get(key, key)


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def code(text: Any) -> str:
    return "—" if text in (None, "") else f"`{str(text).replace('`', '')}`"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def config_yaml(config: dict) -> str:
    try:
        return yaml.safe_dump(config, sort_keys=True, allow_unicode=True)
    except yaml.YAMLError as error:
        raise ValueError(
            f"summary['config'] must hold plain values (str, int, float, bool, None, lists, dicts): {error}"
        ) from error


def config_section(config_yaml: str) -> str:
    return (
        "## Configuration\n\n<details>\n<summary>Resolved arguments (click to expand)</summary>\n\n"
        f"```yaml\n{config_yaml}```\n\n</details>"
    )
