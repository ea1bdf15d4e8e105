"""What every command needs, opened lazily once: settings, policies, the ledger."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from retention import logs
from retention.config.settings import Settings, find_config, load_settings
from retention.core.policies import PolicySet
from retention.core.times import utcnow
from retention.errors import UsageError

if TYPE_CHECKING:
    from retention.ledger.ledger import Ledger


@dataclass
class App:
    """Lazily opened settings, policies and ledger for one command."""

    config: str | None = None
    verbose: bool = False
    every_event: bool = False  # log the audit events (the daemon); else only with -v
    _settings: Settings | None = None
    _policies: PolicySet | None = None
    _ledger: Ledger | None = None
    _applied: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """The validated retention.yaml."""
        if self._settings is None:
            self._settings = load_settings(find_config(self.config))
        return self._settings

    @property
    def policies(self) -> PolicySet:
        """The validated policies file, joined by the holds placed in the ledger."""
        if self._policies is None:
            from retention.services.policies_in_force import policies_in_force

            self._policies = policies_in_force(self.settings, ledger=self.ledger)
        return self._policies

    @property
    def ledger(self) -> Ledger:
        """The ledger as it is, for reading (migrated when it is the embedded SQLite default)."""
        if self._ledger is None:
            from retention.ledger.audit_file import BULK_EVENTS
            from retention.services.open_ledger import open_ledger

            # a one-shot command logs a summary as it goes, and each event only with -v: the
            # events are in the ledger and the audit file anyway, and an import of 300,000 IDs
            # must not write 300,000 lines to a cron job's log
            quiet = not (self.verbose or self.every_event)
            # the daemon leaves out one line per ID recorded (BULK_EVENTS) unless -v: at fleet
            # rates they would cost more CPU than recording them, and drown the rest
            unlogged = frozenset() if self.verbose else BULK_EVENTS
            self._ledger = open_ledger(self.settings, alerts_only=quiet, unlogged=unlogged)
        return self._ledger

    def apply_policies(self) -> None:
        """Apply the policies file to the ledger (once per command), before a command records,
        sweeps, discovers or requeues IDs; reading commands leave the ledger as it is."""
        if not self._applied:
            from retention.services.policy_sync import sync_policies

            sync_policies(self.ledger, self.policies)
            self._applied = True

    def publish_checkpoint(self, record: dict[str, Any]) -> None:
        """Hand a new checkpoint to the configured witnesses (never raises)."""
        if not self.settings.audit.witness:
            return
        if "witnesses" not in self.extras:
            from retention.evidence.witness import Witnesses

            self.extras["witnesses"] = Witnesses(self.settings.audit.witness)
        self.extras["witnesses"].publish(record)

    def now(self) -> datetime:
        """The time commands act at."""
        return utcnow()

    def close(self) -> None:
        """Release the ledger."""
        if self._ledger is not None:
            self._ledger.close()
        if "witnesses" in self.extras:
            self.extras["witnesses"].close()


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def configure_logging(verbose: bool) -> None:
    """Info to stderr as JSON for machines; warnings only on a terminal, unless -v."""
    level = "info" if verbose or not sys.stderr.isatty() else "warning"
    chosen = os.environ.get("RETENTION_LOG_LEVEL", level).strip().lower() or level
    if chosen not in LOG_LEVELS:
        logs.configure(sys.stderr, level=level)
        raise UsageError(
            f"$RETENTION_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}, got {chosen!r}"
        )
    logs.configure(sys.stderr, level=chosen)


def app_of(ctx: click.Context) -> App:
    """The App of the running command."""
    return ctx.ensure_object(App)
