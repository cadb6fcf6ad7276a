"""The Hub side of a run: checkpoint sources and pre-flight checks before training, the model card, and the push
after it.

`--push_to_hub` is checked up front (`--hub_strategy`, repo id, offline mode, token, connection, write access) so a
run never trains for an hour and then fails to upload; the push itself happens once, at the end, with the report and
the card.
Tokens never appear in messages, logs or files.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from huggingface_hub import (
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    constants,
    get_token,
    metadata_load,
    try_to_load_from_cache,
)
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers.utils import CONFIG_NAME

from . import markdown as md
from .errors import InputError

if TYPE_CHECKING:
    from .report import TaskReport

try:  # The HTTP library huggingface_hub raises connection errors from, unwrapped: httpx2 from 2.0 on, httpx in 1.x.
    from httpx2 import TransportError
except ImportError:
    from httpx import TransportError

logger = logging.getLogger("hf_ft")

# Never uploaded. Checkpoints hold optimizer state (large, and only useful to resume); TensorBoard logs are local
# diagnostics; the pickled TrainingArguments (training_args.bin) keep `hub_token` when one was passed.
_SKIPPED_SUFFIXES = (".pt", ".pth")
_SKIPPED_NAMES = {"training_args.bin"}
# Files with "token" in their name may hold a secret, except the tokenizer files a text model needs.
_TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "added_tokens")

# Metrics that describe the data or the run, not the model: they stay out of the card's model-index.
_NOT_MODEL_METRICS = {"num_samples", "loss", "runtime", "samples_per_second", "steps_per_second", "epoch"}
# The Hub's license fields, copied together from the base model's card.
_LICENSE_FIELDS = ("license", "license_name", "license_link")
# How long the license look-up may wait for the Hub: the card must not stall a finished run.
_LICENSE_LOOKUP_TIMEOUT_S = 10
# Training-argument or fact names that hold a secret, and values that look like a Hub token.
_SECRET_KEY = re.compile(r"(token|secret|password|api_key)$", re.IGNORECASE)
_HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_TASK_NAMES = {
    "image-classification": "Image Classification",
    "text-classification": "Text Classification",
    "token-classification": "Token Classification",
    "text-generation": "Text Generation",
}
_EXAMPLE_INPUTS = {
    "image-classification": '"path/or/url/to/image.jpg"',
    "text-classification": '"This was a great movie!"',
    "token-classification": '"My name is Sarah and I live in London."',
    "text-generation": '[{"role": "user", "content": "Hello!"}], max_new_tokens=64',
    "object-detection": '"path/or/url/to/image.jpg", threshold=0.5',
}
_PIPELINE_NAMES = {"text-generation": "generator", "object-detection": "detector"}


@dataclass(frozen=True)
class CardFacts:
    """What a task tells the model card about its model (the results come from the run's `report.TaskReport`)."""

    task: str  # pipeline tag, e.g. "text-classification"
    base_model: str  # `model_name_or_path` the run started from (Hub id or local path)
    dataset_name: str | None  # Hub data set id, or None for local data
    label_names: list[str]  # by label id
    # What a user must know to use the model, for the "Model details" table, e.g. {"image_size": "224x224"}.
    facts: dict[str, Any] = field(default_factory=dict)
    library_name: str = "transformers"  # or "timm" (adds the timm snippet), "peft" (an adapter folder)


class HubPushError(InputError):
    """`--push_to_hub` cannot work: the message says why and what to do (an `InputError`, so a `ValueError`)."""


@dataclass(frozen=True)
class _BaseModel:
    """What the card can truthfully say about the checkpoint a run started from."""

    # The Hub repo it is, or (`derived`) that a local checkpoint records it came from; None when nothing says.
    hub_id: str | None
    derived: bool = False
    # `_LICENSE_FIELDS` as the base model's card gives them; empty when unknown.
    license: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint sources
# ---------------------------------------------------------------------------------------------------------------


def check_model_source(model_name_or_path: str, *, revision: str = "main", cache_dir: str | None = None) -> None:
    """Fail early, with the fix, for a checkpoint that cannot be found, before anything is downloaded or decoded.

    Raises:
        FileNotFoundError: a path that looks local (absolute, ./, ~, or not a valid Hub id) does not exist.
        InputError: a Hub id under `HF_HUB_OFFLINE=1` that is not in the Hugging Face cache.
    """
    if Path(model_name_or_path).expanduser().exists():
        return
    try:
        validate_repo_id(model_name_or_path)
    except HFValidationError:
        raise FileNotFoundError(
            f"Checkpoint {model_name_or_path} does not exist: it is neither a local directory nor a valid Hub id."
        ) from None
    if model_name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"Checkpoint directory {model_name_or_path} does not exist.")
    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(model_name_or_path, CONFIG_NAME, cache_dir=cache_dir, revision=revision)
        if not isinstance(cached, str):
            raise InputError(offline_message(model_name_or_path))


