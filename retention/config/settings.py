"""Read `retention.yaml` into one frozen Settings object, validated once."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from retention.config.database_password import with_password
from retention.config.notify_settings import NotifySettings, default_spool_folder, notify_list
from retention.config.overrides import Override, find_overrides
from retention.config.values import https_or_loopback, one_of, positive_duration, web_url
from retention.config.yamlfile import Reader, load_yaml
from retention.core.durations import format_duration, parse_duration
from retention.core.quoting import quote
from retention.core.record_input import MAX_KEY
from retention.core.sizes import parse_size
from retention.core.text import name_flaw
from retention.errors import ConfigError
from retention.files import SecretFileError, read_secret_file
from retention.redaction import register_secret

PROVIDER_KINDS = ("fireworks", "openai", "azure")
DEFAULT_BASE_URLS = {  # Azure's is the operator's own resource: no default
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "openai": "https://api.openai.com/v1",
}
AUTH_STYLES = ("bearer", "api-key")  # the key as `Authorization: Bearer`, or an `api-key` header
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF and other controls split a header


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One provider account the daemon deletes from."""

    name: str
    kind: str
    base_url: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    account_id: str | None = None
    max_concurrency: int = 32
    rate_limit_per_s: float | None = None
    timeout_s: float = 10.0
    verify_after_delete: bool = False
    transport: str = "aiohttp"  # the connection pool under httpx: aiohttp | httpx
    auth: str = "bearer"  # how the key travels: a bearer token, or Azure's `api-key` header
    # how long the provider itself keeps a stored response; older IDs may be gone on their own,
    # so the visibility probe only asks about younger ones
    storage_period: timedelta = timedelta(days=30)

    def api_key(self) -> str:
        """Read the API key now (and register it for redaction); the error names where it was
        looked for and what is wrong, never a value."""
        where = f"providers.{self.name}"
        if self.api_key_file is not None:
            key = read_secret(self.api_key_file, f"{where}.api_key_file", "the API key file")
        else:
            key = os.environ.get(self.api_key_env or "", "").strip()
            if not key:
                raise ConfigError(
                    f"environment variable {self.api_key_env} is not set",
                    key=f"{where}.api_key_env",
                )
        if not key:
            raise ConfigError("the API key is empty", key=where)
        return header_safe_secret(key, where, "the API key")


# each secret file's text as last read, under the stat that names its version: ingest asks
# for the token on every request, and a stat is all it costs while the file stays as it was
_READ: dict[Path, tuple[tuple[int, ...], str]] = {}


def read_secret(path: Path, key: str, what: str) -> str:
    """A key or token file's text, stripped; ConfigError (exit 2) naming `key` and the file
    when it cannot be read, is open to group or others, or is not a key at all. Read again
    whenever the file is replaced, written, or its mode, owner or ACL changes (its ctime)."""
    version = _version(path)
    cached = _READ.get(path)
    if version is not None and cached is not None and cached[0] == version:
        return cached[1]
    text = _read_secret_now(path, key, what)
    if version is not None:
        _READ[path] = (version, text)
    return text


