"""A provider that cannot delete stored chat completions, seen as users see it: `sweep` says
so and exits 1, the IDs stay pending, and `doctor` names the provider and kind."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LONG_AGO, cli, standin_playing, write_config

IDS = ["chatcmpl-k1", "chatcmpl-k2", "chatcmpl-k3"]


@pytest.fixture
def llamastack_url() -> Iterator[str]:
    """The stand-in playing Llama Stack: every chat completion kept, DELETE answering 405."""
    with standin_playing("llamastack") as url:
        for rid in IDS:  # made through the API, as an app makes them
            body = json.dumps({"id": rid, "model": "m", "messages": [], "store": True}).encode()
            made = urllib.request.Request(
                f"{url}/chat/completions",
                data=body,
                headers={"Authorization": "Bearer test-key", "Content-Type": "application/json"},
            )
            urllib.request.urlopen(made, timeout=10).read()
        yield url


def test_sweep_and_doctor_say_the_provider_cannot_delete_them(
    workdir: Path, llamastack_url: str
) -> None:
    """`sweep`: exit 1, 3 `unsupported`, each ID pending with 0 attempts; `doctor` fails the
    provider's chat completions line with `provider.cannot_delete`."""
    write_config(workdir, llamastack_url, kind="openai")
    recorded = cli(
        "record", "--object", "chat.completion", *IDS, "--created-at", LONG_AGO, cwd=workdir
    )
    assert recorded.returncode == 0, recorded.stderr
    swept = cli("sweep", "-o", "json", cwd=workdir)
    assert swept.returncode == 1, swept.stderr
    assert json.loads(swept.stdout)["unsupported"] == 3
    assert "provider.cannot_delete" in swept.stderr and "405" in swept.stderr
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 0)}
    doctor = cli("doctor", cwd=workdir)
    assert doctor.returncode == 1
    line = next(x for x in doctor.stdout.splitlines() if "chat completions" in x)
    assert "provider.cannot_delete" in line and "405" in line, doctor.stdout
    assert "blocking_call_on_loop" not in doctor.stderr and "Traceback" not in doctor.stderr
