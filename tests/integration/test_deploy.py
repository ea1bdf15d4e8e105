"""The deployment files, checked offline with the tools operators use."""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from retention.config.policyfile import load_policies
from retention.config.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "retention.service"
ADMIN = DEPLOY / "systemd" / "retention-admin"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
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
    """The retention.yaml shipped for systemd is valid, with credentials from its directory,
    and everything the service makes is in its StateDirectory or LogsDirectory (/etc is
    read-only to it)."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/retention.service")
    settings = load_settings(DEPLOY / "systemd" / "retention.yaml")
    key_file = settings.providers["fireworks"].api_key_file
    assert key_file == Path("/run/credentials/retention.service/fireworks-api-key")
    assert str(settings.audit.file).startswith("/var/log/retention/")
    made = [settings.audit.signing_key_file, settings.erasure.key_file]
    assert all(str(path).startswith("/var/lib/retention/") for path in made), made
    assert settings.database_url == "sqlite:////var/lib/retention/retention.db"


def test_the_unit_sets_no_variable_that_overrides_the_configuration() -> None:
    """retention.yaml is the one place: the unit sets no RETENTION_ variable (such as
    RETENTION_DATABASE_URL, which would win over `database_url` silently)."""
    assert not [line for line in _unit_lines() if "RETENTION_" in line]


def _admin(*args: str, unit: Path = UNIT) -> list[str]:
    """The systemd-run command `retention-admin --print` makes for `args`, as words."""
    result = subprocess.run(
        [sys.executable, str(ADMIN), "--print", "--unit-file", str(unit), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def test_retention_admin_runs_a_command_as_the_unit_runs_the_daemon() -> None:
    """The operator's wrapper runs `retention ARGS` through systemd-run with every
    credential, directory, environment and identity line of the unit, and the unit's own
    binary and configuration."""
    words = _admin("import", "-", "--format", "csv")
    assert words[0] == "systemd-run" and {"--wait", "--pty", "--pipe"} <= set(words)
    properties = [w.removeprefix("--property=") for w in words if w.startswith("--property=")]
    copied: tuple[str, ...] = ("LoadCredential=", "Environment", "DynamicUser=", "UMask=")
    copied += ("WorkingDirectory=", "StateDirectory", "LogsDirectory", "ConfigurationDirectory")
    wanted = [line for line in _unit_lines() if line.startswith(copied)]
    assert len([w for w in wanted if w.startswith("LoadCredential=")]) >= 2
    assert sorted(properties) == sorted([*wanted, "User=retention"])
    exec_start = next(line for line in _unit_lines() if line.startswith("ExecStart="))
    binary = shlex.split(exec_start.removeprefix("ExecStart="))[:-1]  # without `run`
    assert words[words.index("--") + 1 :] == [*binary, "import", "-", "--format", "csv"]


def test_retention_admin_follows_drop_ins(tmp_path: Path) -> None:
    """`systemctl cat` output (the unit, then a drop-in that empties LoadCredential= and adds
    one, an Environment= line and a User=): the command carries what the drop-in made."""
    shown = tmp_path / "cat.txt"
    shown.write_text(
        f"# {UNIT}\n{UNIT.read_text()}\n# /etc/systemd/system/retention.service.d/x.conf\n"
        "[Service]\nLoadCredential=\nLoadCredential=key:/srv/key\n"
        'Environment="FW_TEST_KEY=a b"\nUser=ops-retention\n'
    )
    properties = {w for w in _admin("status", unit=shown) if w.startswith("--property=")}
    credentials = {p for p in properties if "LoadCredential=" in p}
    assert credentials == {"--property=LoadCredential=key:/srv/key"}
    assert '--property=Environment="FW_TEST_KEY=a b"' in properties
    assert "--property=User=ops-retention" in properties


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_retention_admin_properties_are_valid_unit_settings(tmp_path: Path) -> None:
    """Each property retention-admin passes to systemd-run is a [Service] setting that
    `systemd-analyze verify` accepts (what systemd-run checks when it starts the unit)."""
    words = _admin("status")
    properties = [w.removeprefix("--property=") for w in words if w.startswith("--property=")]
    unit = tmp_path / "retention-admin-check.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n" + "\n".join(properties) + "\n")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert "Unknown key" not in verify.stderr and "Failed to parse" not in verify.stderr, (
        verify.stderr
    )


def _kustomize(name: str) -> list[dict]:  # type: ignore[type-arg]
    """`kubectl kustomize` of one kustomization, as documents."""
    return [doc for doc in yaml.safe_load_all(_kustomized(name)) if doc]


@functools.cache
def _kustomized(name: str) -> str:
    """`kubectl kustomize` output (built once per test session)."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pod_spec(doc: dict) -> dict:  # type: ignore[type-arg]
    """The pod spec of a Deployment or CronJob."""
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


