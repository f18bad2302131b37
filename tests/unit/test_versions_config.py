"""The committed configuration that sharing relies on: default remote, no secrets, run cache, registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from configobj import ConfigObj

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CONFIGS = (".dvc/config", "dvc.yaml", "params.yaml")

# Option names that hold credentials in DVC remote configs (S3, GCS, Azure, SSH, HTTP, WebDAV, ...).
SECRET_OPTIONS = re.compile(
    r"^(access_key_id|secret_access_key|session_token|password|ask_password_value|key_secret|"
    r"account_key|sas_token|connection_string|client_secret|tenant_id|credentialpath|keyfile|"
    r"gdrive_client_secret|gdrive_service_account_json_file_path|token|passphrase|custom_auth_header_value)$",
    re.IGNORECASE,
)
SECRET_TEXT = [
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"), "a password inside a URL"),
    (re.compile(r"(?i)\b(secret|password|passwd|token|api_?key)\s*[:=]\s*['\"]?[^\s'\"#]{8,}"), "a secret value"),
    (re.compile(r"(?i)AccountKey=|SharedAccessSignature=|sig=[A-Za-z0-9%]{20,}"), "an Azure key"),
]


def find_secrets(name: str, text: str) -> list[str]:
    """What in ``text`` looks like a credential, one line each; empty when clean."""
    found = [f"{name}: {what}" for pattern, what in SECRET_TEXT if pattern.search(text)]
    if name.endswith("config"):
        for section, options in ConfigObj(text.splitlines()).items():
            for key in options if isinstance(options, dict) else ():
                if SECRET_OPTIONS.match(key):
                    found.append(f"{name}: [{section}] {key} holds a credential")
    return found


def test_no_committed_config_holds_a_secret():
    problems = [p for rel in COMMITTED_CONFIGS for p in find_secrets(rel, (ROOT / rel).read_text())]
    assert problems == [], "credentials belong in the environment or .dvc/config.local, never in git"


@pytest.mark.parametrize("text", [
    "['remote \"s3\"']\n    url = s3://b/x\n    access_key_id = ABCDEFGHIJKLMNOP\n",
    "['remote \"s3\"']\n    url = s3://b/x\n    secret_access_key = abcdefghij0123456789abcdefghij\n",
    "['remote \"az\"']\n    url = azure://c/x\n    connection_string = DefaultEndpointsProtocol=https;AccountKey=abc\n",
    "['remote \"ssh\"']\n    url = ssh://me@host/x\n    password = hunter2hunter2\n",
    "['remote \"h\"']\n    url = https://me:hunter2@example.invalid/x\n",
    "# AKIAIOSFODNN7EXAMPLE in a comment is still a leak\n",
])
def test_the_secret_check_catches_credentials(text):
    assert find_secrets(".dvc/config", text)


def test_local_config_with_credentials_is_git_ignored():
    assert "/config.local" in (ROOT / ".dvc" / ".gitignore").read_text().split()


def test_the_default_remote_works_on_a_fresh_clone_and_lies_outside_the_repository():
    config = ConfigObj(str(ROOT / ".dvc" / "config"))
    name = config["core"]["remote"]
    url = config[f'remote "{name}"']["url"]
    # `~` is expanded per user, so every clone on a machine (and every git revision DVC reads the
    # config from: `dvc exp push`, `dvc get --rev`) finds the same folder; no absolute user path.
    assert url.startswith("~/"), url
    assert "data/" not in url


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_can_be_restored_from_the_run_cache():
    """DVC skips the run cache for a stage with a `cache: false` out that is not a metric or plot."""
    offenders = []
    for name, stage in stages().items():
        for entry in stage.get("outs", []):
            if isinstance(entry, dict):
                ((path, props),) = entry.items()
                if props.get("cache") is False or props.get("persist"):
                    offenders.append(f"{name}: {path}")
    assert offenders == [], "declare them as metrics/plots, or cache them"


def test_the_registry_declares_the_dataset_and_the_model_at_the_pipeline_paths():
    dvcyaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    paths = yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]
    artifacts = dvcyaml["artifacts"]
    assert artifacts["dataset"]["type"] == "dataset" and artifacts["dataset"]["path"] == paths["validated"]
    assert artifacts["model"]["type"] == "model" and artifacts["model"]["path"] == paths["model"]
    for art in artifacts.values():
        assert art["desc"].strip() and art["labels"]
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in stages().values() for o in s.get("outs", [])}
    assert {"${paths.validated}", "${paths.model}", "${paths.card}"} <= outs


def test_runcache_outside_a_repository_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from imgpipe import runcache

    monkeypatch.chdir(tmp_path)
    assert runcache.main(["pull"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run cache pull failed:") and "DVC repository" in err[0]
