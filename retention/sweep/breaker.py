"""A circuit breaker for connection-level failures: the provider's fault, not the IDs'.

When the connection fails (refused, reset before any answer, DNS, TLS) every ID sent meanwhile
fails alike; charging each an attempt would turn an outage into `failed` records. The breaker
counts such failures in a row across the provider's requests; any real answer restarts the
count; at THRESHOLD the provider pauses for the rest of the sweep, and the next sweep probes it
again before sending anything.
"""

from __future__ import annotations

from retention.provider.client import Answer

# a few in a row: every request in flight fails at once in a real outage (32 by default), while
# the rare dropped connection of a healthy provider almost never comes eight at a time
THRESHOLD = 8


class Breaker:
    """Opens after `threshold` connection failures in a row."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self.threshold = threshold
        self.in_a_row = 0
        self.open = False

    def observe(self, answer: Answer) -> bool:
        """Count one answer; True only for the failure that opens the breaker."""
        if not answer.connection_failed:
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        if self.open or self.in_a_row < self.threshold:
            return False
        self.open = True
        return True
