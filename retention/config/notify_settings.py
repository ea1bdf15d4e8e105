"""`notify` in retention.yaml: where the events an operator must see are sent (a webhook, or
syslog), each sink parsed and checked once, errors naming file, line and key."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retention.config.values import https_or_loopback, one_of, positive_duration, web_url
from retention.config.yamlfile import Reader
from retention.core.quoting import quote
from retention.core.vocabulary import Event, Notice
from retention.errors import ConfigError

# what a sink without `events` receives: failures, provider faults, overdue erasures, crashes
DEFAULT_EVENTS: tuple[str, ...] = (
    Event.RESPONSE_FAILED.value,
    "provider.*",
    Event.ERASURE_OVERDUE.value,
    Notice.SWEEP_CRASHED.value,
    "audit.file_*",
)
# every name a glob may match: the trail's events and the logged faults
KNOWN_EVENTS: tuple[str, ...] = (*(e.value for e in Event), *(n.value for n in Notice))
FACILITIES = {
    name: code
    for code, name in enumerate(
        ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron")
    )
} | {f"local{n}": 16 + n for n in range(8)}
SYSLOG_FORMATS = ("rfc5424", "bsd")
SPOOL_MAX_BYTES = 16 * 1024 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_WEBHOOK_KEYS = (
    "webhook",
    "token_env",
    "token_file",
    "events",
    "spool_file",
    "spool_max_bytes",
    "retry_interval",
    "retry_max",
    "timeout",
)
_SYSLOG_KEYS = ("syslog", "events", "facility", "format")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """One sink: a webhook (`webhook` set) or a syslog receiver (`syslog` set)."""

    webhook: str | None = None
    syslog: str | None = None  # udp://HOST:PORT or unix:PATH
    events: tuple[str, ...] = DEFAULT_EVENTS  # fnmatch globs over event names
    token_env: str | None = None  # the variable holding the bearer token, never the token
    token_file: Path | None = None
    spool_file: Path | None = None  # a webhook's events not delivered yet
    spool_max_bytes: int = SPOOL_MAX_BYTES
    retry_interval: timedelta = timedelta(seconds=5)  # the first wait after a failure; doubles
    retry_max: timedelta = timedelta(minutes=5)  # the longest wait between tries
    timeout: timedelta = timedelta(seconds=10)  # per request
    facility: str = "daemon"
    format: str = "rfc5424"  # syslog: rfc5424 or bsd
    key: str = "notify"  # `notify[N]` in `file` at `line`, for errors found at start
    file: str | None = None
    line: int | None = None

    @property
    def name(self) -> str:
        """How logs and metrics call it. A webhook's path and query may hold a secret (chat
        webhooks put one there): shown as the scheme, host and port, and the first 8 hex
        digits of the SHA-256 of the whole URL."""
        if self.syslog is not None:
            return self.syslog
        parts = urlsplit(self.webhook or "")
        netloc = parts.netloc.rpartition("@")[2]
        digest = hashlib.sha256((self.webhook or "").encode()).hexdigest()[:8]
        return f"{parts.scheme}://{netloc}#{digest}"

    def token(self) -> str | None:
        """The bearer token (file first, then variable), registered for redaction; None when
        neither is set. ConfigError naming the key, never a value, when it cannot be read."""
        # imported here: settings.py imports this module
        from retention.config.settings import header_safe_secret, read_secret

        if self.token_file is not None:
            key = f"{self.key}.token_file"
            token = read_secret(self.token_file, key, "the notify token file")
        elif self.token_env:
            key = f"{self.key}.token_env"
            token = os.environ.get(self.token_env, "").strip()
            if not token:
                raise ConfigError(
                    f"environment variable {self.token_env} is not set",
                    file=self.file,
                    line=self.line,
                    key=key,
                )
        else:
            return None
        if not token:
            raise ConfigError("the token is empty", file=self.file, line=self.line, key=key)
        return header_safe_secret(token, key, "the notify token")


def default_spool_folder(
    audit_file: Path | None, database_url: str, environ: Mapping[str, str]
) -> Path | None:
    """Where a webhook's spool goes when `spool_file` is not given: a folder the process must
    be able to write anyway. The audit file's; without one, the SQLite ledger's; else the
    process's state directory (`$STATE_DIRECTORY`, systemd's `StateDirectory=`). None when
    there is none of these (a PostgreSQL ledger without an audit file): never the folder of
    retention.yaml (read-only under systemd and on Kubernetes) or whatever the working
    directory happens to be (each command run from elsewhere would spool elsewhere)."""
    if audit_file is not None:
        return audit_file.parent
    if database_url.startswith("sqlite"):
        # imported here: an auditor's `audit verify FILE` loads the settings without SQLAlchemy
        # (a SQLite URL has been through it already: normalise_database_url)
        from sqlalchemy.engine import make_url

        database = make_url(database_url).database
        if database:
            return Path(database).parent
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state.startswith("/") else None


def notify_list(top: Reader, base: Path, spool_folder: Path | None) -> tuple[NotifySettings, ...]:
    """`notify`: a list of sinks, each given once. A webhook's spool defaults to
    `notify-HEX.spool.jsonl` in `spool_folder` (`default_spool_folder`); with none, a webhook
    must give `spool_file`."""
    items = top.get("notify", list, default=[])
    lines = getattr(items, "item_lines", [top.line_of("notify")] * len(items))
    result: dict[str, NotifySettings] = {}
    for index, item in enumerate(items):
        entry = Reader(item, file=top.file, path=f"notify[{index}]", line=lines[index])
        sink = _sink(entry, base, spool_folder)
        if sink.name in result:
            raise ConfigError(
                "this sink is listed twice", file=top.file, line=entry.line, key=entry.path
            )
        if sink.spool_file is not None and any(
            other.spool_file == sink.spool_file for other in result.values()
        ):
            raise entry.error("spool_file", "another webhook has this spool; give each its own")
        result[sink.name] = sink
    return tuple(result.values())


def _sink(r: Reader, base: Path, spool_folder: Path | None) -> NotifySettings:
    """One sink: exactly one of `webhook` and `syslog`."""
    if ("webhook" in r.node) == ("syslog" in r.node):
        raise ConfigError(
            "give exactly one of webhook and syslog", file=r.file, line=r.line, key=r.path
        )
    events = _events(r)
    if "syslog" in r.node:
        r.only(*_SYSLOG_KEYS)
        return NotifySettings(
            syslog=r.convert("syslog", _syslog_address, required=True),
            events=events,
            facility=r.convert("facility", one_of(*FACILITIES), "daemon"),
            format=r.convert("format", one_of(*SYSLOG_FORMATS), "rfc5424"),
            key=r.path,
            file=r.file,
            line=r.line,
        )
    r.only(*_WEBHOOK_KEYS)
    url = r.convert("webhook", _webhook_url, required=True)
    token_env, token_file = r.get("token_env", str), r.get("token_file", str)
    if token_env and token_file:
        raise r.error("token_file", "give token_env or token_file, not both")
    if token_env is not None and not _ENV_NAME.fullmatch(token_env):
        raise r.error("token_env", "expected the name of an environment variable, not a value")
    spool_file = _path(base, r.get("spool_file", str))
    if spool_file is None:
        if spool_folder is None:
            raise r.error(
                "spool_file",
                "required here: with no audit file and no SQLite ledger (and no "
                "$STATE_DIRECTORY) there is no writable folder to spool in by default; give a "
                "path this process can write, one that outlives the process (a restart sends "
                "what waits there)",
            )
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        spool_file = spool_folder / f"notify-{digest}.spool.jsonl"
    retry_interval = r.convert("retry_interval", positive_duration, timedelta(seconds=5))
    retry_max = r.convert("retry_max", positive_duration, timedelta(minutes=5))
    if retry_max < retry_interval:
        raise r.error("retry_max", "must be at least retry_interval")
    return NotifySettings(
        webhook=url,
        events=events,
        token_env=token_env,
        token_file=_path(base, token_file),
        spool_file=spool_file,
        spool_max_bytes=r.convert("spool_max_bytes", _bytes, SPOOL_MAX_BYTES),
        retry_interval=retry_interval,
        retry_max=retry_max,
        timeout=r.convert("timeout", _timeout, timedelta(seconds=10)),
        key=r.path,
        file=r.file,
        line=r.line,
    )


def _events(r: Reader) -> tuple[str, ...]:
    """`events`: globs, each matching at least one event name (a typo never silently matches
    nothing); the default set when absent."""
    globs = r.get("events", list)
    if globs is None:
        return DEFAULT_EVENTS
    if not globs:
        raise r.error("events", "list at least one event or glob (leave the key out for defaults)")
    for glob in globs:
        if not isinstance(glob, str) or not glob.strip():
            raise r.error("events", f"expected event names or globs, got {quote(glob)}")
        if not fnmatch.filter(KNOWN_EVENTS, glob):
            raise r.error("events", f"{quote(glob)} matches no event (see docs/configuration.md)")
    return tuple(dict.fromkeys(globs))


def _webhook_url(value: Any) -> str:
    """https, or http only to loopback; no credentials or fragment (a query may carry a token:
    the URL is registered as a secret when used, and never logged)."""
    parts = web_url(value)
    if parts.username or parts.password:
        raise ValueError("credentials do not go in the URL; use token_env or token_file")
    if parts.fragment:
        raise ValueError("a webhook URL has no fragment")
    https_or_loopback(parts, "use https://")
    return str(value)


def _syslog_address(value: Any) -> str:
    """`udp://HOST:PORT` (port 514 when left out) or `unix:/ABSOLUTE/PATH`."""
    if not isinstance(value, str):
        raise ValueError(f"expected udp://HOST:PORT or unix:/dev/log, got {quote(value)}")
    if value.startswith("unix:"):
        path = value.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(
                f"expected an absolute socket path (unix:/dev/log), got {quote(value)}"
            )
        return value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port must be from 1 to 65535, got {quote(value)}") from None
    if parts.scheme != "udp" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"expected udp://HOST:PORT or unix:/dev/log, got {quote(value)}")
    if parts.username or parts.password or parts.query or parts.fragment or port == 0:
        raise ValueError(f"expected udp://HOST:PORT or unix:/dev/log, got {quote(value)}")
    return value.rstrip("/")


def _timeout(value: Any) -> timedelta:
    """A request timeout: above 0, at most a minute (a hanging receiver holds up its sink)."""
    result = positive_duration(value)
    if result > timedelta(minutes=1):
        raise ValueError(f"at most 1m, got {quote(value)}")
    return result


def _bytes(value: Any) -> int:
    """A size in bytes, 4 KiB to 1 TiB."""
    if isinstance(value, bool) or not isinstance(value, int) or not 4096 <= value <= 2**40:
        raise ValueError(f"expected a number of bytes from 4096 to 2^40, got {quote(value)}")
    return value


def _path(base: Path, value: str | None) -> Path | None:
    """A configured path: ${VARS} expanded, relative to the configuration's folder."""
    return base / os.path.expandvars(value) if value else None
