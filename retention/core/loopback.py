"""Whether a host names this machine: where a key or token may travel over plain http."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost` (any case), or an address in 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