def _version(path: Path) -> tuple[int, ...] | None:
    """What changes when the file does: device, inode, size, mode, owner, mtime and ctime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mode, st.st_uid, st.st_mtime_ns, st.st_ctime_ns)


def _read_secret_now(path: Path, key: str, what: str) -> str:
    """`read_secret` from the file itself."""
    try:
        data = read_secret_file(path)
    except SecretFileError as exc:
        raise ConfigError(f"{what} {path} {exc}", key=key) from None
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} holds {_NOT_ASCII}", key=key) from None


def header_safe_secret(value: str, key: str, what: str) -> str:
    """`value` registered for redaction and returned, when it can travel in an HTTP header:
    printable ASCII only (ConfigError naming `key`, never the value, otherwise)."""
    register_secret(value)
    if _HEADER_UNSAFE.search(value):
        raise ConfigError(
            f"{what} holds a line break or another control character; it cannot go in an "
            "HTTP header (check the file or variable for stray text)",
            key=key,
        )
    if not value.isascii():
        raise ConfigError(f"{what} holds {_NOT_ASCII}", key=key)
    return value


_NOT_ASCII = (
    "a character that is not ASCII (a byte-order mark, a typographic quote or a non-breaking "
    "space?); it cannot go in an HTTP header"
)


@dataclass(frozen=True, slots=True)
class SweepSettings:
    """How sweeps run."""

    interval: timedelta = timedelta(seconds=60)
    batch_size: int = 500
    max_attempts: int = 8
    max_deletes_per_sweep: int = 100_000
    shutdown_grace: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class WitnessSettings:
    """One place off this host that receives a copy of every checkpoint: a folder or a URL."""

    dir: Path | None = None
    url: str | None = None
    token_env: str | None = None  # the variable holding the bearer token, never the token
    spool_file: Path | None = None  # what a URL witness could not send yet

    @property
    def name(self) -> str:
        """How logs and metrics call it: `dir:PATH`, or the URL without credentials or query."""
        if self.dir is not None:
            return f"dir:{self.dir}"
        parts = urlsplit(self.url or "")
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Where the audit trail goes."""

    file: Path | None
    chain: str = "main"
    signing_key_file: Path | None = None
    checkpoint_interval: timedelta = timedelta(hours=1)
    witness: tuple[WitnessSettings, ...] = ()
    rotate_bytes: int | None = None  # rotate the file once it holds this many bytes
    rotate_interval: timedelta | None = None  # ... or once its first record is this old
    keep: int | None = None  # rotated files kept; None keeps every one


