"""A replica whose policies file lags behind another replica's copy of the same file (the
kubelet has not refreshed its ConfigMap yet) waits for its file instead of applying its older
policies over the newer ones, and sweeps nothing meanwhile; anything else that applied other
policies (a command with another policies file, holds placed in the ledger, a refused file)
never makes a daemon wait: it applies its own at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from retention.config.policyfile import load_policies
from retention.core.record_input import NewRecord
from retention.core.times import utcnow
from retention.core.vocabulary import MetaKey
from retention.daemon.policy_watch import BEHIND_GRACE, fingerprint, recorded_file
from retention.daemon.service import Daemon
from retention.errors import LedgerError
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.services.holds import checked_hold, place_hold
from retention.services.policies_in_force import policies_in_force
from retention.services.policy_sync import sync_policies
from tests.helpers import POLICIES
from tests.integration.conftest import Env

NEWER = POLICIES.replace("ttl: 30d", "ttl: 40d")
OTHER = POLICIES.replace("ttl: 30d", "ttl: 50d")
BAD = "version: 1\ndefault:\n  ttl: 3 parsecs\n"


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


def _replicas(env: Env, clock: Clock) -> tuple[Daemon, Daemon]:
    """Two daemons on one ledger reading the same path (`policies.yaml`), started together
    (as on two nodes: each its own copy of the file, which `_sees_new_copy` plays on one)."""
    sync_policies(env.ledger, env.policies)
    lagging = Daemon(env.settings, env.policies, env.ledger, clock=clock)
    first = Daemon(env.settings, env.policies, env.ledger, clock=clock)
    return lagging, first


def _sees_new_copy(daemon: Daemon, clock: Clock, content: str) -> None:
    """`daemon`'s copy of the file changes to `content` and it applies it (as its poll does);
    the file is then put back for the other replica, whose copy has not changed."""
    path = daemon.settings.policies_file
    before = path.read_text()
    clock.now += timedelta(seconds=5)
    path.write_text(content)
    asyncio.run(daemon.reload())
    path.write_text(before)


def _command_applies(env: Env, content: str, name: str = "other-policies.yaml") -> str:
    """What a command run with another configuration does: apply its policies file; its
    digest."""
    other = env.path / name
    other.write_text(content)
    parsed = load_policies(other)
    sync_policies(env.ledger, parsed)
    return parsed.digest()


def test_a_lagging_replica_waits_for_its_file(make_env: Callable[..., Env]) -> None:
    """A replica's newer copy of the same file in the ledger, this copy unchanged: nothing
    re-applied and no sweep; once the copy shows it, it is adopted without another
    `policy.loaded`, and both replicas are in step."""
    env = make_env()
    clock = Clock()
    lagging, first = _replicas(env, clock)
    _sees_new_copy(first, clock, NEWER)
    newer = first.policies.digest()
    lagging.follow_ledger_policies()
    assert _applied(env.ledger) == (newer, 2)
    assert lagging.policy_watch.behind_since == clock.now
    assert lagging.policies.digest() != newer
    clock.now += BEHIND_GRACE / 2
    lagging.follow_ledger_policies()  # still waiting, still not re-applied
    assert _applied(env.ledger) == (newer, 2)
    with pytest.raises(LedgerError, match="catching up"):  # ingest: 503, send again later
        lagging._commit_ingest([[NewRecord(response_id="resp_during_wait", provider=None)]])
    env.settings.policies_file.write_text(NEWER)  # the kubelet caught up
    lagging.follow_ledger_policies()
    first.follow_ledger_policies()
    assert lagging.policies.digest() == first.policies.digest() == newer
    assert lagging.policy_watch.behind_since is None is first.policy_watch.behind_since
    assert _applied(env.ledger) == (newer, 2)


def test_past_the_grace_its_own_file_wins(make_env: Callable[..., Env]) -> None:
    """A file that still differs after BEHIND_GRACE is applied (the replicas really read
    different files): the ledger is re-planned under it, with a `policy.loaded`; the replica
    that read its file later applies its own again at once, without waiting."""
    env = make_env()
    clock = Clock()
    lagging, first = _replicas(env, clock)
    _sees_new_copy(first, clock, OTHER)
    lagging.follow_ledger_policies()
    assert lagging.policy_watch.behind_since is not None
    clock.now += BEHIND_GRACE + timedelta(seconds=1)
    lagging.follow_ledger_policies()
    assert _applied(env.ledger) == (lagging.policies.digest(), 3)
    assert lagging.policy_watch.behind_since is None
    with env.ledger.read() as conn:
        assert recorded_file(conn).sha256 == fingerprint(env.settings.policies_file)  # type: ignore[union-attr]
    env.settings.policies_file.write_text(OTHER)  # the first replica's copy, as it reads it
    first.follow_ledger_policies()
    assert first.policy_watch.behind_since is None
    assert _applied(env.ledger) == (first.policies.digest(), 4)


def test_in_step_when_the_ledger_applies_this_file(make_env: Callable[..., Env]) -> None:
    """The ledger applying this daemon's own policies is no lag: nothing waits."""
    env = make_env()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=Clock())
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is None
    assert _applied(daemon.ledger) == (daemon.policies.digest(), 1)


