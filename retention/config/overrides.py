"""Where each setting came from: the file, or an environment variable that won over it.

`retention.yaml` and a few environment variables can both set the same thing. Which one wins
is fixed (`$RETENTION_DATABASE_URL` over `database_url`; `audit.chain` over
`$RETENTION_AUDIT_CHAIN`; `server.ingest_token_file` over the token variable), and
`retention run` says so at start, one `config.override` line each, so a value from a forgotten
variable is never silent. Values are shown without passwords, and a token never.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from retention.logs import get_logger

if TYPE_CHECKING:
    from retention.config.settings import Settings

log = get_logger("retention.config")
DATABASE_URL_ENV = "RETENTION_DATABASE_URL"
CHAIN_ENV = "RETENTION_AUDIT_CHAIN"
CONFIG_ENV = "RETENTION_CONFIG"


@dataclass(frozen=True, slots=True)
class Override:
    """A key both `retention.yaml` and a variable set: which won, and what the other said."""

    key: str  # as retention.yaml names it
    env: str  # the variable
    winner: str  # "env" or "file"
    ignored: str | None  # the losing value as it may be shown; None when it is a secret


def find_overrides(node: Any, environ: Mapping[str, str]) -> tuple[Override, ...]:
    """Every key of the parsed `retention.yaml` (`node`) that a variable of `environ` also sets."""
    top = node if isinstance(node, dict) else {}
    audit, server = _section(top, "audit"), _section(top, "server")
    found: list[Override] = []
    url = environ.get(DATABASE_URL_ENV, "").strip()
    if url and isinstance(top.get("database_url"), str):
        found.append(
            Override("database_url", DATABASE_URL_ENV, "env", shown_url(top["database_url"]))
        )
    chain = environ.get(CHAIN_ENV, "")
    if chain and isinstance(audit.get("chain"), str) and audit["chain"] != chain:
        found.append(Override("audit.chain", CHAIN_ENV, "file", chain))
    token_env = server.get("ingest_token_env", "RETENTION_INGEST_TOKEN")
    if (
        server.get("ingest_token_file")
        and isinstance(token_env, str)
        and environ.get(token_env, "").strip()
    ):
        found.append(Override("server.ingest_token_file", token_env, "file", None))
    return tuple(found)


def _section(top: dict[str, Any], name: str) -> dict[str, Any]:
    """A mapping section of the file, or an empty one."""
    value = top.get(name)
    return value if isinstance(value, dict) else {}


def shown_url(url: str) -> str:
    """A database URL as it may be shown: the password replaced by `***`, no query (libpq
    takes `?password=` there); a SQLite URL as it is."""
    if url.lower().startswith("sqlite:"):
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    netloc = f"{userinfo}@{host}" if at else host
    scheme = parts.scheme.split("+", 1)[0]  # the driver is ours to choose, not the user's
    return urlunsplit((scheme, netloc, parts.path, "", ""))


def log_config(settings: Settings, explicit: str | None) -> None:
    """`config.loaded` (the file read, how it was chosen, the ledger, the chain) and one
    `config.override` line for each setting both the file and a variable gave."""
    env_file = os.environ.get(CONFIG_ENV)
    source = "-c" if explicit else (f"${CONFIG_ENV}" if env_file else "./retention.yaml")
    log.info(
        "config.loaded",
        file=str(settings.path.resolve()),
        source=source,
        ledger=shown_url(settings.database_url),
        chain=settings.audit.chain,
        policies_file=str(settings.policies_file),
    )
    if explicit and env_file and Path(env_file).resolve() != settings.path.resolve():
        log.warning(
            "config.override", key="-c", env=CONFIG_ENV, winner="-c", env_value_ignored=env_file
        )
    for found in settings.overrides:
        fields: dict[str, Any] = {"key": found.key, "env": found.env, "winner": found.winner}
        if found.ignored is not None:
            loser = "file" if found.winner == "env" else "env"
            fields[f"{loser}_value_ignored"] = found.ignored
        log.warning("config.override", **fields)
