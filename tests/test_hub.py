"""Hub pre-flight, model card and push, against a fake Hub on localhost (no network).

The fake Hub answers the few HTTP endpoints these functions use (whoami, repo info, repo creation, the plain
commit API), so the real `HfApi` client runs end to end: token lookup, error mapping, the file selection that
`upload_folder` applies, the order of calls, and what reaches the server.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants
from transformers.trainer_utils import HubStrategy

from hf_ft import classification, hub
from hf_ft.report import TaskReport

TOKEN = "hf_SecretTestToken0123456789"
USER = {
    "type": "user",
    "name": "alice",
    "orgs": [{"name": "acme", "roleInOrg": "write"}, {"name": "readers", "roleInOrg": "read"}],
    "auth": {"type": "access_token", "accessToken": {"displayName": "ci", "role": "write"}},
}


class FakeHub:
    """The Hub's HTTP API as far as hf_ft.hub uses it; records every request, answers as configured."""

    def __init__(self):
        self.url = ""  # set once the server listens
        self.requests: list[dict] = []
        self.whoami = (200, USER)
        self.repo_info = (404, None)  # the repo does not exist yet

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, dict]:
        self.requests.append({"method": method, "path": path, "auth": headers.get("authorization"), "body": body})
        if path == "/api/whoami-v2":
            return (*self.whoami, {})
        if method == "GET" and path.startswith("/api/models/"):
            status, info = self.repo_info
            return status, info or {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        if path == "/api/repos/create":
            return 200, {"url": f"{self.url}/alice/model"}, {}
        if path == "/api/validate-yaml":
            return 200, {}, {}
        if "/preupload/" in path:  # every file goes inline in the commit ("regular"), so no LFS round trip
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return 200, {"files": modes}, {}
        if "/commit/" in path:
            return 200, {"commitUrl": f"{self.url}/alice/model/commit/abc123", "commitOid": "a" * 40}, {}
        return 404, {"error": f"not faked: {method} {path}"}, {}

    def calls(self, path_part: str) -> list[dict]:
        return [r for r in self.requests if path_part in r["path"]]

    def committed_files(self) -> list[str]:
        (commit,) = self.calls("/commit/")
        lines = [json.loads(line) for line in commit["body"].decode().splitlines()]
        return sorted(line["value"]["path"] for line in lines if line["key"] == "file")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A running FakeHub as the Hub endpoint, online mode, and TOKEN in HF_TOKEN (no stored token file)."""
    state = FakeHub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, payload, headers = state.handle(self.command, self.path.split("?")[0], self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # huggingface_hub reads these at import time: patch the constants, not the environment.
    monkeypatch.setattr(constants, "ENDPOINT", state.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the plain commit API; file selection is the same
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield state
    server.shutdown()
    server.server_close()


def fine_grained(namespace: str, permissions: list[str]) -> dict:
    scoped = [{"entity": {"type": "user", "name": namespace}, "permissions": permissions}]
    return {**USER, "auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"global": [], "scoped": scoped}}}}


# ---------------------------------------------------------------------------------------------------------------
# preflight_push
# ---------------------------------------------------------------------------------------------------------------


def test_preflight_resolves_the_repo_id_with_the_token_from_the_environment(fake_hub):
    assert hub.preflight_push(None, "/runs/vit-beans/") == "alice/vit-beans"  # <user>/<output_dir name>
    assert hub.preflight_push("acme/beans", "/runs/x") == "acme/beans"
    assert hub.preflight_push("beans", "/runs/x") == "alice/beans"
    assert {r["auth"] for r in fake_hub.calls("whoami")} == {f"Bearer {TOKEN}"}


def test_preflight_accepts_a_fine_grained_token_with_repo_write(fake_hub):
    fake_hub.whoami = (200, fine_grained("alice", ["repo.content.read", "repo.write"]))
    assert hub.preflight_push("model", "/runs/x") == "alice/model"


def test_preflight_with_private_repo_accepts_a_new_or_private_repo(fake_hub):
    assert hub.preflight_push("model", "/runs/x", hub_private_repo=True) == "alice/model"
    fake_hub.repo_info = (200, {"id": "alice/model", "private": True, "sha": "a" * 40})
    assert hub.preflight_push("model", "/runs/x", hub_private_repo=True) == "alice/model"
    assert len(fake_hub.calls("/api/models/alice/model")) == 2


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "case, hub_model_id, output_dir, message",
    [
        ("offline", None, "/runs/x", "HF_HUB_OFFLINE=1 .*unset it, or run without --push_to_hub"),
        ("no_token", None, "/runs/x", "run `hf auth login`, set HF_TOKEN"),
        ("unreachable", None, "/runs/x", "Cannot reach the Hub at http://127.0.0.1:.*ConnectError.*fix the network"),
        ("rejected", None, "/runs/x", "rejected the token: run `hf auth login --force`.*fix HF_TOKEN"),
        ("server_error", None, "/runs/x", "answered HTTP 503 .* retry later"),
        ("ok", "alice/bad name!!", "/runs/x", "--hub_model_id is not a valid Hub repo id.*'alice/bad name!!'"),
        ("ok", None, "/runs/my run", "output_dir name `my run` .* Pass --hub_model_id"),
        ("read_only", None, "/runs/x", "token is read-only: create a write token"),
        ("ok", "bob/model", "/runs/x", r"not a member of it.*\['acme', 'alice', 'readers'\]"),
        ("ok", "readers/model", "/runs/x", "role in `readers` is read-only"),
        ("fine_grained_read", None, "/runs/x", "fine-grained Hub token cannot write to `alice`"),
        ("public_repo", "model", "/runs/x", "`alice/model` exists and is public"),
    ],
)
def test_preflight_fails_with_the_fix_and_never_the_token(
    fake_hub, monkeypatch, case, hub_model_id, output_dir, message
):
    if case == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    if case == "no_token":
        monkeypatch.delenv("HF_TOKEN")
    if case == "unreachable":
        monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    fake_hub.whoami = {
        "rejected": (401, {"error": "Invalid credentials in Authorization header"}),
        "server_error": (503, {"error": "down"}),
        "read_only": (200, {**USER, "auth": {"accessToken": {"role": "read"}}}),
        "fine_grained_read": (200, fine_grained("alice", ["repo.content.read"])),
    }.get(case, fake_hub.whoami)
    if case == "public_repo":
        fake_hub.repo_info = (200, {"id": "alice/model", "private": False, "sha": "a" * 40})

    with pytest.raises(hub.HubPushError, match=message) as caught:
        hub.preflight_push(hub_model_id, output_dir, hub_private_repo=case == "public_repo" or None)
    assert TOKEN not in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_preflight_checks_the_repo_id_before_any_request(fake_hub):
    with pytest.raises(hub.HubPushError, match="not a valid Hub repo id"):
        hub.preflight_push("a/b/c", "/runs/x")
    assert fake_hub.requests == []


def test_preflight_names_an_explicit_hub_token_as_the_one_to_fix(fake_hub):
    fake_hub.whoami = (401, {"error": "Invalid credentials in Authorization header"})
    with pytest.raises(hub.HubPushError, match="rejected the token: pass a valid --hub_token") as caught:
        hub.preflight_push(None, "/runs/x", hub_token="hf_OtherSecret987")
    assert "hf_OtherSecret987" not in str(caught.value)
    assert fake_hub.calls("whoami")[0]["auth"] == "Bearer hf_OtherSecret987"


@pytest.mark.parametrize("strategy", ["end", HubStrategy.END])
def test_hub_strategy_end_is_accepted(strategy):
    hub.check_hub_strategy(strategy)


@pytest.mark.parametrize(
    "strategy", ["every_save", "checkpoint", "all_checkpoints", HubStrategy.EVERY_SAVE, HubStrategy.ALL_CHECKPOINTS]
)
def test_hub_strategy_other_than_end_is_refused_with_the_fix(strategy):
    value = getattr(strategy, "value", strategy)
    with pytest.raises(hub.HubPushError, match=f"--hub_strategy {value} is not supported") as caught:
        hub.check_hub_strategy(strategy)
    message = str(caught.value)
    assert "hf_ft pushes once, at the end" in message and "--hub_strategy end" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# push_to_hub
# ---------------------------------------------------------------------------------------------------------------

PUSHED = [
    "README.md", "args.yaml", "config.json", "eval_results.json", "model.safetensors", "preprocessor_config.json",
    "report.md", "runs_summary.csv", "special_tokens_map.json", "test_confusion_matrix.png", "test_per_class[1].csv",
    "tokenizer.json", "tokenizer_config.json",
]
NOT_PUSHED = [
    "checkpoint-5/model.safetensors", "checkpoint-5/optimizer.pt", "runs/Nov23_10-00-00/events.out.tfevents.1",
    "optimizer.pt", "scheduler.pth", "training_args.bin", ".hf_token", "hub_token.txt", "sub/.env",
]


def make_output_dir(root: Path) -> Path:
    """A finished run's output dir: what users need, plus what must stay local. The odd CSV name checks escaping."""
    for name in PUSHED + NOT_PUSHED:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\ntags: [hf_ft]\n---\n# card\n" if name == "README.md" else "x")
    return root


def test_push_creates_the_repo_then_commits_exactly_the_model_card_and_report(fake_hub, tmp_path):
    output_dir = make_output_dir(tmp_path / "out")
    assert hub.files_to_push(output_dir) == PUSHED

    url = hub.push_to_hub(output_dir, "alice/model", token=TOKEN, private=True)

    assert url == f"{fake_hub.url}/alice/model/commit/abc123"
    paths = [r["path"] for r in fake_hub.requests if r["path"] != "/api/agent-harnesses"]
    assert paths.index("/api/repos/create") < paths.index("/api/models/alice/model/commit/main")
    created = json.loads(fake_hub.calls("/api/repos/create")[0]["body"])
    assert (created["organization"], created["name"]) == ("alice", "model")
    assert created.get("visibility") == "private" or created.get("private") is True
    assert fake_hub.committed_files() == PUSHED
    assert {r["auth"] for r in fake_hub.requests if r["auth"]} == {f"Bearer {TOKEN}"}


# ---------------------------------------------------------------------------------------------------------------
# write_model_card
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def offline_empty_cache(monkeypatch, tmp_path):
    """Offline mode and an empty Hub cache: nothing is known about any Hub model (a card must still be written)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


def cache_model_card(cache: Path, repo_id: str, metadata: str) -> Path:
    """Put a model's README.md into a Hub cache laid out as huggingface_hub writes it; return the snapshot dir."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    (snapshot / "README.md").write_text(f"---\n{metadata}\n---\n# A model\n")
    return snapshot


def classification_card(
    output_dir: Path,
    base_model: str,
    *,
    results: dict,
    dataset_name: str | None = None,
    task: str = "image-classification",
    label_names: tuple[str, ...] = ("a", "b"),
    training_args: dict | None = None,
    library_name: str = "transformers",
    repo_id: str | None = None,
    facts: dict | None = None,
) -> Path:
    """The card of a classification run, with the metric names, types and note the classification tasks give."""
    card = hub.CardFacts(task=task, base_model=base_model, dataset_name=dataset_name, label_names=list(label_names),
                         facts=facts or {}, library_name=library_name)
    task_report = TaskReport(metrics=results, headline="", columns=classification.METRIC_NAMES,
                             card_metric_types=classification.CARD_METRIC_TYPES, card_note=classification.MACRO_F1_NOTE)
    return hub.write_model_card(output_dir, card, task_report, training_args=training_args or {}, repo_id=repo_id)


def write_card(output_dir: Path, base_model: str, **kwargs) -> ModelCard:
    path = classification_card(output_dir, base_model, **{"results": {"test": {"accuracy": 1.0}}, **kwargs})
    assert str(output_dir.parent) not in path.read_text()  # no local path, whatever the base model is
    return ModelCard.load(path)


RESULTS = {
    "validation": {"accuracy": 0.9, "f1": 0.8, "majority_baseline_accuracy": 0.1, "num_samples": 180},
    "test": {"accuracy": 0.85, "f1": 0.75, "top5_accuracy": 1.0, "num_samples": 359},
}
TRAINING_ARGS = {"learning_rate": 2e-5, "num_train_epochs": 3, "effective_batch_size": 64, "seed": 42,
                 "mixed_precision": "bf16", "hub_token": TOKEN}


def test_model_card_round_trips_with_eval_results_in_the_metadata(tmp_path, offline_empty_cache):
    path = classification_card(
        tmp_path / "vit-beans", "google/vit-base-patch16-224-in21k", dataset_name="AI-Lab-Makerere/beans",
        task="image-classification", label_names=("angular_leaf_spot", "bean_rust", "healthy"), results=RESULTS,
        training_args=TRAINING_ARGS, repo_id="alice/vit-beans",
    )
    assert path == tmp_path / "vit-beans" / "README.md"
    card = ModelCard.load(path)
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    # Model metrics only: the majority baseline and sample counts describe the data. Types are metric ids (as
    # model-index asks), with the compute arguments that make them hf_ft's metrics.
    assert values == {("validation", "accuracy"): 0.9, ("validation", "f1"): 0.8, ("test", "accuracy"): 0.85,
                      ("test", "f1"): 0.75, ("test", "top_k_accuracy"): 1.0}
    metrics = {r.metric_type: (r.metric_name, r.metric_args, r.metric_config) for r in card.data.eval_results}
    assert metrics == {
        "accuracy": ("Accuracy", None, None),
        "f1": ("Macro F1 (classes present in the split)", {"average": "macro"}, None),
        "top_k_accuracy": ("Top-5 accuracy", {"k": 5}, None),
    }
    assert {r.dataset_name for r in card.data.eval_results} == {"AI-Lab-Makerere/beans"}
    assert card.data.base_model == "google/vit-base-patch16-224-in21k"
    assert card.data.datasets == ["AI-Lab-Makerere/beans"]
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"
    assert card.data.tags == ["hf_ft", "image-classification"]
    # Offline with nothing cached: the base model's license is unknown, and the card claims none.
    assert card.data.license is None and "license is unknown here, so this card names none" in card.text
    assert 'pipeline("image-classification", model="alice/vit-beans")' in card.text
    header = "| split | Accuracy | Macro F1 (classes present in the split) | Majority-class baseline |"
    assert header in card.text
    assert "| test | 0.8500 | 0.7500 | — | 359 | 1.0000 |" in card.text  # columns: union of metrics, in order
    assert "| learning_rate | 2e-05 |" in card.text and "`bean_rust`" in card.text
    assert "timm.create_model" not in card.text and TOKEN not in path.read_text()


def test_model_card_keeps_local_paths_out(tmp_path, offline_empty_cache):
    local_checkpoint = tmp_path / "checkpoints" / "resnet"
    local_checkpoint.mkdir(parents=True)
    path = classification_card(
        tmp_path / "out", str(local_checkpoint), results={"test": {"accuracy": 1.0}}, library_name="timm"
    )
    text = path.read_text()
    assert str(tmp_path) not in text
    card = ModelCard.load(path)
    assert card.data.base_model is None and card.data.datasets is None and card.data.library_name == "timm"
    assert card.data.license is None
    assert [(r.dataset_type, r.metric_value) for r in card.data.eval_results] == [("local", 1.0)]
    assert "a local checkpoint" in card.text and "on local data" in card.text
    assert 'timm.create_model("local-dir:path/to/out", pretrained=True)' in card.text


def test_model_card_with_a_hub_repo_shows_the_timm_hub_snippet(tmp_path, offline_empty_cache):
    path = classification_card(
        tmp_path, "timm/resnet18.a1_in1k", results={}, library_name="timm", repo_id="acme/resnet-digits"
    )
    card = ModelCard.load(path)
    assert 'timm.create_model("hf-hub:acme/resnet-digits", pretrained=True)' in card.text
    assert card.data.eval_results is None and card.data.base_model == "timm/resnet18.a1_in1k"


def test_model_card_takes_the_license_of_a_hub_base_model_from_the_hub(fake_hub, tmp_path):
    fake_hub.repo_info = (200, {"id": "google/vit-base", "sha": "a" * 40, "cardData": {"license": "apache-2.0"}})

    card = write_card(tmp_path / "out", "google/vit-base")

    assert card.data.license == "apache-2.0" and card.data.base_model == "google/vit-base"
    assert "License: `apache-2.0`, as given by the base model's card." in card.text
    assert fake_hub.calls("/api/models/google/vit-base")


def test_model_card_keeps_a_custom_license_name_but_not_a_link_into_the_base_repo(fake_hub, tmp_path):
    card_data = {"license": "other", "license_name": "vendor-license", "license_link": "LICENSE"}
    fake_hub.repo_info = (200, {"id": "acme/vit", "sha": "a" * 40, "cardData": card_data})

    card = write_card(tmp_path / "out", "acme/vit")

    assert (card.data.license, card.data.license_name, card.data.license_link) == ("other", "vendor-license", None)


@pytest.mark.parametrize("hub_state", ["unreachable", "not_found"])
def test_model_card_without_an_answer_from_the_hub_uses_the_cache_or_names_no_license(
    fake_hub, monkeypatch, tmp_path, hub_state
):
    if hub_state == "unreachable":
        monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))

    card = write_card(tmp_path / "first", "google/vit-base")
    assert card.data.license is None and card.data.base_model == "google/vit-base"

    cache_model_card(tmp_path / "cache", "google/vit-base", "license: mit")
    assert write_card(tmp_path / "second", "google/vit-base").data.license == "mit"


