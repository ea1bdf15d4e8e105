"""Callbacks a sweep offers its caller (a progress bar, metrics), all optional."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retention.provider.probe import ProbeResult


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a sweep reports as it goes."""

    progress: Callable[[int], None] | None = None  # n terminal outcomes committed
    request: Callable[[str, int | None], None] | None = None  # provider, HTTP status or None
    outcome: Callable[[str, str, float | None], None] | None = None  # provider, kind, lag s
    probe: Callable[[ProbeResult], None] | None = None  # a provider was probed

    def on_progress(self, n: int) -> None:
        """Terminal outcomes were committed."""
        if self.progress and n:
            self.progress(n)

    def on_request(self, provider: str, status: int | None) -> None:
        """The provider answered (None: no answer)."""
        if self.request:
            self.request(provider, status)

    def on_outcome(self, provider: str, kind: str, lag_s: float | None) -> None:
        """A record's outcome was committed; `lag_s` past its deadline for deletions."""
        if self.outcome:
            self.outcome(provider, kind, lag_s)

    def on_probe(self, result: ProbeResult) -> None:
        """A provider was probed before the sweep's first DELETE."""
        if self.probe:
            self.probe(result)
