"""In-process fixtures on real parts: a SQLite ledger file and the stand-in on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from retention.config.settings import Settings, load_settings
from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.ledger.ledger import Ledger
from retention.ledger.models import AUDIT_EVENTS
from retention.services.open_ledger import open_ledger
from retention.services.policies_in_force import policies_in_force
from retention.services.policy_sync import sync_policies
from retention.services.recording import enrol
from retention.standin import StandIn
from retention.sweep.runner import sweep_once
from retention.sweep.summary import SweepSummary
from tests.helpers import write_config


@dataclass
class Env:
    """Settings, policies and ledger of one test, against one stand-in."""

    settings: Settings
    policies: PolicySet
    ledger: Ledger
    standin: StandIn
    path: Path

    def record(self, *ids: str, age: timedelta = timedelta(days=31), **kw: object) -> None:
        """Enrol IDs created `age` ago."""
        created = datetime.now(UTC) - age
        records = [NewRecord(response_id=i, created_at=created, **kw) for i in ids]  # type: ignore[arg-type]
        sync_policies(self.ledger, self.policies)  # as `retention record` applies them
        enrol(self.ledger, self.settings, self.policies, records)

    def sweep(self, **kw: object) -> SweepSummary:
        """Run one sweep now."""
        sync_policies(self.ledger, self.policies)  # as `retention sweep` applies them
        return asyncio.run(
            sweep_once(
                self.ledger, self.settings, self.policies, clock=lambda: datetime.now(UTC), **kw
            )
        )  # type: ignore[arg-type]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The ledger's events of one name, in order."""
        with self.ledger.read() as conn:
            lines = conn.execute(
                select(AUDIT_EVENTS.c.line)
                .where(AUDIT_EVENTS.c.event == name)
                .order_by(AUDIT_EVENTS.c.seq)
            ).scalars()
            return [json.loads(line) for line in lines]

    def deletes(self) -> list[str]:
        """IDs the stand-in was asked to DELETE, in order."""
        return [s.path.rsplit("/", 1)[1] for s in self.standin.store.seen if s.method == "DELETE"]


@pytest.fixture
def make_env(
    tmp_path: Path, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Env]]:
    """Build an Env; keyword arguments go to `write_config`."""
    monkeypatch.setenv("FW_TEST_KEY", "test-key")
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    made: list[Env] = []

    def build(**kw: str) -> Env:
        config = write_config(tmp_path, standin.base_url, **kw)
        settings = load_settings(config)
        policies = policies_in_force(settings)
        env = Env(settings, policies, open_ledger(settings), standin, tmp_path)
        made.append(env)
        return env

    yield build
    for env in made:
        env.ledger.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    """The default Env."""
    return make_env()


def on_postgres(pg_url: str, make_env: Callable[..., Env], mp: pytest.MonkeyPatch) -> Env:
    """An Env whose ledger is a fresh, migrated PostgreSQL database."""
    from retention.ledger.db import make_engine, upgrade

    mp.setenv("RETENTION_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    return make_env()