def test_model_card_offline_reads_the_license_from_the_hub_cache_without_a_request(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    cache_model_card(tmp_path / "cache", "google/vit-base", "license: apache-2.0")

    assert write_card(tmp_path / "out", "google/vit-base").data.license == "apache-2.0"
    assert fake_hub.requests == []


def test_model_card_names_a_hub_cache_snapshot_by_its_repo(tmp_path, offline_empty_cache):
    snapshot = cache_model_card(tmp_path / "elsewhere", "google/vit-base", "license: apache-2.0")

    card = write_card(tmp_path / "out", str(snapshot))

    assert card.data.base_model == "google/vit-base" and card.data.license == "apache-2.0"
    assert "This model is [google/vit-base](https://huggingface.co/google/vit-base) fine-tuned" in card.text


def test_model_card_names_the_origin_a_local_checkpoint_records(tmp_path, offline_empty_cache):
    # An earlier hf_ft run's output dir: its card names its base model and license.
    earlier = tmp_path / "runs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "README.md").write_text("---\nbase_model: google/vit-base\nlicense: apache-2.0\n---\n# earlier\n")
    # A transformers 4.x checkpoint records where it was loaded from in config.json, sometimes a path.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"_name_or_path": "bert-base-uncased"}))
    from_a_path = tmp_path / "from-a-path"
    from_a_path.mkdir()
    (from_a_path / "config.json").write_text(json.dumps({"_name_or_path": "/home/bob/checkpoints/vit"}))

    card = write_card(tmp_path / "out1", str(earlier))
    assert card.data.base_model == "google/vit-base" and card.data.license == "apache-2.0"
    assert "a local checkpoint derived from [google/vit-base](https://huggingface.co/google/vit-base)" in card.text
    card = write_card(tmp_path / "out2", str(legacy))
    assert card.data.base_model == "bert-base-uncased" and card.data.license is None
    card = write_card(tmp_path / "out3", str(from_a_path))
    assert card.data.base_model is None and "/home/bob" not in card.text
    assert "This model is a local checkpoint fine-tuned" in card.text


def test_model_card_lists_facts_without_secrets_or_local_paths(tmp_path, offline_empty_cache):
    facts = {"image_size": "224x224", "max_tokens": 512, "hub_token": TOKEN, "note": f"key {TOKEN}",
             "data_dir": str(tmp_path / "data" / "beans")}

    card = write_card(tmp_path / "out", "google/vit-base", facts=facts, training_args={"push_token": "x"})

    details = card.text[card.text.index("## Model details") :].split("\n## ")[0]
    assert "| image_size | 224x224 |" in details and "| max_tokens | 512 |" in details
    assert "| data_dir | .../beans |" in details
    assert TOKEN not in card.text and "hub_token" not in card.text and "push_token" not in card.text