@kubectl
@pytest.mark.parametrize(
    ("name", "volume"),
    [
        ("common", False),
        ("sqlite-volume", True),
        ("daemon", True),
        ("cronjob", True),
        ("postgres", False),
    ],
)
def test_each_kustomization_builds(name: str, volume: bool) -> None:
    """`kubectl kustomize` builds each kustomization; only the SQLite variants have a PVC."""
    kinds = {doc["kind"] for doc in _kustomize(name)}
    assert ("PersistentVolumeClaim" in kinds) == volume
    assert name == "sqlite-volume" or "ConfigMap" in kinds


@kubectl
@pytest.mark.parametrize("name", ["daemon", "cronjob", "postgres"])
def test_policies_are_a_configmap_edited_in_place(name: str) -> None:
    """policies.yaml comes from a ConfigMap of fixed name (an edit changes the mounted file,
    which the daemon watches), retention.yaml from one named after its content (an edit rolls
    the pods); both in one volume at /etc/retention, where retention.yaml finds policies.yaml."""
    docs = _kustomize(name)
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    assert set(maps["retention-policies"]["data"]) == {"policies.yaml"}
    (config,) = [n for n in maps if n.startswith("retention-config-")]  # a hash suffix
    assert set(maps[config]["data"]) == {"retention.yaml"}
    assert "policies_file: policies.yaml" in maps[config]["data"]["retention.yaml"]
    workload = next(d for d in docs if d["kind"] in ("Deployment", "CronJob"))
    spec = _pod_spec(workload)
    sources = next(v for v in spec["volumes"] if v["name"] == "config")["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == [config, "retention-policies"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/retention" and "subPath" not in mount  # subPath: frozen


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
def test_postgres_runs_two_replicas_that_roll_and_survive_a_drain() -> None:
    """Two replicas, a rolling update that never has fewer than two ready, a
    PodDisruptionBudget keeping one, spread over nodes; each pod locked down and probed."""
    docs = _kustomize("postgres")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    budget = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = _pod_spec(deployment)
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    container = spec["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    assert container["args"] == ["-c", "/etc/retention/retention.yaml", "run"]
    _assert_locked_down(spec)
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]


@kubectl
def test_postgres_is_migrated_once_by_a_job_the_pods_wait_for() -> None:
    """A Job runs `retention db upgrade` (locked down, no way in, out to DNS and 5432 only);
    each daemon pod waits for the schema in an init container before `run` starts."""
    docs = _kustomize("postgres")
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # gone after a while: re-run by apply
    spec = _pod_spec(job)
    assert spec["containers"][0]["args"] == ["-c", "/etc/retention/retention.yaml", "db", "upgrade"]
    assert spec["restartPolicy"] == "Never"
    _assert_locked_down(spec)
    policy = _policy_for(docs, job)
    assert policy["spec"].get("ingress", []) == []
    assert _egress_ports(policy) == [(53, "TCP"), (53, "UDP"), (5432, "TCP")]
    deployment = _pod_spec(next(d for d in docs if d["kind"] == "Deployment"))
    wait = deployment["initContainers"][-1]
    assert wait["name"] == "wait-for-schema"
    assert "retention -c /etc/retention/retention.yaml status" in wait["command"][-1]
    assert "until" in wait["command"][-1]


@kubectl
def test_postgres_replicas_each_write_a_chain_named_after_their_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$RETENTION_AUDIT_CHAIN comes from the pod's name (Downward API), retention.yaml names
    no chain (it would win) and writes no audit file (the ledger holds the trail): settings
    loaded as a pod would load them have its name as their chain."""
    docs = _kustomize("postgres")
    container = _pod_spec(next(d for d in docs if d["kind"] == "Deployment"))["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["RETENTION_AUDIT_CHAIN"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    monkeypatch.setenv("RETENTION_AUDIT_CHAIN", "retention-7d9f8b6c4d-x2k9q")
    settings = _configmap_settings(docs, tmp_path)
    assert settings.audit.chain == "retention-7d9f8b6c4d-x2k9q"
    assert settings.audit.file is None
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert not settings.overrides


@kubectl
def test_cronjob_runs_sweep_locked_down() -> None:
    """The CronJob variant runs `retention sweep`, one at a time, locked down."""
    cron = next(d for d in _kustomize("cronjob") if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = _pod_spec(cron)
    assert spec["containers"][0]["args"][-1] == "sweep"
    _assert_locked_down(spec)


def _assert_locked_down(spec: dict) -> None:  # type: ignore[type-arg]
    """Non-root, seccomp, no service account token; every container (init ones too) without
    privilege escalation, read-only root, capabilities dropped, a memory limit."""
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
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
@pytest.mark.parametrize("name", ["daemon", "cronjob", "postgres"])
def test_no_secret_travels_in_the_environment(name: str) -> None:
    """No container (init included) of any workload has an env variable named like a secret
    or fed from a Secret, nor envFrom a Secret."""
    assert "secretKeyRef" not in _kustomized(name)
    for workload in _workloads(_kustomize(name)):
        spec = _pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                assert not SECRET_NAME.search(env["name"]), env["name"]
                assert "secretKeyRef" not in env.get("valueFrom", {}), env["name"]
            assert not any("secretRef" in source for source in container.get("envFrom", []))


def _workloads(docs: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    """The Deployments, CronJobs and Jobs."""
    return [d for d in docs if d["kind"] in ("Deployment", "CronJob", "Job")]


@kubectl
@pytest.mark.parametrize("name", ["daemon", "cronjob", "postgres"])
def test_secrets_are_private_files_the_config_points_at(name: str, tmp_path: Path) -> None:
    """Every key and token the ConfigMap names is copied 0400 by the init container from the
    listed items of a Secret into a memory volume, never on the ledger's volume; the signing
    key has a Secret of its own (and on PostgreSQL the database password, from a Secret of
    its own, and the erasure key the replicas share)."""
    docs = _kustomize(name)
    spec = _pod_spec(next(d for d in docs if d["kind"] in ("Deployment", "CronJob")))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["keys"]["emptyDir"]["medium"] == "Memory"
    items = {
        item["path"]: source["secret"]["name"]
        for source in volumes["secrets"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert items["audit-signing.key"] == "retention-signing-key"
    init = spec["initContainers"][0]
    assert init["command"][:5] == ["install", "-m", "0400", "-t", "/run/retention/keys"]
    copied = {Path(src).name for src in init["command"][5:]}
    assert copied == set(items)
    assert all(Path(src).parent == Path("/run/retention/secret") for src in init["command"][5:])
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert "secrets" not in mounts  # the Secret's own files: the init container's alone
    if name == "cronjob":  # the daemon's stays writable: `audit rotate-key` stages the new key
        assert mounts["keys"]["readOnly"] is True
    settings = _configmap_settings(docs, tmp_path)
    named = [settings.providers["fireworks"].api_key_file, settings.audit.signing_key_file]
    if name != "cronjob":
        server = settings.server
        named += [server.ingest_token_file, server.tls_cert_file, server.tls_key_file]
    if name == "postgres":
        assert items["database-password"] == "retention-database"
        named += [Path(_configmap_yaml(docs)["database_password_file"]), settings.erasure.key_file]
    else:  # made on the ledger's volume at first use
        assert settings.erasure.key_file.parent == Path(mounts["data"]["mountPath"])
    for path in named:
        assert path is not None and path.parent == Path(mounts["keys"]["mountPath"]), path
        assert path.name in copied, path
        assert "data" not in mounts or not str(path).startswith(mounts["data"]["mountPath"])


@kubectl
def test_the_daemon_is_reached_only_by_labelled_apps_and_prometheus() -> None:
    """A NetworkPolicy on the daemon's pods: in, port 8787 from pods or namespaces labelled
    `retention/ingest: "true"` and from Prometheus; out, DNS and 443 only. Probes use https."""
    docs = _kustomize("daemon")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    policy = _policy_for(docs, deployment)
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [
        [{"port": 8787, "protocol": "TCP"}]
    ]
    peers = policy["spec"]["ingress"][0]["from"]
    labelled = {"retention/ingest": "true"}
    assert {"podSelector": {"matchLabels": labelled}} in peers
    assert {"namespaceSelector": {"matchLabels": labelled}} in peers
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "prometheus"
        for p in peers
    )
    assert all(p.get("podSelector") or p.get("namespaceSelector") for p in peers)
    _assert_egress_dns_and_https(policy)
    container = _pod_spec(deployment)["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe


@kubectl
def test_postgres_replicas_are_reached_like_the_daemon_and_reach_postgres() -> None:
    """The replicas' NetworkPolicy lets in what the SQLite daemon's does (8787 from labelled
    apps and Prometheus) and lets out DNS, PostgreSQL (5432) and HTTPS only."""
    docs = _kustomize("postgres")
    policy = _policy_for(docs, next(d for d in docs if d["kind"] == "Deployment"))
    daemon = _kustomize("daemon")
    alone = _policy_for(daemon, next(d for d in daemon if d["kind"] == "Deployment"))
    assert policy["spec"]["ingress"] == alone["spec"]["ingress"]
    assert _egress_ports(policy) == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (5432, "TCP")]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == policy["spec"]["podSelector"]["matchLabels"]


@kubectl
def test_the_sweep_takes_no_connection_and_reaches_only_dns_and_https() -> None:
    """The CronJob's pods: a NetworkPolicy with no ingress rule, egress DNS and 443 only."""
    docs = _kustomize("cronjob")
    policy = _policy_for(docs, next(d for d in docs if d["kind"] == "CronJob"))
    assert policy["spec"].get("ingress", []) == []
    _assert_egress_dns_and_https(policy)


def _policy_for(docs: list[dict], workload: dict) -> dict:  # type: ignore[type-arg]
    """The one NetworkPolicy selecting the workload's pods, for both directions."""
    template = workload["spec"].get("jobTemplate", workload)["spec"]["template"]
    labels = template["metadata"]["labels"]
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(policies) == 1
    assert sorted(policies[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    return policies[0]


def _assert_egress_dns_and_https(policy: dict) -> None:  # type: ignore[type-arg]
    """Egress: port 53 to kube-dns only, and TCP 443; nothing else."""
    assert _egress_ports(policy) == [(53, "TCP"), (53, "UDP"), (443, "TCP")]


def _egress_ports(policy: dict) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    """The (port, protocol) pairs a NetworkPolicy lets out; port 53 only to kube-dns."""
    dns = next(r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 53)
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    return sorted(
        (p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]
    )


def _configmap_yaml(docs: list[dict]) -> dict[str, Any]:  # type: ignore[type-arg]
    """The generated retention.yaml, as YAML reads it."""
    maps = [d["data"] for d in docs if d["kind"] == "ConfigMap"]
    return yaml.safe_load(next(m["retention.yaml"] for m in maps if "retention.yaml" in m))  # type: ignore[no-any-return]


def _configmap_settings(docs: list[dict], folder: Path) -> Any:  # type: ignore[type-arg]
    """The settings of the generated retention.yaml beside the generated policies.yaml, as
    the pod reads them (without the database password: its file exists only in the pod)."""
    for data in (d["data"] for d in docs if d["kind"] == "ConfigMap"):
        for file_name, text in data.items():
            lines = text.splitlines(keepends=True)
            kept = [line for line in lines if not line.startswith("database_password_file:")]
            (folder / file_name).write_text("".join(kept))
    return load_settings(folder / "retention.yaml")


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """A pip-compile lock file: canonical name -> (pinned version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement, _, version = line.rstrip(" \\").partition("==")
            assert version, f"{path.name}: not pinned with ==: {line}"
            name = canonicalize_name(requirement)
            pins[name] = (version, 0)
        elif line.strip().startswith("--hash=sha256:"):
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def test_the_image_installs_locked_hashed_packages_only() -> None:
    """The Dockerfile installs deploy/requirements.lock with --require-hashes and the project
    with --no-deps; every runtime dependency of pyproject (and the postgres extra) is in the
    lock at a version its specifier allows, each with hashes; aiohttp is 3.13.3 or later."""
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    project = pyproject["project"]
    lock = _locked(DEPLOY / "requirements.lock")
    needed = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    for text in needed:
        requirement = Requirement(text)
        names = [requirement.name] + [f"{requirement.name}-{x}" for x in requirement.extras]
        for name in map(canonicalize_name, names):
            assert name in lock, f"{name} is not in deploy/requirements.lock"
        version = lock[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version), f"{requirement}: locked {version}"
    assert all(hashes > 0 for _, hashes in lock.values())
    assert Version(lock["aiohttp"][0]) >= Version("3.13.3")
    aiohttp = Requirement(next(d for d in needed if d.startswith("aiohttp")))
    assert not aiohttp.specifier.contains("3.13.2")  # pyproject itself refuses the old ones
    build = _locked(DEPLOY / "build-requirements.lock")
    backend = Requirement(pyproject["build-system"]["requires"][0])
    assert backend.specifier.contains(build[canonicalize_name(backend.name)][0])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "--require-hashes -r deploy/requirements.lock" in dockerfile
    assert "--require-hashes -r deploy/build-requirements.lock" in dockerfile
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs)