def offline_message(source: str) -> str:
    """The one line for a checkpoint that offline mode keeps from being downloaded."""
    return (
        f"Checkpoint `{source}` is not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
        "forbids downloading it. Unset HF_HUB_OFFLINE, or point --model_name_or_path at a local checkpoint."
    )


# ---------------------------------------------------------------------------------------------------------------
# Pre-flight
# ---------------------------------------------------------------------------------------------------------------


def check_hub_strategy(strategy: str | Enum) -> None:
    """Refuse a `--hub_strategy` that hf_ft would silently ignore: it pushes once, at the end, itself.

    Call it when `--push_to_hub` is set (the Trainer never pushes: `runs.start` switches that off).

    Args:
        strategy: `TrainingArguments.hub_strategy` (a `HubStrategy`) or its value, e.g. "every_save".

    Raises:
        HubPushError: anything but "end"; the one-line message names the flag, the value and the fix.
    """
    value = strategy.value if isinstance(strategy, Enum) else str(strategy)
    if value != "end":
        raise HubPushError(
            f"--hub_strategy {value} is not supported: hf_ft pushes once, at the end of the run (model, card and "
            "report), never during training. Drop --hub_strategy or pass --hub_strategy end."
        )


def preflight_push(
    hub_model_id: str | None, output_dir: str, hub_token: str | None = None, hub_private_repo: bool | None = None
) -> str:
    """Check, before training, that the push at the end can succeed, and return the repo id it will push to.

    Without `hub_model_id` the repo is `<your user name>/<output_dir's name>`, as transformers' Trainer names it;
    an id without a namespace goes under your user name.

    Args:
        hub_model_id: `--hub_model_id`, or None.
        output_dir: `--output_dir` (only its last component is used).
        hub_token: `--hub_token`; None uses the token from `HF_TOKEN` or `hf auth login`.
        hub_private_repo: `--hub_private_repo`; when True, an existing public repo is refused (the upload would
            be public).

    Returns:
        The full `namespace/name` repo id.

    Raises:
        HubPushError: invalid repo id, offline mode, no token, a token the Hub rejects, an unreachable Hub, a
            token or membership without write access to the namespace, or a public repo where a private one was
            asked for. Each message is one line that names the fix and never contains the token.
    """
    name = _check_repo_id(hub_model_id, output_dir)
    if constants.HF_HUB_OFFLINE:  # read at call time: what huggingface_hub's own `is_offline_mode()` returns
        raise HubPushError(
            "--push_to_hub needs the Hub, but offline mode is on (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1): unset "
            "it, or run without --push_to_hub."
        )
    token = hub_token or get_token()
    if not token:
        raise HubPushError("--push_to_hub needs a Hub token: run `hf auth login`, set HF_TOKEN, or pass --hub_token.")
    api = HfApi(token=token)
    user = _whoami(api, token, from_flag=bool(hub_token))
    repo_id = name if "/" in name else f"{user['name']}/{name}"
    _check_write_access(user, repo_id.split("/")[0])
    if hub_private_repo:
        _check_not_public(api, repo_id)
    return repo_id


def _check_repo_id(hub_model_id: str | None, output_dir: str) -> str:
    """The repo id or name the user asked for (or output_dir's name), validated offline as the Hub would."""
    name = hub_model_id or Path(output_dir).absolute().name
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        where = "--hub_model_id" if hub_model_id else f"the output_dir name `{name}` (the default repo name)"
        raise HubPushError(
            f"{where} is not a valid Hub repo id: {err} Pass --hub_model_id <namespace>/<name>."
        ) from None
    return name