@dataclass(frozen=True, slots=True)
class ErasureSettings:
    """Erasure by data subject: which metadata keys name a person, the key that pseudonymises
    their values in the ledger, and how long a request may stay open."""

    subject_keys: tuple[str, ...] = ("user_id",)
    key_file: Path | None = None
    deadline: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The daemon's HTTP surface."""

    listen: str = "127.0.0.1:8787"
    ingest_token_env: str | None = "RETENTION_INGEST_TOKEN"  # noqa: S105 - a variable's name
    ingest_token_file: Path | None = None
    header_timeout: timedelta = timedelta(seconds=10)  # a request head (and TLS handshake)
    body_timeout: timedelta = timedelta(seconds=30)  # a request body, from its head on
    keepalive_timeout: timedelta = timedelta(seconds=15)  # an idle connection between requests
    max_connections: int = 256  # open at once; lowered to what the fd limit leaves room for
    tls_cert_file: Path | None = None  # both or neither: https instead of http
    tls_key_file: Path | None = None
    # the line of each key given, for errors only found at start (a TLS file that won't load)
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def ingest_token(self) -> str | None:
        """The ingest token (file first, then environment), registered for redaction; None
        (or an empty file or variable) turns ingest off. A file that cannot be read or is open
        to group or others, or a token that cannot be a header value, is a ConfigError."""
        if self.ingest_token_file is not None:
            key = "server.ingest_token_file"
            token = read_secret(self.ingest_token_file, key, "the ingest token file")
        elif self.ingest_token_env:
            key = "server.ingest_token_env"
            token = os.environ.get(self.ingest_token_env, "").strip()
        else:
            return None
        return header_safe_secret(token, key, "the ingest token") if token else None


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated `retention.yaml`."""

    path: Path
    database_url: str
    policies_file: Path
    providers: dict[str, ProviderSettings]
    sweep: SweepSettings = field(default_factory=SweepSettings)
    discover_interval: timedelta = timedelta(minutes=15)
    audit: AuditSettings = field(default_factory=lambda: AuditSettings(file=None))
    server: ServerSettings = field(default_factory=ServerSettings)
    erasure: ErasureSettings = field(default_factory=ErasureSettings)
    notify: tuple[NotifySettings, ...] = ()  # where the events an operator must see go
    # what the file said and a variable overrode (or the reverse), for `run` to log at start
    overrides: tuple[Override, ...] = field(default=(), compare=False)

    def provider(self, name: str | None) -> ProviderSettings:
        """The provider called `name`, or the only/first one when `name` is None."""
        if name is None:
            return next(iter(self.providers.values()))
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(
                f"unknown provider {quote(name)}; configured: {', '.join(self.providers)}",
                file=str(self.path),
            ) from None


def find_config(explicit: str | None) -> Path:
    """`-c FILE`, else $RETENTION_CONFIG, else ./retention.yaml."""
    chosen = explicit or os.environ.get("RETENTION_CONFIG") or "retention.yaml"
    path = Path(chosen)
    if not path.is_file():
        hint = (
            ""
            if explicit or os.environ.get("RETENTION_CONFIG")
            else (" (pass -c FILE or set RETENTION_CONFIG)")
        )
        raise ConfigError(f"configuration file not found{hint}", file=str(path))
    return path


def load_settings(path: Path) -> Settings:
    """Parse and validate `retention.yaml` at `path`, applying environment overrides."""
    top = Reader(load_yaml(path) or None, file=str(path), line=1)
    top.only(
        "database_url",
        "database_password_file",
        "policies_file",
        "providers",
        "sweep",
        "discover",
        "audit",
        "server",
        "erasure",
        "notify",
    )
    base = path.resolve().parent
    from_env = os.environ.get("RETENTION_DATABASE_URL", "").strip()
    url = from_env or top.get("database_url", str, "sqlite:///retention.db")
    try:
        database_url = normalise_database_url(url, Path.cwd() if from_env else base)
    except ValueError as exc:
        raise top.error("database_url", str(exc)) from None
    password_file = path_in(base, top.get("database_password_file", str))
    if password_file is not None:
        try:
            database_url = with_password(database_url, password_file)
        except ValueError as exc:
            raise top.error("database_password_file", str(exc)) from None
    return Settings(
        path=path,
        database_url=database_url,
        policies_file=base / top.get("policies_file", str, "policies.yaml"),
        providers=_providers(top.child("providers", required=True), base),
        sweep=_sweep(top.child("sweep")),
        discover_interval=_discover(top.child("discover")).convert(
            "interval", parse_duration, timedelta(minutes=15)
        ),
        audit=_audit(top.child("audit"), base),
        server=_server(top.child("server"), base),
        erasure=_erasure(top.child("erasure"), base),
        notify=notify_list(top, base, _notify_spool_folder(top, base, database_url)),
        overrides=find_overrides(top.node, os.environ),
    )


def _notify_spool_folder(top: Reader, base: Path, database_url: str) -> Path | None:
    """Where webhook spools go by default: the audit file's folder, else the SQLite ledger's,
    else $STATE_DIRECTORY; None without any (notify_settings.default_spool_folder)."""
    audit = top.node.get("audit")
    name = audit.get("file", "audit.jsonl") if isinstance(audit, dict) else "audit.jsonl"
    audit_file = base / name if isinstance(name, str) and name else None
    return default_spool_folder(audit_file, database_url, os.environ)


def normalise_database_url(url: str, base: Path) -> str:
    """Make a SQLite path absolute against `base`, and pick psycopg 3 for postgresql://."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        # imported here: an auditor's `audit verify FILE` loads this module without SQLAlchemy
        from sqlalchemy.engine import URL, make_url
        from sqlalchemy.exc import ArgumentError

        try:
            database = make_url(url).database if url.startswith("sqlite:///") else None
        except ArgumentError:
            database = None
        if not database or database == ":memory:":
            raise ValueError("use sqlite:///path/to/file.db (a file; the ledger must persist)")
        absolute = str((base / database).resolve())
        return URL.create("sqlite", database=absolute).render_as_string(hide_password=False)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg:" + url.split(":", 1)[1]
    if scheme.startswith("postgresql+"):
        return url
    raise ValueError(
        f"unsupported database URL scheme {quote(scheme)}; use sqlite:/// or postgresql://"
    )


