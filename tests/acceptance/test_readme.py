"""The README's commands work when pasted in order into a fresh shell: its local ```sh blocks
(the demo, "Try it" and the evidence session after it) run with `bash -e` in a fresh folder.

Three substitutions, each a fact of the test machine rather than of the README: the install
(`python3 -m venv .venv && .venv/bin/pip install -e .`) is this checkout's venv linked in as
`.venv` (installing is CI's own first step), the stand-in's port is a free one, and `/tmp/rt`
is a folder of this test's own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e ."
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """The README's `## ` sections by title."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def local_blocks(readme: str) -> list[str]:
    """The blocks a reader runs locally, in order: the demo of "Two commands", the first block
    of "Try it", and the block that starts with `retention audit pubkey > pub.pem`."""
    found = sections(readme)
    demo = [b for b in BLOCK.findall(found["Two commands"]) if "retention demo" in b]
    try_it = [b for t, s in found.items() if t.startswith("Try it") for b in BLOCK.findall(s)]
    evidence = [
        b for b in BLOCK.findall(readme) if b.startswith("retention audit pubkey > pub.pem")
    ]
    assert len(demo) == 1 and try_it and len(evidence) == 1, "the README's layout changed"
    return [demo[0], try_it[0], evidence[0]]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(blocks: list[str], *, port: int, rt: Path) -> str:
    """The blocks as one bash script with the machine's substitutions, tracing each command
    and stopping the background stand-in at the end."""
    demo, try_it, evidence = blocks
    assert INSTALL in demo, "the demo block no longer installs as the test expects"
    demo = demo.replace(INSTALL + " && ", "")
    try_it = try_it.replace("8900", str(port)).replace("/tmp/rt", str(rt))
    assert str(port) in try_it and str(rt) in try_it
    return "\n".join(["set -x", "trap 'kill $(jobs -p) 2>/dev/null' EXIT", demo, try_it, evidence])


def test_readme_commands_run_in_order(tmp_path: Path) -> None:
    """Every command of the README's local blocks exits 0, and so does the command the demo
    suggests at its end."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "config", clone / "config")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    text = script(
        local_blocks((ROOT / "README.md").read_text()), port=free_port(), rt=tmp_path / "rt"
    )
    proc = subprocess.Popen(
        ["bash", "-e", "-c", text],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"a README command failed (the last + line):\n{err[-3000:]}"
    assert "sound" in out and "valid: resp_1 absent" in out
    hint = re.search(r"try: (.+)$", out, re.MULTILINE)
    assert hint, out
    shown = subprocess.run(
        ["bash", "-e", "-c", hint.group(1)], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "RESPONSE_ID" in shown.stdout, shown.stderr


@pytest.fixture(autouse=True)
def _needs_bash() -> None:
    """The README's shell is bash."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