def _whoami(api: HfApi, token: str, *, from_flag: bool) -> dict:
    """`HfApi.whoami`, with its failures turned into one-line `HubPushError`s (the token is redacted)."""
    fix = "pass a valid --hub_token" if from_flag else "run `hf auth login --force` with a valid token, or fix HF_TOKEN"
    try:
        return api.whoami(token=token)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise HubPushError(f"The Hub at {api.endpoint} rejected the token: {fix}.") from None
        raise HubPushError(
            f"The Hub at {api.endpoint} answered HTTP {status} to the token check: retry later, or run without "
            "--push_to_hub."
        ) from None
    except (TransportError, OSError) as err:  # OSError covers OfflineModeIsEnabled and proxy/socket errors
        reason = f"{type(err).__name__}: {err}".replace(token, "<token>")
        raise HubPushError(
            f"Cannot reach the Hub at {api.endpoint}: {reason}. Run without --push_to_hub, or fix the network."
        ) from None


def _check_write_access(user: dict, namespace: str) -> None:
    """Refuse what whoami's answer already shows cannot work: a read-only token, or no write role in `namespace`.

    Classic tokens have role "read" or "write"; fine-grained ones list, per user or org, the permissions they grant
    ("repo.write" creates and updates repos). Org members with the "read" role cannot create repos there.
    """
    access = (user.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    if role == "read":
        raise HubPushError(
            "The Hub token is read-only: create a write token at https://huggingface.co/settings/tokens and run "
            "`hf auth login` with it."
        )
    if namespace != user["name"]:
        orgs = {org.get("name"): org for org in user.get("orgs") or []}
        if namespace not in orgs:
            raise HubPushError(
                f"Cannot push to `{namespace}`: you ({user['name']}) are not a member of it. Pass --hub_model_id "
                f"with one of {sorted([user['name'], *orgs])} as namespace."
            )
        if orgs[namespace].get("roleInOrg") == "read":
            raise HubPushError(
                f"Your role in `{namespace}` is read-only: ask an admin for write access, or push to your own "
                f"namespace (--hub_model_id {user['name']}/<name>)."
            )
    if role == "fineGrained" and not _fine_grained_can_write(access.get("fineGrained") or {}, namespace):
        raise HubPushError(
            f"The fine-grained Hub token cannot write to `{namespace}`: give it the 'Write access to contents/settings "
            f"of all repos' permission for `{namespace}` at https://huggingface.co/settings/tokens."
        )


def _fine_grained_can_write(grants: dict, namespace: str) -> bool:
    return any(
        scope.get("entity", {}).get("name") == namespace and "repo.write" in scope.get("permissions", [])
        for scope in grants.get("scoped", [])
    )


def _check_not_public(api: HfApi, repo_id: str) -> None:
    """Refuse to push a run meant to be private into an existing public repo (create_repo keeps its visibility)."""
    try:
        info = api.repo_info(repo_id)
    except RepositoryNotFoundError:
        return  # created private at the end
    if not info.private:
        raise HubPushError(
            f"`{repo_id}` exists and is public, but --hub_private_repo is set: make it private on the Hub, or pass "
            "another --hub_model_id."
        )


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------


def write_model_card(
    output_dir: str | Path,
    card: CardFacts,
    task_report: TaskReport,
    *,
    training_args: dict,
    repo_id: str | None = None,
) -> Path:
    """Write `output_dir/README.md`: a model card whose metadata carries the evaluation results (model-index).

    Local paths stay out of the card: a local `base_model` or data set would leak the user's file system and is no
    Hub reference. A local base is named by the Hub repo it records as its origin (a Hub cache snapshot, its
    README's `base_model`, or its config's `_name_or_path`), else as "a local checkpoint"; local data as "local
    data". The license is the base model's, when its card is known (a local base: its README.md; a Hub id: the
    Hub, or the local Hub cache when offline); otherwise the card names none and says so. Nothing here fails or
    waits long for the Hub.

    Args:
        output_dir: The run's output dir; the card is written there.
        card: What the task says about the model.
        task_report: The run's results (`metrics`), their names (`columns`), model-index types and note.
        training_args: Key hyperparameters for the card's table (learning rate, epochs, batch sizes, seed, ...).
        repo_id: The Hub repo the card is pushed to, for the usage snippets; None when not pushed.

    Returns:
        The path of the card.
    """
    output_dir = Path(output_dir)
    base = _resolve_base_model(card.base_model)
    dataset_name = card.dataset_name
    dataset_on_hub = dataset_name is not None and _is_hub_id(dataset_name)
    model_name = repo_id.split("/")[-1] if repo_id else output_dir.absolute().name
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base.hub_id,
        datasets=[dataset_name] if dataset_on_hub else None,
        library_name=card.library_name,
        pipeline_tag=card.task,
        tags=list(dict.fromkeys(["hf_ft", card.task])),
        eval_results=_eval_results(card.task, dataset_name if dataset_on_hub else None, task_report) or None,
        **base.license,
    )
    body = _card_body(
        model_name,
        base=base,
        dataset=f"[{dataset_name}](https://huggingface.co/datasets/{dataset_name})" if dataset_on_hub else "local data",
        card=card,
        task_report=task_report,
        training_args=training_args,
        # Not the output_dir as given: an absolute path would leak the user's file system if pushed later.
        model_ref=repo_id or f"path/to/{model_name}",
        on_hub=repo_id is not None,
    )
    model_card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    path = output_dir / "README.md"
    model_card.save(path)
    return path


