"""A replica whose policies file lags behind the ledger (the kubelet has not refreshed its
ConfigMap yet) waits for its file instead of applying its older policies over the newer
ones, sweeps nothing meanwhile, and applies its own file again only after a grace period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from retention.config.policyfile import load_policies
from retention.core.times import utcnow
from retention.core.vocabulary import MetaKey
from retention.daemon.policy_watch import BEHIND_GRACE
from retention.daemon.service import Daemon
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.services.policy_sync import sync_policies
from tests.helpers import POLICIES
from tests.integration.conftest import Env

NEWER = POLICIES.replace("ttl: 30d", "ttl: 40d")
OTHER = POLICIES.replace("ttl: 30d", "ttl: 50d")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        """The time now."""
        return self.now


def _applied(ledger: Ledger) -> tuple[str | None, int]:
    """The digest the ledger applies, and how many `policy.loaded` records it holds."""
    with ledger.read() as conn:
        digest = queries.get_meta(conn, MetaKey.POLICY_DIGEST)
        count = conn.execute(
            text("SELECT count(*) FROM audit_events WHERE event = 'policy.loaded'")
        ).scalar_one()
    return digest, count


def _other_replica_applies(ledger: Ledger, folder: Path, policies: str) -> str:
    """What another replica whose file already changed does: apply it; its digest."""
    newer = folder / "newer-policies.yaml"
    newer.write_text(policies)
    parsed = load_policies(newer)
    sync_policies(ledger, parsed)
    return parsed.digest()


def test_a_lagging_replica_waits_for_its_file(make_env: Callable[..., Env]) -> None:
    """Newer policies in the ledger, this file unchanged: nothing re-applied and no sweep;
    once the file shows them they are adopted without another `policy.loaded`."""
    env = make_env()
    clock = Clock()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=clock)
    newer = _other_replica_applies(env.ledger, env.path, NEWER)
    daemon.follow_ledger_policies()
    assert _applied(daemon.ledger) == (newer, 2)
    assert daemon.policy_watch.behind_since == clock.now
    assert daemon.policies.digest() != newer
    clock.now += BEHIND_GRACE / 2
    daemon.follow_ledger_policies()  # still waiting, still not re-applied
    assert _applied(daemon.ledger) == (newer, 2)
    daemon.settings.policies_file.write_text(NEWER)  # the kubelet caught up
    daemon.follow_ledger_policies()
    assert daemon.policies.digest() == newer
    assert daemon.policy_watch.behind_since is None
    assert _applied(daemon.ledger) == (newer, 2)


def test_past_the_grace_its_own_file_wins(make_env: Callable[..., Env]) -> None:
    """A file that still differs after BEHIND_GRACE is applied (the replicas really read
    different files): the ledger is re-planned under it, with a `policy.loaded`."""
    env = make_env()
    clock = Clock()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=clock)
    _other_replica_applies(env.ledger, env.path, OTHER)
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is not None
    clock.now += BEHIND_GRACE + timedelta(seconds=1)
    daemon.follow_ledger_policies()
    assert _applied(daemon.ledger) == (daemon.policies.digest(), 3)
    assert daemon.policy_watch.behind_since is None


def test_in_step_when_the_ledger_applies_this_file(make_env: Callable[..., Env]) -> None:
    """The ledger applying this daemon's own policies is no lag: nothing waits."""
    env = make_env()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=Clock())
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is None
    assert _applied(daemon.ledger) == (daemon.policies.digest(), 1)
