"""Where captured IDs go: the daemon's ingest URL and token, checked once at set-up. Pure.

The token travels in every request, so the URL must be https, or http only to this machine
(a daemon on loopback, or a sidecar in the same pod); `user:password@`, a query or a fragment
in it are refused too, since the URL is shown in warnings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from retention.core.loopback import is_loopback
from retention.core.quoting import quote
from retention.errors import ConfigError


def ingest_url(value: object) -> str:
    """The daemon's base URL, without a trailing slash; ConfigError when it is not safe."""
    if not isinstance(value, str):
        raise ConfigError(f"expected a URL, got {quote(value)}", key="ingest_url")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise ConfigError(f"not a URL: {quote(value)}", key="ingest_url") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"expected an https:// URL, got {quote(value)}", key="ingest_url")
    if "@" in parts.netloc:
        raise ConfigError("credentials do not go in the URL; pass token=", key="ingest_url")
    if parts.query or parts.fragment:
        raise ConfigError("the daemon's base URL has no query or fragment", key="ingest_url")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"http:// is allowed only to loopback, got {quote(value)}: the ingest token must "
            "not travel in clear; serve the daemon over TLS and use https://",
            key="ingest_url",
        )
    return value.rstrip("/")


def token(value: object) -> str:
    """The ingest token: printable ASCII, no spaces (it goes in a header); never quoted back."""
    if not isinstance(value, str) or not value:
        raise ConfigError("the ingest token is empty or not a string", key="token")
    if not all("!" <= c <= "~" for c in value):
        raise ConfigError(
            "the ingest token holds a space, a control or a non-ASCII character", key="token"
        )
    return value
