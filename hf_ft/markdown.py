"""Markdown pieces shared by the reports and the model card: table cells, numbers, the config block."""

from __future__ import annotations

import math
from typing import Any

import yaml


def metric_value(key: str, value: Any) -> str:
    """A metric as a table cell: accuracies as percentages, other scores to 4 decimals, "—" where there is none."""
    if not is_number(value):
        return "—"
    return pct(value) if "accuracy" in key else f"{value:.4f}"


def difference(key: str, value: Any) -> str:
    """A difference of two metrics, signed: accuracies in percentage points, other scores to 4 decimals."""
    if not is_number(value):
        return "—"
    return f"{100 * value:+.2f} pp" if "accuracy" in key else f"{value:+.4f}"


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ready-made cells (see `cell`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


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
