"""YAML alias bombs: a few hundred bytes that expand to gigabytes when quoted. Refused with a
short message, in bounded memory, on the command line and on SIGHUP alike."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import user_env, write_config


def bomb(levels: int) -> str:
    """A policies file whose one metadata value is 9**levels strings, built from aliases."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return (
        "version: 1\ndefault: {ttl: 30d}\npolicies:\n  - name: p\n    ttl: 1d\n"
        "    match:\n      metadata:\n        k: [" + ", ".join(parts) + "]\n"
    )


@pytest.mark.parametrize("levels", [7, 8, 9])
def test_policies_check_refuses_a_bomb_briefly_in_bounded_memory(
    workdir: Path, levels: int
) -> None:
    """`policies check` exits 2 with one short line; the process's peak RSS stays under
    150 MB (a 9-level bomb quoted whole would be gigabytes)."""
    (workdir / "bomb.yaml").write_text(bomb(levels))
    measure = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'retention', 'policies', 'check', "
        "'bomb.yaml'], capture_output=True, text=True)\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "len(r.stderr.encode()), r.stderr.count('\\n'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure],
        cwd=workdir,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    code, peak_kb, size, lines = map(int, result.stdout.split())
    assert code == 2 and lines == 1 and size < 1024, result.stdout
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb} KB"


def test_a_bomb_on_sighup_is_refused_with_a_small_event(
    workdir: Path, standin_process: str
) -> None:
    """SIGHUP with a bomb in policies.yaml: the daemon keeps its policies and lives, and the
    `policy.rejected` record in the signed trail is under 4 KiB."""
    write_config(workdir, standin_process, extra="server:\n  listen: 127.0.0.1:0\n")
    daemon = DaemonProcess(workdir, {})
    try:
        (workdir / "policies.yaml").write_text(bomb(9))
        daemon.proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        while not daemon.events("policy.rejected") and time.monotonic() < end:
            time.sleep(0.1)
        assert daemon.events("policy.rejected")
        assert daemon.request("/healthz")[0] == 200
    finally:
        assert daemon.stop() == 0
    rejected = [
        line
        for line in (workdir / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["event"] == "policy.rejected"
    ]
    assert rejected and all(len(line.encode()) < 4096 for line in rejected)
