"""Discovery against the stand-in: a crawl that resumes after its cursor vanished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from retention.discover import CrawlState, discover
from retention.ledger import queries
from retention.standin import StandIn
from tests.helpers import KINDS
from tests.integration.conftest import Env


@pytest.mark.parametrize("flavor", ["fireworks", "llamastack"])
def test_vanished_cursor_leaves_no_hole(
    make_env: Callable[..., Env], standin: StandIn, flavor: str
) -> None:
    """An interrupted crawl whose cursor response was deleted restarts from the top, no hole,
    whether the provider answers that cursor with an empty page or with a 400 (Llama Stack)."""
    standin.knobs.flavor = flavor
    if flavor != "fireworks":
        standin.account = None  # the account header is Fireworks' own
    env = make_env(kind=KINDS[flavor])
    now = int(time.time())
    for i in range(250):
        env.standin.store.create({"id": f"v{i:03d}", "created_at": now - i})
    with env.ledger.transaction() as conn:  # as if page 1 had been read, then the run died
        queries.set_meta(conn, CrawlState.key("fireworks"), f'{{"after": "v099", "top": {now}}}')
    env.standin.store.responses.pop("v099")

    async def run() -> object:
        return await discover(
            env.ledger, env.settings, env.policies, "fireworks", clock=lambda: datetime.now(UTC)
        )

    report = asyncio.run(run())
    assert report.complete and report.error is None  # type: ignore[attr-defined]
    with env.ledger.read() as conn:
        tracked = conn.execute(text("SELECT count(*) FROM records")).scalar()
    assert tracked == 249