def _providers(reader: Reader, base: Path) -> dict[str, ProviderSettings]:
    """Every configured provider."""
    if not reader.node:
        raise ConfigError(
            "at least one provider is required", file=reader.file, line=reader.line, key="providers"
        )
    return {name: _provider(reader, name, base) for name in reader.node}


def _provider(parent: Reader, name: str, base: Path) -> ProviderSettings:
    """One provider's settings."""
    if not _NAME.fullmatch(name):
        raise parent.error(name, "provider names are letters, digits, '-' and '_'")
    r = parent.child(name)
    r.only(
        "kind",
        "base_url",
        "api_key_env",
        "api_key_file",
        "account_id",
        "max_concurrency",
        "rate_limit_per_s",
        "timeout_s",
        "verify_after_delete",
        "transport",
        "storage_period",
        "auth",
    )
    kind = r.get("kind", str, "fireworks")
    if kind not in PROVIDER_KINDS:
        raise r.error("kind", f"expected one of {', '.join(PROVIDER_KINDS)}, got {quote(kind)}")
    if kind not in DEFAULT_BASE_URLS and "base_url" not in r.node:
        raise r.error(
            "base_url",
            f"kind {kind} needs its base URL (https://RESOURCE.openai.azure.com/openai/v1)",
        )
    key_env, key_file = r.get("api_key_env", str), r.get("api_key_file", str)
    if bool(key_env) == bool(key_file):
        raise r.error("api_key_env", "give exactly one of api_key_env and api_key_file")
    return ProviderSettings(
        name=name,
        kind=kind,
        base_url=r.convert("base_url", _base_url, DEFAULT_BASE_URLS.get(kind, "")),
        api_key_env=key_env,
        api_key_file=path_in(base, key_file),
        account_id=r.convert("account_id", _header_value, None),
        max_concurrency=r.convert("max_concurrency", _positive_int(1024), 32),
        rate_limit_per_s=r.convert("rate_limit_per_s", _positive_number, None),
        timeout_s=r.convert("timeout_s", _positive_number, 10.0),
        verify_after_delete=r.get("verify_after_delete", bool, False),
        transport=r.convert("transport", one_of("aiohttp", "httpx"), "aiohttp"),
        storage_period=r.convert("storage_period", positive_duration, timedelta(days=30)),
        auth=r.convert("auth", one_of(*AUTH_STYLES), "api-key" if kind == "azure" else "bearer"),
    )


def _header_value(value: Any) -> str:
    """Text that may travel in an HTTP header: no line breaks or other control characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {quote(value)}")
    if _HEADER_UNSAFE.search(value):
        raise ValueError("holds a line break or another control character")
    if not value.isascii():
        raise ValueError(f"holds {_NOT_ASCII}")
    return value.strip()


def _base_url(value: Any) -> str:
    """An https URL, or http only to a loopback address (the stand-in); never a plain-text key."""
    parts = web_url(value)
    if parts.query or parts.fragment:
        raise ValueError("a base URL has no query or fragment")
    if parts.username or parts.password:  # it would be logged, signed into the trail, shown
        raise ValueError("credentials do not go in the URL; use api_key_env or api_key_file")
    https_or_loopback(parts, "the API key must not travel in clear")
    return str(value).rstrip("/")


def _positive_int(maximum: int) -> Any:
    """A parser for integers in 1..maximum."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise ValueError(f"expected an integer from 1 to {maximum}, got {quote(value)}")
        return value

    return parse


