"""The summary of one sweep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from retention.core.times import format_time


@dataclass
class SweepReport:
    """Counts per provider and outcome, and what stopped the sweep early: `faults` names each
    provider whose part stopped (failed probe, open breaker) with its event and reason."""

    started_at: datetime
    finished_at: datetime | None = None
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    auth_failed: list[str] = field(default_factory=list)
    faults: dict[str, dict[str, str]] = field(default_factory=dict)
    brake: bool = False
    requests: int = 0

    def add(self, provider: str, kind: str) -> None:
        """Count one outcome."""
        self.counts.setdefault(provider, Counter())[kind] += 1

    def fault(self, provider: str, event: str, reason: str) -> None:
        """Note that `provider`'s part stopped (the first reason is kept)."""
        self.faults.setdefault(provider, {"event": event, "reason": reason})

    def total(self, kind: str) -> int:
        """One outcome summed over providers."""
        return sum(c[kind] for c in self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 when everything due was resolved; 1 when some deletions failed or must wait, or a
        provider was stopped."""
        unresolved = (
            self.total("failed") + self.total("deferred") + len(self.auth_failed) + len(self.faults)
        )
        return 1 if unresolved else 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (integers and strings only, fit for the audit trail)."""
        kinds = (
            "deleted",
            "absent",
            "failed",
            "deferred",
            "retry",
            "unconfirmed",
            "skipped",
            "stopped",
        )
        return {
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            **{kind: self.total(kind) for kind in kinds},
            "requests": self.requests,
            "providers": {p: dict(c) for p, c in sorted(self.counts.items())},
            "auth_failed": list(self.auth_failed),
            "provider_faults": {p: dict(f) for p, f in sorted(self.faults.items())},
            "brake": self.brake,
        }