def _is_hub_id(name: str) -> bool:
    """True for a Hub repo id; False for anything that exists locally or could not be one."""
    return not Path(name).expanduser().exists() and _valid_repo_id(name) is not None


def _resolve_base_model(base_model: str) -> _BaseModel:
    """The base model's Hub id (its own, or the origin a local checkpoint records) and its license."""
    if _is_hub_id(base_model):
        return _BaseModel(base_model, license=_hub_license(base_model))
    path = Path(base_model).expanduser()
    if not path.is_dir():
        return _BaseModel(None)
    readme = _readme_metadata(path)
    license_fields = _license_fields(readme)
    snapshot_of = _cache_snapshot_repo_id(path)
    if snapshot_of:
        return _BaseModel(snapshot_of, license=license_fields)
    return _BaseModel(_recorded_origin(path, readme), derived=True, license=license_fields)


def _cache_snapshot_repo_id(path: Path) -> str | None:
    """The model repo whose Hub cache snapshot `path` is (`.../models--org--name/snapshots/<revision>`), or None."""
    parts = path.resolve().parts
    if len(parts) < 3 or parts[-2] != "snapshots" or not parts[-3].startswith("models--"):
        return None
    # Repo ids cannot contain "--" (validate_repo_id), so the cache's folder name maps back to one id.
    return _valid_repo_id(parts[-3].removeprefix("models--").replace("--", "/"))


def _recorded_origin(path: Path, readme: dict) -> str | None:
    """The Hub repo a local checkpoint says it came from: its card's `base_model` (a card like the one this module
    writes), else its config's `_name_or_path` (transformers 4.x wrote the source it was loaded from)."""
    base = readme.get("base_model")
    # Several base models (a merge) name no single origin.
    candidates = [base[0] if isinstance(base, list) and len(base) == 1 else base]
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = {}
    if isinstance(config, dict):
        candidates.append(config.get("_name_or_path"))
    for candidate in candidates:
        # A path recorded on another machine is no Hub reference, and a local one would leak this file system.
        if isinstance(candidate, str) and _is_hub_id(candidate):
            return candidate
    return None


def _valid_repo_id(name: str) -> str | None:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _readme_metadata(model_dir: Path) -> dict:
    """The YAML metadata of `model_dir/README.md`; empty when there is none or it cannot be read."""
    try:
        metadata = metadata_load(model_dir / "README.md")
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def _license_fields(metadata: dict) -> dict[str, str]:
    """The license fields of a card's metadata that a derived card can carry over as they are."""
    fields = {name: metadata[name] for name in _LICENSE_FIELDS if isinstance(metadata.get(name), str)}
    if "license" not in fields:
        return {}
    # A relative link ("LICENSE") points into the base model's repo: in this card it would point nowhere.
    if not fields.get("license_link", "https://").startswith(("https://", "http://")):
        del fields["license_link"]
    return fields


