"""The Hugging Face Hub backend against a fake hub on 127.0.0.1 and against a pre-populated cache with
``HF_HUB_OFFLINE=1``. No test reaches any other address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from reprzoo.errors import ReprzooError
from test_zoo import NAME, shared_tiny_run

REPO = "reprzoo-test/simsiam-tiny"


class FakeHub:
    """Just enough of the Hub's HTTP API for ``create_repo``, ``upload_folder``, ``hf_hub_download`` and
    ``list_repo_commits``; every request is recorded in ``calls``."""

    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo id -> {"private", "commits": [{"oid", "files", "title"}]}
        self.calls: list[tuple[str, str]] = []
        self.commit_payloads: list[list[dict]] = []
        self.validated: list[dict] = []
        self.auth: list[str | None] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                hub.calls.append(("POST", self.path))
                hub.auth.append(self.headers.get("authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlparse(self.path).path.strip("/").split("/")
                if parts[:2] == ["api", "repos"] and parts[2] == "create":
                    payload = json.loads(body)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    if repo_id in hub.repos:
                        return self._json(
                            409, {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo_id}"}
                        )
                    hub.repos[repo_id] = {"private": payload.get("visibility") == "private", "commits": []}
                    return self._json(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if parts == ["api", "validate-yaml"]:  # the README's front matter, checked before the upload
                    import yaml

                    content = json.loads(body)["content"]
                    hub.validated.append(yaml.safe_load(content.split("---")[1]))
                    return self._json(200, {"warnings": []})
                if len(parts) < 5:
                    return self._json(404, {"error": f"unknown route {self.path}"})
                repo_id, action = "/".join(parts[2:4]), parts[4]
                if repo_id not in hub.repos:
                    return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(
                        200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if action == "commit":
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    hub.commit_payloads.append(lines)
                    commits = hub.repos[repo_id]["commits"]
                    files = dict(commits[-1]["files"]) if commits else {}
                    title = ""
                    for item in lines:
                        if item["key"] == "header":
                            title = item["value"]["summary"]
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    oid = hashlib.sha1(f"{repo_id}{len(commits)}{sorted(files)}".encode() + b"".join(files.values())).hexdigest()
                    commits.append({"oid": oid, "files": files, "title": title})
                    return self._json(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid})
                return self._json(404, {"error": "unknown route"})

            def do_HEAD(self):
                self._resolve(send_body=False)

            def do_GET(self):
                path = urlparse(self.path).path.strip("/").split("/")
                if path[:2] == ["api", "models"] and path[4] == "commits":
                    hub.calls.append(("GET", self.path))
                    commits = hub.repos.get("/".join(path[2:4]), {}).get("commits", [])
                    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    items = [
                        {"id": c["oid"], "title": c["title"], "message": "", "authors": [], "date": date}
                        for c in reversed(commits)
                    ]
                    return self._json(200, items)
                self._resolve(send_body=True)

            def _resolve(self, send_body: bool):
                hub.calls.append((self.command, self.path))
                parts = unquote(urlparse(self.path).path).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._json(404, {"error": "unknown route"})
                repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                commits = repo["commits"]
                commit = (
                    commits[-1] if revision == "main" and commits else next((c for c in commits if c["oid"] == revision), None)
                )
                if commit is None:
                    return self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                if filename not in commit["files"]:
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                data = commit["files"][filename]
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit["oid"])
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def _json(self, status: int, payload, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A fresh reprzoo home and HF cache, a dummy token, and the fake hub as HF_ENDPOINT."""
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_token_for_tests")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