def _positive_number(value: Any) -> float:
    """A number above zero."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a number above 0, got {quote(value)}")
    return float(value)


def _sweep(r: Reader) -> SweepSettings:
    """The `sweep` section."""
    r.only("interval", "batch_size", "max_attempts", "max_deletes_per_sweep", "shutdown_grace")
    return SweepSettings(
        # above 0, checked here for every command: the daemon sweeps on this timer
        interval=r.convert("interval", positive_duration, timedelta(seconds=60)),
        batch_size=r.convert("batch_size", _positive_int(100_000), 500),
        max_attempts=r.convert("max_attempts", _positive_int(1000), 8),
        max_deletes_per_sweep=r.convert("max_deletes_per_sweep", _positive_int(10**9), 100_000),
        shutdown_grace=r.convert("shutdown_grace", parse_duration, timedelta(seconds=30)),
    )


def _discover(r: Reader) -> Reader:
    """The `discover` section, checked for unknown keys."""
    r.only("interval")
    return r


def _audit(r: Reader, base: Path) -> AuditSettings:
    """The `audit` section."""
    r.only(
        "file",
        "chain",
        "signing_key_file",
        "checkpoint_interval",
        "witness",
        "rotate_bytes",
        "rotate_interval",
        "keep",
    )
    audit_file = r.get("file", str, "audit.jsonl")
    chain = r.get("chain", str, os.environ.get("RETENTION_AUDIT_CHAIN", "main"))
    if not _NAME.fullmatch(chain):
        if r.node.get("chain") is None:  # the variable's (a pod's name, on Kubernetes)
            raise ConfigError(
                f"chain names are 1 to 64 letters, digits, '-' and '_', got {quote(chain)}",
                key="$RETENTION_AUDIT_CHAIN",
            )
        raise r.error("chain", "chain names are letters, digits, '-' and '_'")
    key_file = r.get("signing_key_file", str, "audit-signing.key")
    rotate_bytes = r.convert("rotate_bytes", _positive_size, None)
    rotate_interval = r.convert("rotate_interval", parse_duration, None) or None  # 0: off
    keep = r.convert("keep", _positive_int(1_000_000), None)
    if keep is not None and rotate_bytes is None and rotate_interval is None:
        raise r.error("keep", "keeps rotated files: set rotate_bytes or rotate_interval too")
    return AuditSettings(
        file=base / audit_file if audit_file else None,
        chain=chain,
        signing_key_file=path_in(base, key_file),
        checkpoint_interval=r.convert("checkpoint_interval", parse_duration, timedelta(hours=1)),
        witness=_witnesses(r, base),
        rotate_bytes=rotate_bytes,
        rotate_interval=rotate_interval,
        keep=keep,
    )


def _positive_size(value: Any) -> int:
    """A size above zero, with its unit (`100MiB`)."""
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"expected a size above 0, got {quote(value)}")
    return size


def _erasure(r: Reader, base: Path) -> ErasureSettings:
    """The `erasure` section."""
    r.only("subject_keys", "key_file", "deadline")
    keys = r.get("subject_keys", list, ["user_id"])
    checked: list[str] = []
    for key in keys:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY or name_flaw(key):
            raise r.error(
                "subject_keys",
                f"a metadata key is 1 to {MAX_KEY} printable characters, got {quote(key)}",
            )
        if key in checked:
            raise r.error("subject_keys", f"{quote(key)} is listed twice")
        checked.append(key)
    if not checked:
        raise r.error("subject_keys", "list at least one metadata key (the default is [user_id])")
    return ErasureSettings(
        subject_keys=tuple(checked),
        key_file=path_in(base, r.get("key_file", str, "erasure.key")),
        deadline=r.convert("deadline", positive_duration, timedelta(days=30)),
    )


def _witnesses(r: Reader, base: Path) -> tuple[WitnessSettings, ...]:
    """`audit.witness`: a list of folders and URLs, each given once."""
    items = r.get("witness", list, default=[])
    lines = getattr(items, "item_lines", [r.line_of("witness")] * len(items))
    result: dict[str, WitnessSettings] = {}
    for index, item in enumerate(items):
        entry = Reader(item, file=r.file, path=r.key(f"witness[{index}]"), line=lines[index])
        witness = _witness(entry, base)
        if witness.name in result:
            raise ConfigError(
                "this witness is listed twice", file=r.file, line=entry.line, key=entry.path
            )
        result[witness.name] = witness
    return tuple(result.values())


def _witness(r: Reader, base: Path) -> WitnessSettings:
    """One witness: exactly one of `dir` and `url`; a URL may have `token_env`, `spool_file`."""
    r.only("dir", "url", "token_env", "spool_file")
    folder, url = r.get("dir", str), r.convert("url", _witness_url)
    if bool(folder) == bool(url):
        raise ConfigError("give exactly one of dir and url", file=r.file, line=r.line, key=r.path)
    if folder:
        for name in ("token_env", "spool_file"):
            if name in r.node:
                raise r.error(name, "only a url witness has this key")
        return WitnessSettings(dir=path_in(base, folder))
    token_env = r.get("token_env", str)
    if token_env is not None and not _ENV_NAME.fullmatch(token_env):
        raise r.error("token_env", "expected the name of an environment variable, not a value")
    default_spool = f"witness-{hashlib.sha256(url.encode()).hexdigest()[:12]}.spool.jsonl"
    return WitnessSettings(
        url=url,
        token_env=token_env,
        spool_file=path_in(base, r.get("spool_file", str) or default_spool),
    )


def _witness_url(value: Any) -> str:
    """A base URL's rules (https, or http to loopback), with no credentials in it; kept as given."""
    if isinstance(value, str) and "@" in urlsplit(value).netloc:
        raise ValueError("credentials do not go in the URL; name a variable in token_env")
    _base_url(value)
    return str(value)