def _hub_license(repo_id: str) -> dict[str, str]:
    """The license fields of a Hub model's card: asked from the Hub when online, else read from the local Hub cache.

    Never raises: an unreachable Hub, a missing or private repo, or offline mode without a cached card all mean
    "unknown" (an empty dict), and the card then names no license.
    """
    if not constants.HF_HUB_OFFLINE:
        try:
            info = HfApi().model_info(repo_id, timeout=_LICENSE_LOOKUP_TIMEOUT_S)
            return _license_fields(info.card_data.to_dict() if info.card_data else {})
        # OSError: offline-mode and socket errors; ValueError: an answer that is not the JSON expected.
        except (HfHubHTTPError, TransportError, OSError, ValueError) as err:
            logger.info("No license from the Hub for %s (%s); trying the local Hub cache", repo_id, type(err).__name__)
    cached = try_to_load_from_cache(repo_id, "README.md")
    return _license_fields(_readme_metadata(Path(cached).parent)) if isinstance(cached, str) else {}


def _eval_results(task: str, hub_dataset: str | None, task_report: TaskReport) -> list[EvalResult]:
    """One `EvalResult` per split and model metric; local data is named as such (the Hub needs a data set entry)."""
    eval_results = []
    for split, metrics in task_report.metrics.items():
        for metric, value in metrics.items():
            if not _is_model_metric(metric, value):
                continue
            metric_type, metric_args = task_report.card_metric_types.get(metric, (metric, None))
            eval_results.append(
                EvalResult(
                    task_type=task,
                    task_name=_TASK_NAMES.get(task, task),
                    dataset_type=hub_dataset or "local",
                    dataset_name=hub_dataset or "local data",
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=task_report.columns.get(metric, metric),
                    metric_args=metric_args,
                    metric_value=float(value),
                )
            )
    return eval_results


def _is_model_metric(name: str, value: object) -> bool:
    # Baselines (e.g. majority_baseline_accuracy) describe the data, not this model.
    return isinstance(value, float) and name not in _NOT_MODEL_METRICS and "baseline" not in name


def _card_body(
    model_name: str,
    *,
    base: _BaseModel,
    dataset: str,
    card: CardFacts,
    task_report: TaskReport,
    training_args: dict,
    model_ref: str,
    on_hub: bool,
) -> str:
    """The Markdown under the metadata: what the model is, details, results, training, labels, how to use it."""
    task_name = _TASK_NAMES.get(card.task, card.task).lower()
    labels = f", with {len(card.label_names)} labels" if card.label_names else ""  # a generative model has none
    sections = [
        f"# {model_name}\n\nThis model is {_base_phrase(base)} fine-tuned with hf_ft for {task_name} on {dataset}"
        f"{labels}. {_license_sentence(base)}",
    ]
    if card.facts:
        sections.append("## Model details\n\n" + md.table(["detail", "value"], _public_rows(card.facts)))
    sections += [
        "## Results\n\n" + _results_table(task_report),
        "## Training hyperparameters\n\n" + md.table(["hyperparameter", "value"], _public_rows(training_args)),
        *(["## Labels\n\n" + _labels(card.label_names)] if card.label_names else []),
        "## How to use\n\n" + _usage(card.task, card.library_name, model_ref, on_hub),
    ]
    return "\n\n".join(sections) + "\n"


def _base_phrase(base: _BaseModel) -> str:
    if base.hub_id is None:
        return "a local checkpoint"
    link = f"[{base.hub_id}](https://huggingface.co/{base.hub_id})"
    # Derived: a local checkpoint that names its origin may itself be a fine-tuned copy of it.
    return f"a local checkpoint derived from {link}" if base.derived else link


def _license_sentence(base: _BaseModel) -> str:
    if base.license:
        return f"License: `{base.license['license']}`, as given by the base model's card."
    return "The base model's license is unknown here, so this card names none: check it before reusing the model."


def _results_table(task_report: TaskReport) -> str:
    results = task_report.metrics
    metrics = list(dict.fromkeys(metric for split_metrics in results.values() for metric in split_metrics))
    rows = [[split, *(_metric_cell(split_metrics.get(m)) for m in metrics)] for split, split_metrics in results.items()]
    titles = {"num_samples": "Samples", **task_report.columns}
    table = md.table(["split", *(titles.get(m, m) for m in metrics)], rows)
    return table + (f"\n\n{task_report.card_note}" if task_report.card_note else "")


def _public_rows(values: dict[str, Any]) -> list[list[str]]:
    """Table rows of `values` without secrets or local paths: the caller picks what goes in, and the card may be
    public (a token or absolute path must never reach it, as everywhere else in hf_ft)."""
    return [
        [md.cell(key), md.cell(_public_value(value))]
        for key, value in values.items()
        if not _SECRET_KEY.search(str(key)) and not _HUB_TOKEN.search(str(value))
    ]