def test_a_command_with_another_policies_file_does_not_stop_sweeps(
    make_env: Callable[..., Env],
) -> None:
    """A command applying another policies file (under which nothing is due) is overruled at
    the daemon's next look, without waiting, and its next sweep deletes what is due under
    the daemon's own policies."""
    env = make_env()
    env.record("resp_due")  # 31 days old: due under 30d, not under 50d
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=Clock())
    _command_applies(env, OTHER)
    asyncio.run(daemon._one_sweep())
    assert daemon.policy_watch.behind_since is None
    assert _applied(env.ledger) == (env.policies.digest(), 3)
    assert env.deletes() == ["resp_due"]


def test_a_command_applying_the_edited_file_is_adopted(make_env: Callable[..., Env]) -> None:
    """The file edited and applied by a command before the daemon's poll saw it: the daemon
    reads it again and adopts it, with no wait and no other `policy.loaded`."""
    env = make_env()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=Clock())
    env.settings.policies_file.write_text(NEWER)
    edited = policies_in_force(env.settings, ledger=env.ledger)
    sync_policies(env.ledger, edited)
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is None
    assert daemon.policies.digest() == edited.digest()
    assert _applied(env.ledger) == (edited.digest(), 2)


def test_a_refused_file_is_not_settled(make_env: Callable[..., Env]) -> None:
    """A refused file is not what the policies in force came from: the poll leaves it be,
    and other policies a command applied are overruled at once by the last good ones."""
    env = make_env()
    sync_policies(env.ledger, env.policies)
    clock = Clock()
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=clock)
    good = daemon.policy_watch.seen
    env.settings.policies_file.write_text(BAD)
    asyncio.run(daemon.reload())
    assert daemon.policy_watch.seen == good
    assert daemon.policy_watch.refused == fingerprint(env.settings.policies_file)
    assert not daemon.policy_watch.changed()  # no reading it again every 2 s
    clock.now += timedelta(seconds=5)
    _command_applies(env, OTHER)
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is None
    assert _applied(env.ledger) == (env.policies.digest(), 3)


def test_holds_placed_in_the_ledger_are_no_lag(make_env: Callable[..., Env]) -> None:
    """A hold another process placed changes the ledger's digest, not the file it applies:
    the daemon adopts the hold at once, with no wait and no `policy.loaded`."""
    env = make_env()
    sync_policies(env.ledger, env.policies)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=Clock())
    request = checked_hold(env.settings, now=utcnow(), ids=["resp_1"], reason="litigation")
    placed = place_hold(env.ledger, policies_in_force(env.settings), request, actor="cli:t")
    daemon.follow_ledger_policies()
    assert daemon.policy_watch.behind_since is None
    assert placed["name"] in {h.name for h in daemon.policies.holds}
    assert _applied(env.ledger) == (daemon.policies.digest(), 1)
