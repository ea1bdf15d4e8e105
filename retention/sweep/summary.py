"""The summary of one sweep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from retention.core.times import format_time
from retention.core.vocabulary import Event, Outcome

# the outcomes a summary counts, in its order (`auth` and `error` are reported otherwise)
SUMMED = (
    Outcome.DELETED,
    Outcome.ABSENT,
    Outcome.FAILED,
    Outcome.DEFERRED,
    Outcome.RETRY,
    Outcome.UNCONFIRMED,
    Outcome.SKIPPED,
    Outcome.STOPPED,
    Outcome.UNSUPPORTED,
)


@dataclass
class SweepSummary:
    """Counts per provider and outcome, and what stopped the sweep early: `faults` names each
    provider whose part stopped (failed probe, open breaker) with its event and reason."""

    started_at: datetime
    finished_at: datetime | None = None
    counts: dict[str, Counter[Outcome]] = field(default_factory=dict)
    auth_failed: list[str] = field(default_factory=list)
    faults: dict[str, dict[str, str]] = field(default_factory=dict)
    brake: bool = False
    requests: int = 0

    def add(self, provider: str, kind: Outcome) -> None:
        """Count one outcome."""
        self.counts.setdefault(provider, Counter())[kind] += 1

    def fault(self, provider: str, event: Event, reason: str) -> None:
        """Note that `provider`'s part stopped (the first reason is kept)."""
        self.faults.setdefault(provider, {"event": event.value, "reason": reason})

    def total(self, kind: Outcome) -> int:
        """One outcome summed over providers."""
        return sum(c[kind] for c in self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 when everything due was resolved; 1 when some deletions failed or must wait, or a
        provider was stopped."""
        unresolved = (
            self.total(Outcome.FAILED)
            + self.total(Outcome.DEFERRED)
            + self.total(Outcome.UNSUPPORTED)
            + len(self.auth_failed)
            + len(self.faults)
        )
        return 1 if unresolved else 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (integers and strings only, fit for the audit trail)."""
        return {
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            **{kind.value: self.total(kind) for kind in SUMMED},
            "requests": self.requests,
            "providers": {
                p: {k.value: n for k, n in c.items()} for p, c in sorted(self.counts.items())
            },
            "auth_failed": list(self.auth_failed),
            "provider_faults": {p: dict(f) for p, f in sorted(self.faults.items())},
            "brake": self.brake,
        }