def _public_value(value: Any) -> str:
    if value is None:
        return "—"
    text = str(value)
    if isinstance(value, (str, os.PathLike)) and (os.path.isabs(text) or text.startswith("~")):
        return f".../{Path(text).name}"  # the file system of the machine it ran on stays out
    return text


def _labels(label_names: list[str], shown: int = 100) -> str:
    text = ", ".join(f"`{label}`" for label in label_names[:shown])
    if len(label_names) > shown:
        text += f", ... ({len(label_names)} in all; see `config.json` `id2label`)"
    return text


def _usage(task: str, library_name: str, model_ref: str, on_hub: bool) -> str:
    name = _PIPELINE_NAMES.get(task, "classifier")
    call = f"{name}({_EXAMPLE_INPUTS[task]})\n" if task in _EXAMPLE_INPUTS else ""
    if library_name == "peft":
        # An adapter folder needs its base model rebuilt with this run's labels; `merged/` (merge_adapter) does not.
        return (
            "```python\nfrom hf_ft.peft import load_adapter_model\n\n"
            f'model = load_adapter_model(None, "{model_ref}")  # base and labels from the folder\n```\n\n'
            "With `merge_adapter: true` the run also wrote `merged/`, a plain model for "
            f'`pipeline("{task}", model=".../merged")`.'
        )
    snippet = (
        "```python\nfrom transformers import pipeline\n\n"
        f'{name} = pipeline("{task}", model="{model_ref}")\n{call}```'
    )
    if library_name == "timm":
        # Saved through transformers' TimmWrapper, so the same files load in timm directly.
        prefix = "hf-hub" if on_hub else "local-dir"
        snippet += (
            "\n\nOr as a plain timm model:\n\n```python\nimport timm\n\n"
            f'model = timm.create_model("{prefix}:{model_ref}", pretrained=True)\n```'
        )
    return snippet


def _metric_cell(value: object) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------------------------------


def files_to_push(output_dir: str | Path) -> list[str]:
    """The files of `output_dir` that go to the Hub, as sorted POSIX paths relative to it.

    Everything a user of the model needs (weights, configs, preprocessor/tokenizer files, card, report, args.yaml)
    goes; checkpoints, TensorBoard runs, optimizer states, training_args.bin, hidden files and anything that looks
    like a token file stay local.
    """
    root = Path(output_dir)
    relative = (path.relative_to(root) for path in root.rglob("*") if path.is_file())
    return sorted(path.as_posix() for path in relative if _is_pushed(path))


def _is_pushed(path: Path) -> bool:
    top, name = path.parts[0], path.name
    in_skipped_dir = len(path.parts) > 1 and (top == "runs" or top.startswith("checkpoint-"))
    if in_skipped_dir or any(part.startswith(".") for part in path.parts):
        return False
    if name in _SKIPPED_NAMES or name.endswith(_SKIPPED_SUFFIXES):
        return False
    return "token" not in name.lower() or name.startswith(_TOKENIZER_FILES)


def push_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload fine-tuned model",
) -> str:
    """Create `repo_id` if needed, then upload the model, card and report of `output_dir`.

    What goes is `files_to_push(output_dir)`, in one commit (huggingface_hub 2.x with hf_xet splits very large
    uploads into several). Files already in the repo and not in `output_dir` stay there.

    Args:
        output_dir: The finished run's output dir.
        repo_id: `namespace/name`, as `preflight_push` returned it.
        token: Hub token; None uses `HF_TOKEN` or the one from `hf auth login`.
        private: Visibility of a newly created repo (None: the Hub's default). An existing repo keeps its own.
        commit_message: The commit's title.

    Returns:
        The URL of the commit.

    Raises:
        huggingface_hub.errors.HfHubHTTPError: The Hub refused the repo creation or the upload.
    """
    files = files_to_push(output_dir)
    logger.info("Pushing %d files of %s to %s", len(files), output_dir, repo_id)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    # An allow-list of the exact files (glob-escaped: the client matches patterns), so the rule lives in one place.
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        allow_patterns=[glob.escape(file) for file in files],
        commit_message=commit_message,
    )
    return commit.commit_url
