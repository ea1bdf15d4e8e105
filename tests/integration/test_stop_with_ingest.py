"""Ingest while the daemon stops: every record that got its 202 is in the trail before
`daemon.stopped`, and the rest were told to send again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from retention.core.times import utcnow
from retention.daemon.service import Daemon
from tests.integration.conftest import Env

TOKEN = "token-for-this-test"


def test_ingest_during_the_stop_lands_before_daemon_stopped_or_gets_503(
    make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty clients post while SIGTERM's stop runs: each gets 202 or 503, and every 202'd ID's
    `response.recorded` precedes `daemon.stopped`."""
    env = make_env(extra="sweep:\n  interval: 1h\nserver:\n  listen: 127.0.0.1:0\n")
    monkeypatch.setenv("RETENTION_INGEST_TOKEN", TOKEN)

    async def scenario() -> dict[str, int]:
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        running = asyncio.create_task(daemon.run())
        while not daemon.started:
            await asyncio.sleep(0.02)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{daemon.port}", trust_env=False, timeout=30
        ) as http:

            async def post(i: int) -> tuple[str, int]:
                body = {"records": [{"id": f"resp_stop{i}"}]}
                answer = await http.post("/v1/records", json=body, headers=auth)
                return f"resp_stop{i}", answer.status_code

            posts = [asyncio.create_task(post(i)) for i in range(40)]
            await asyncio.sleep(0.05)
            daemon.stop()
            statuses = dict(await asyncio.gather(*posts))
        assert await running == 0
        return statuses

    statuses = asyncio.run(scenario())
    assert set(statuses.values()) <= {202, 503}
    lines = [json.loads(raw) for raw in env.settings.audit.file.read_text().splitlines()]
    stopped = next(r["seq"] for r in lines if r["event"] == "daemon.stopped")
    recorded = {r["response_id"]: r["seq"] for r in lines if r["event"] == "response.recorded"}
    accepted = [rid for rid, status in statuses.items() if status == 202]
    assert all(recorded[rid] < stopped for rid in accepted)
    assert not [rid for rid in recorded if rid not in accepted]  # nothing refused was written
