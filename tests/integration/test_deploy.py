"""The deployment files, checked offline with the tools operators use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from retention.config.policyfile import load_policies
from retention.config.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "retention.service"
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=",
    "SystemCallFilter=@system-service",
    "UMask=0077",
)


def _unit_lines() -> list[str]:
    """The unit's directive lines."""
    return [
        line.strip()
        for line in UNIT.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_unit_has_notify_reload_state_credentials_and_hardening() -> None:
    """Type=notify, ExecReload, StateDirectory, LoadCredential and a careful sandbox."""
    lines = _unit_lines()
    for needed in (
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=retention",
        "LogsDirectory=retention",
        "WatchdogSec=60s",
        *HARDENING,
    ):
        assert any(line.startswith(needed) for line in lines), needed
    assert any(line.startswith("ExecReload=/bin/kill -HUP $MAINPID") for line in lines)
    assert sum(line.startswith("LoadCredential=") for line in lines) >= 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies_and_is_well_sandboxed(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit; `security --offline` rates it below 2.5."""
    unit = tmp_path / "retention.service"
    unit.write_text(UNIT.read_text().replace("/opt/retention/bin/retention", "/bin/true"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-500:]


def test_systemd_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retention.yaml shipped for systemd is valid, with credentials from its directory."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/retention.service")
    settings = load_settings(DEPLOY / "systemd" / "retention.yaml")
    key_file = settings.providers["fireworks"].api_key_file
    assert key_file == Path("/run/credentials/retention.service/fireworks-api-key")
    assert str(settings.audit.file).startswith("/var/log/retention/")


def _kustomize(name: str) -> list[dict]:  # type: ignore[type-arg]
    """`kubectl kustomize` of one kustomization, as documents."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _pod_spec(doc: dict) -> dict:  # type: ignore[type-arg]
    """The pod spec of a Deployment or CronJob."""
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


@kubectl
@pytest.mark.parametrize("name", ["common", "daemon", "cronjob"])
def test_each_kustomization_builds(name: str) -> None:
    """`kubectl kustomize` builds each kustomization."""
    kinds = {doc["kind"] for doc in _kustomize(name)}
    assert {"ConfigMap", "PersistentVolumeClaim"} <= kinds


@kubectl
def test_deployment_has_probes_and_runs_locked_down() -> None:
    """The Deployment has startup, liveness and readiness probes, runs non-root, read-only."""
    docs = _kustomize("daemon")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap"}
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    spec = _pod_spec(deployment)
    container = spec["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), probe
    _assert_locked_down(spec)


@kubectl
def test_cronjob_runs_sweep_locked_down() -> None:
    """The CronJob variant runs `retention sweep`, one at a time, locked down."""
    cron = next(d for d in _kustomize("cronjob") if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = _pod_spec(cron)
    assert spec["containers"][0]["args"][-1] == "sweep"
    _assert_locked_down(spec)


def _assert_locked_down(spec: dict) -> None:  # type: ignore[type-arg]
    """Non-root, no privilege escalation, read-only root, capabilities dropped, resources."""
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]


def test_kubernetes_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's retention.yaml and policies.yaml are valid as shipped."""
    settings = load_settings(DEPLOY / "kubernetes" / "common" / "config" / "retention.yaml")
    assert settings.server.listen == "0.0.0.0:8787"
    load_policies(settings.policies_file)


def test_dockerfile_is_slim_and_non_root() -> None:
    """The image builds from a slim base and runs as an unprivileged user."""
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")][-1]
    assert user.split()[1].split(":")[0] not in ("0", "root")


@kubectl
@pytest.mark.parametrize("name", ["daemon", "cronjob"])
def test_signing_key_comes_from_a_secret_not_the_ledger_volume(name: str) -> None:
    """The signing key is copied 0600 from its own Secret into a memory volume; the ledger's
    volume never holds it."""
    workload = next(d for d in _kustomize(name) if d["kind"] in ("Deployment", "CronJob"))
    spec = _pod_spec(workload)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["signing-key-secret"]["secret"]["secretName"] == "retention-signing-key"
    assert volumes["signing-key"]["emptyDir"]["medium"] == "Memory"
    init = spec["initContainers"][0]
    assert init["command"][:3] == ["install", "-m", "0600"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    settings = load_settings(DEPLOY / "kubernetes" / "common" / "config" / "retention.yaml")
    assert str(settings.audit.signing_key_file).startswith(mounts["signing-key"])
    assert not str(settings.audit.signing_key_file).startswith(mounts["data"])
