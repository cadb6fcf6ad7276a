"""Hub pre-flight, model card and push, with the Hub client replaced at its boundary (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from hf_ft import hub

TOKEN = "hf_secretsecretsecret"
USER = {"name": "alice", "orgs": [{"name": "acme"}], "auth": {"accessToken": {"role": "write"}}}


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "get_token", lambda: TOKEN)
    monkeypatch.setattr(HfApi, "whoami", lambda self, token=None, **kw: USER)


def test_preflight_resolves_repo_id_from_user_and_output_dir(online):
    assert hub.preflight_push(None, "/runs/vit-beans") == "alice/vit-beans"
    assert hub.preflight_push("acme/model", "/runs/x") == "acme/model"
    assert hub.preflight_push("model", "/runs/x") == "alice/model"


@pytest.mark.parametrize(
    "setup, message",
    [
        ("offline", "HF_HUB_OFFLINE=1"),
        ("no_token", "hf auth login"),
        ("unreachable", "Cannot reach the Hub"),
        ("refused", "refused the token"),
        ("read_only", "read-only"),
        ("bad_id", "not a valid repo id"),
        ("foreign_namespace", "not a member of `bob`"),
    ],
)
def test_preflight_failures_name_the_fix_and_never_the_token(online, monkeypatch, setup, message):
    repo = {"bad_id": "alice/bad name!!", "foreign_namespace": "bob/model"}.get(setup)
    if setup == "offline":
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    if setup == "no_token":
        monkeypatch.setattr(hub, "get_token", lambda: None)
    if setup == "unreachable":
        def whoami(self, token=None, **kw):
            raise ConnectionError(f"connection refused while sending {token}")
        monkeypatch.setattr(HfApi, "whoami", whoami)
    if setup == "refused":
        def whoami(self, token=None, **kw):
            import httpx2

            response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/api/whoami-v2"))
            raise HfHubHTTPError(f"401 for token {token}", response=response)
        monkeypatch.setattr(HfApi, "whoami", whoami)
    if setup == "read_only":
        monkeypatch.setattr(HfApi, "whoami", lambda self, token=None, **kw: {**USER, "auth": {"accessToken": {"role": "read"}}})
    with pytest.raises(hub.HubPushError, match=message) as caught:
        hub.preflight_push(repo, "/runs/x", hub_token=None if setup == "no_token" else TOKEN)
    assert TOKEN not in str(caught.value)


def make_output_dir(root: Path) -> Path:
    for name in ("model.safetensors", "config.json", "README.md", "report.md", "eval_results.json",
                 "test_per_class.csv", "test_confusion_matrix.png", "args.yaml", "training_args.bin",
                 "optimizer.pt", "checkpoint-5/model.safetensors", "checkpoint-5/optimizer.pt",
                 "runs/Nov23/events.out.tfevents.1", ".hf_token"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return root


def test_push_creates_the_repo_then_uploads_model_card_and_report_only(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw)))

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kw):
        from huggingface_hub.utils import filter_repo_objects

        root = Path(folder_path)
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
        uploaded = sorted(filter_repo_objects(files, ignore_patterns=ignore_patterns))  # what the real client keeps
        calls.append(("upload_folder", repo_id, uploaded))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = hub.push_to_hub(make_output_dir(tmp_path / "out"), "alice/model", token=TOKEN, private=True)
    assert url.endswith("alice/model/commit/abc")
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[0][2]["exist_ok"] is True
    assert calls[1][2] == sorted([
        "README.md", "args.yaml", "config.json", "eval_results.json", "model.safetensors", "report.md",
        "test_confusion_matrix.png", "test_per_class.csv",
    ])


def test_model_card_round_trips_with_results(tmp_path):
    results = {"validation": {"accuracy": 0.9, "f1": 0.8}, "test": {"accuracy": 0.85, "f1": 0.75, "num_samples": 10}}
    path = hub.write_model_card(
        tmp_path, base_model="google/vit-base-patch16-224-in21k", dataset_name="AI-Lab-Makerere/beans",
        task="image-classification", label_names=["a", "b"], results=results,
        training_args={"learning_rate": 2e-5, "seed": 42},
    )
    card = ModelCard.load(path)
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert values == {("validation", "accuracy"): 0.9, ("validation", "f1"): 0.8, ("test", "accuracy"): 0.85,
                      ("test", "f1"): 0.75}
    assert card.data.base_model == "google/vit-base-patch16-224-in21k"
    assert card.data.datasets == ["AI-Lab-Makerere/beans"]
    assert 'pipeline("image-classification"' in card.text and "timm.create_model" not in card.text


def test_model_card_hides_local_paths(tmp_path):
    local = tmp_path / "checkpoints" / "my-model"
    local.mkdir(parents=True)
    path = hub.write_model_card(
        tmp_path / "out", base_model=str(local), dataset_name=None, task="image-classification",
        label_names=["a", "b"], results={"test": {"accuracy": 1.0}}, training_args={}, library_name="timm",
    )
    text = path.read_text()
    assert str(tmp_path) not in text
    card = ModelCard.load(path)
    assert card.data.base_model is None and card.data.library_name == "timm"
    assert "a local checkpoint" in card.text and "timm.create_model" in card.text
