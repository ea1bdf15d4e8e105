"""The one error tree of retention. Each class's docstring is its default message.

    RetentionError
    ├── UsageError                  exit 2: bad usage, configuration or input
    │   ├── ConfigError             a configuration or policies file is invalid (file:line: key)
    │   ├── InvalidIdError          a response ID that may not reach a URL
    │   ├── InputError              a record, import row or time value is invalid
    │   ├── NotFoundError           the thing named (a hold) does not exist
    │   └── ConflictError           the ledger's state refuses the request (a name taken)
    ├── LedgerError                 the ledger database failed or is not what we expect
    │   └── SchemaOutdatedError     the ledger needs `retention db upgrade`
    ├── ProviderError               the provider could not be asked
    │   ├── ProviderAuthError       the provider refused our credentials
    │   └── DiscoveryUnsupported    the provider has no listing of stored responses
    └── AuditError                  the audit trail could not be written or read

The CLI maps UsageError to exit 2 and every other RetentionError to exit 1; nothing else
turns an exception into an exit code.
"""

from __future__ import annotations


class RetentionError(Exception):
    """retention failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0])


class UsageError(RetentionError):
    """Bad usage, configuration or input."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration or policies file is invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file, self.line, self.key = file, line, key
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")


class InvalidIdError(UsageError):
    """A response ID must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$ and is never sent otherwise."""


class InputError(UsageError):
    """A record, import row or time value is invalid."""


class NotFoundError(UsageError):
    """The thing named does not exist."""


class ConflictError(UsageError):
    """The request conflicts with what the ledger holds."""


class LedgerError(RetentionError):
    """The ledger database failed."""


class SchemaOutdatedError(LedgerError):
    """The ledger's schema is not current; run `retention db upgrade`."""


class SweeperBusyError(LedgerError):
    """Another retention process is sweeping this SQLite ledger; use PostgreSQL for replicas."""


class ProviderError(RetentionError):
    """The provider could not be asked."""


class ProviderAuthError(ProviderError):
    """The provider refused our credentials; nothing was deleted for it in this sweep."""


class DiscoveryUnsupported(ProviderError):
    """This provider does not list stored responses; record IDs where they are made."""


class CursorRefused(ProviderError):
    """The provider refused a listing's saved cursor (the response it named is gone)."""


class AuditError(RetentionError):
    """The audit trail could not be written or read."""
