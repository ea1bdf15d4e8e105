"""Open the ledger: the one way every command, the daemon, the demo and the tests do it.

`open_ledger(settings)` opens the database `database_url` names (an embedded SQLite one is
created and migrated on first use), with the audit file sink and this writer's chain. With
`policies`, those are applied before it is returned: records re-planned under them and
`policy.loaded` written when they changed (nothing when they did not), so IDs recorded, swept,
discovered or requeued next are judged by the policies in force. Read-only callers (`status`,
`ls`, `explain`, exports, verification) pass no policies and write nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from retention.config.settings import Settings
from retention.core.policies import PolicySet
from retention.core.times import utcnow
from retention.ledger.audit_file import AuditSink
from retention.ledger.audit_rotation import RotationRule
from retention.ledger.db import open_engine
from retention.ledger.ledger import Ledger
from retention.services.policy_sync import sync_policies


def open_ledger(
    settings: Settings,
    *,
    policies: PolicySet | None = None,
    clock: Callable[[], datetime] = utcnow,
    log_events: bool = True,
    alerts_only: bool = False,
    unlogged: frozenset[str] = frozenset(),
) -> Ledger:
    """The ledger of `settings`; with `policies`, applied to it first. `log_events=False`
    keeps audit records out of the log (the demo prints its own lines); `alerts_only` logs
    only the events an operator must see (failures, provider faults); `unlogged` events are
    never logged one by one."""
    ledger = Ledger(
        open_engine(settings.database_url),
        AuditSink(
            settings.audit.file,
            log_events=log_events,
            alerts_only=alerts_only,
            unlogged=unlogged,
            rotation=RotationRule.of(settings.audit),
        ),
        chain=settings.audit.chain,
        clock=clock,
    )
    if policies is not None:
        try:
            sync_policies(ledger, policies)
        except BaseException:
            ledger.close()
            raise
    return ledger