def test_push_uploads_three_files_in_one_commit(tiny_run, hub_env):
    import reprzoo

    result = reprzoo.zoo.push(tiny_run, NAME, to=f"hf://{REPO}", private=True)
    assert result.target == f"hf://{REPO}" and len(result.revision) == 40
    assert hub_env.repos[REPO]["private"] is True
    assert set(hub_env.auth) == {"Bearer hf_dummy_token_for_tests"}  # the token from HF_TOKEN, on every write
    assert [c for c in hub_env.calls if c[0] == "POST"][0] == ("POST", "/api/repos/create")
    assert len(hub_env.commit_payloads) == 1
    assert hub_env.validated[0]["library_name"] == "reprzoo" and "model-index" in hub_env.validated[0]
    files = [item["value"]["path"] for item in hub_env.commit_payloads[0] if item["key"] == "file"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    stored = hub_env.repos[REPO]["commits"][0]["files"]
    config = json.loads(stored["config.json"])
    assert config["weights"]["sha256"] == hashlib.sha256(stored["model.safetensors"]).hexdigest()
    assert f'reprzoo.load("hf://{REPO}")' in stored["README.md"].decode()


def test_download_round_trip_revisions_and_offline_cache(tiny_run, hub_env, monkeypatch):
    import reprzoo
    from reprzoo.zoo.api import model_info

    first = reprzoo.zoo.push(tiny_run, NAME, to=f"hf://{REPO}").revision
    with torch.no_grad():
        module = reprzoo.load_method(f"hf://{REPO}")
        module.backbone.stem[0].weight.mul_(-1)
    from test_zoo import _run_with_state

    second = reprzoo.zoo.push(
        _run_with_state(tiny_run, tiny_run.parent.parent / f"neg-{first[:6]}", module.state_dict()), NAME, to=f"hf://{REPO}"
    ).revision
    x = torch.randn(3, 3, 32, 32)
    latest, pinned = reprzoo.load(f"hf://{REPO}"), reprzoo.load(f"hf://{REPO}@{first}")
    assert (latest.revision, pinned.revision) == (second, first)
    assert not torch.equal(latest.embed(x), pinned.embed(x))
    assert torch.equal(reprzoo.load(NAME).embed(x), latest.embed(x))  # the pushed name resolves through the registry
    assert NAME in reprzoo.list_models()
    assert [r["id"] for r in model_info(f"hf://{REPO}")["revisions"]] == [second, first]
    with pytest.raises(ReprzooError, match="revision '0{40}' not found"):
        reprzoo.load(f"hf://{REPO}", revision="0" * 40)
    with pytest.raises(ReprzooError, match="repository not found"):
        reprzoo.load("hf://reprzoo-test/nope")

    downloads = len(hub_env.calls)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cache alone, no request
    assert torch.equal(reprzoo.load(f"hf://{REPO}").embed(x), latest.embed(x))
    assert torch.equal(reprzoo.load(f"hf://{REPO}", revision=first).embed(x), pinned.embed(x))
    assert len(hub_env.calls) == downloads
    with pytest.raises(ReprzooError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        reprzoo.load("hf://reprzoo-test/never-downloaded")


def test_prepopulated_cache_offline(tiny_run, tmp_path, monkeypatch):
    """A cache laid out as huggingface_hub lays it out, used with HF_HUB_OFFLINE=1 and no server at all."""
    import reprzoo
    from reprzoo.zoo.export import export_run

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would refuse connections, were any made
    commit = "a" * 40
    repo = tmp_path / "hf-cache" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    export_run(tiny_run, NAME, snapshot, load_ref=f"hf://{REPO}")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    enc = reprzoo.load(f"hf://{REPO}")
    assert enc.revision == commit and enc.card.data.library_name == "reprzoo"
    from test_zoo import reference_module

    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(enc.embed(x), reference_module(tiny_run)[0].embed(x))
    from reprzoo.zoo.api import model_info

    assert model_info(f"hf://{REPO}")["revisions"] == [{"id": commit, "cached": True}]

    weights = snapshot / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ReprzooError, match="SHA-256"):
        reprzoo.load(f"hf://{REPO}")


@pytest.mark.parametrize("bad", ["hf://../etc", "hf://org/../x", "hf://no-slash", "hf://org/repo@../x"])
def test_bad_hf_addresses(bad, tmp_path, monkeypatch):
    import reprzoo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReprzooError, match="invalid"):
        reprzoo.load(bad)