def _server(r: Reader, base: Path) -> ServerSettings:
    """The `server` section."""
    r.only(
        "listen",
        "ingest_token_env",
        "ingest_token_file",
        "header_timeout",
        "body_timeout",
        "keepalive_timeout",
        "max_connections",
        "tls_cert_file",
        "tls_key_file",
    )
    token_file = r.get("ingest_token_file", str)
    cert, key = r.get("tls_cert_file", str), r.get("tls_key_file", str)
    if bool(cert) != bool(key):
        missing = "tls_key_file" if cert else "tls_cert_file"
        raise r.error(missing, "give both tls_cert_file and tls_key_file, or neither")
    timeout = _duration_up_to(timedelta(hours=1))
    return ServerSettings(
        listen=r.convert("listen", _listen, "127.0.0.1:8787"),
        ingest_token_env=r.get("ingest_token_env", str, "RETENTION_INGEST_TOKEN"),
        ingest_token_file=path_in(base, token_file),
        header_timeout=r.convert("header_timeout", timeout, timedelta(seconds=10)),
        body_timeout=r.convert("body_timeout", timeout, timedelta(seconds=30)),
        keepalive_timeout=r.convert("keepalive_timeout", timeout, timedelta(seconds=15)),
        max_connections=r.convert("max_connections", _positive_int(65536), 256),
        tls_cert_file=path_in(base, cert),
        tls_key_file=path_in(base, key),
        key_lines={name: r.line_of(name) or 0 for name in r.node},
    )


def split_listen(listen: Any) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) into its parts; ValueError saying what is wrong. Port 0
    asks the system for any free port (what tests use)."""
    host, sep, port = listen.rpartition(":") if isinstance(listen, str) else ("", "", "")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise ValueError(f"expected host:port, got {quote(listen)}")
    if int(port) > 65535:
        raise ValueError(f"the port must be from 1 to 65535 (0: any free one), got {port}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen(value: Any) -> str:
    """A valid `server.listen`, as given."""
    split_listen(value)
    return str(value)


def _duration_up_to(maximum: timedelta) -> Any:
    """A parser for durations above zero and at most `maximum`."""

    def parse(value: Any) -> timedelta:
        result = positive_duration(value)
        if result > maximum:
            raise ValueError(f"at most {format_duration(maximum)}, got {quote(value)}")
        return result

    return parse


def path_in(base: Path, value: str | None) -> Path | None:
    """A configured file path: ${VARS} expanded (systemd's $CREDENTIALS_DIRECTORY), relative
    paths counted from the configuration's folder."""
    return base / os.path.expandvars(value) if value else None
