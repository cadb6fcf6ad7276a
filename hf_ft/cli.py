"""Running a recipe from the command line: bad input is one line on stderr, not a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from .args import parse_args
from .errors import InputError


def run_recipe(
    main: Callable[..., Any], dataclass_types: tuple[type, ...], *, defaults: dict[str, Any] | None = None
) -> None:
    """Parse `--config` + command line into `dataclass_types` (over `defaults`), then call `main(*arguments)`.

    Bad input (`InputError`, a missing file, and any `ValueError` while the arguments are parsed: TrainingArguments
    checks its own fields that way) exits with status 2 and a one-line `error: ...` message that names the problem
    and the fix; `HF_FT_TRACEBACK=1` shows the full traceback instead.
    """
    try:
        arguments = parse_args(dataclass_types, defaults=defaults)
    except ValueError as err:
        _exit_with(err)
    try:
        main(*arguments)
    except (InputError, FileNotFoundError) as err:
        _exit_with(err)


def _exit_with(err: Exception) -> None:
    if os.environ.get("HF_FT_TRACEBACK") == "1":
        raise err
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever the library wrote
    sys.exit(2)
