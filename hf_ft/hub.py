"""The Hub side of a run: pre-flight checks before training, the model card, and the push after it.

Pushing is checked up front (token, repo id, connection) so a run never trains for an hour and then fails to
upload, and done once at the end with the report and card. Tokens never appear in messages, logs or files.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HFValidationError, HfHubHTTPError
from huggingface_hub.utils import validate_repo_id
from .errors import InputError

# Never uploaded: resumable training state, TensorBoard logs, anything that may hold a secret (the pickled
# TrainingArguments keep `hub_token` when one was passed on the command line).
PUSH_IGNORE_PATTERNS = [
    "checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "*.pth", "training_args.bin", "*token*", ".*", "**/.*",
]

TASK_NAMES = {"image-classification": "Image Classification", "text-classification": "Text Classification"}


class HubPushError(InputError):
    """`--push_to_hub` cannot work: the message says why and what to do."""


def preflight_push(
    hub_model_id: str | None, output_dir: str, hub_token: str | None = None, hub_private_repo: bool | None = None
) -> str:
    """Check, before training, that the push at the end can succeed; return the repo id it will push to.

    Without `hub_model_id` the repo is `<your user name>/<output_dir's name>`, as in transformers.

    Raises:
        HubPushError: offline mode, no token, an invalid or read-only token, an unreachable Hub, or an invalid
            repo id; each message names the fix.
    """
    if constants.HF_HUB_OFFLINE:
        raise HubPushError("--push_to_hub needs the Hub, but HF_HUB_OFFLINE=1. Unset it, or drop --push_to_hub.")
    token = hub_token or get_token()
    if not token:
        raise HubPushError("--push_to_hub needs a Hub token: run `hf auth login`, or set HF_TOKEN.")
    try:
        user = HfApi().whoami(token=token)
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        raise HubPushError(
            f"The Hub refused the token (HTTP {status}): log in again with `hf auth login` or fix HF_TOKEN."
        ) from None
    except Exception as err:  # noqa: BLE001 - any transport failure means "cannot reach the Hub"
        raise HubPushError(
            f"Cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}); fix the network, or run without "
            "--push_to_hub."
        ) from None
    repo_id = hub_model_id or f"{user['name']}/{Path(output_dir).resolve().name}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubPushError(f"--hub_model_id `{repo_id}` is not a valid repo id ({err}). Use `namespace/name`.") from None
    if "/" not in repo_id:
        repo_id = f"{user['name']}/{repo_id}"
    role = (user.get("auth") or {}).get("accessToken", {}).get("role")
    if role == "read":
        raise HubPushError("The Hub token is read-only; create a write token and run `hf auth login` again.")
    namespace = repo_id.split("/")[0]
    namespaces = {user["name"], *(org.get("name") for org in user.get("orgs", []))}
    if namespace not in namespaces:
        raise HubPushError(
            f"Cannot push to `{repo_id}`: you ({user['name']}) are not a member of `{namespace}`. Use one of "
            f"{sorted(n for n in namespaces if n)} as namespace."
        )
    return repo_id


def write_model_card(
    output_dir: str | Path,
    *,
    base_model: str,
    dataset_name: str | None,
    task: str,
    label_names: list[str],
    results: dict[str, dict[str, float]],
    training_args: dict,
    library_name: str = "transformers",
    tags: list[str] = (),
) -> Path:
    """Write `output_dir/README.md`: a model card whose metadata carries the evaluation results (model-index).

    A local `base_model` path stays out of the metadata (it would leak the user's file system and is no Hub
    reference); the card says "a local checkpoint" instead.
    """
    output_dir = Path(output_dir)
    base_is_hub_id = _is_hub_id(base_model)
    dataset_is_hub_id = bool(dataset_name) and _is_hub_id(dataset_name)
    dataset_label = dataset_name if dataset_is_hub_id else "local data"
    eval_results = [
        EvalResult(
            task_type=task,
            task_name=TASK_NAMES.get(task, task),
            dataset_type=dataset_name if dataset_is_hub_id else "local",
            dataset_name=dataset_label,
            dataset_split=split,
            metric_type=metric,
            metric_name=metric,
            metric_value=float(value),
        )
        for split, metrics in results.items()
        for metric, value in metrics.items()
        if metric in ("accuracy", "f1", "top5_accuracy")
    ]
    card_data = ModelCardData(
        library_name=library_name,
        pipeline_tag=task,
        base_model=base_model if base_is_hub_id else None,
        datasets=[dataset_name] if dataset_is_hub_id else None,
        tags=["hf_ft", task, *tags],
        model_name=output_dir.name,
        eval_results=eval_results or None,
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{_card_body(output_dir.name, base_model, base_is_hub_id, dataset_label, task, label_names, results, training_args, library_name)}")
    path = output_dir / "README.md"
    card.save(path)
    return path


def _is_hub_id(name: str) -> bool:
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _card_body(
    name: str, base_model: str, base_is_hub_id: bool, dataset: str, task: str, label_names: list[str],
    results: dict[str, dict[str, float]], training_args: dict, library_name: str,
) -> str:
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_is_hub_id else "a local checkpoint"
    lines = [
        f"# {name}",
        "",
        f"This model is {base} fine-tuned for {task} on {dataset} with hf_ft "
        f"({len(label_names)} classes).",
        "",
        "## Results",
        "",
        "| split | " + " | ".join(_metric_names(results)) + " |",
        "|---|" + "---|" * len(_metric_names(results)),
    ]
    for split, metrics in results.items():
        lines.append(f"| {split} | " + " | ".join(_fmt(metrics.get(m)) for m in _metric_names(results)) + " |")
    lines += ["", "## Training hyperparameters", "", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in training_args.items()]
    lines += ["", "## Labels", "", ", ".join(f"`{label}`" for label in label_names[:100])]
    if len(label_names) > 100:
        lines[-1] += f", ... ({len(label_names)} in all)"
    lines += ["", "## How to use", "", "```python", "from transformers import pipeline", "",
              f'classifier = pipeline("{task}", model="<this repo id or folder>")',
              'classifier("image.jpg")', "```"]
    if library_name == "timm":
        lines += ["", "As a plain timm model:", "", "```python", "import timm", "",
                  'model = timm.create_model("hf-hub:<this repo id>", pretrained=True)  # or "local-dir:<folder>"',
                  "```"]
    lines += ["", "The evaluation report (`report.md`, per-class CSVs, confusion matrices) is in this repo."]
    return "\n".join(lines) + "\n"


def _metric_names(results: dict[str, dict[str, float]]) -> list[str]:
    names = []
    for metrics in results.values():
        names += [m for m in metrics if m not in names]
    return names


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def push_to_hub(
    output_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
    commit_message: str = "Upload fine-tuned model",
) -> str:
    """Create `repo_id` if needed and upload `output_dir` (model, card, report), without checkpoints or logs.

    Returns:
        The URL of the commit.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=str(output_dir), commit_message=commit_message, ignore_patterns=PUSH_IGNORE_PATTERNS
    )
    return commit.commit_url
