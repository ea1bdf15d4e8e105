"""Discovery: enrol every stored response the provider lists that the ledger lacks.

The listing is newest first. A crawl reads pages until it meets responses older than the newest
one the last complete crawl saw (the high-water mark), or the end. Its cursor is saved with each
page's enrolments in one transaction, so an interrupted crawl resumes where it stopped, and the
high-water mark moves only when a crawl completes: no hole is left behind. Its ledger reads and
writes run in a worker thread, so the daemon's event loop never waits on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx

from retention.config.settings import Settings
from retention.core.ids import is_valid_id
from retention.core.policies import PolicySet
from retention.core.quoting import quote
from retention.core.record_input import MAX_KEY, MAX_META, MAX_NAME, MAX_VALUE, NewRecord
from retention.core.text import escaped
from retention.core.times import FUTURE_SKEW, format_time, parse_time
from retention.core.vocabulary import MetaKey, ObjectKind, meta_key
from retention.errors import (
    CursorRefused,
    DiscoveryUnsupported,
    InputError,
    ProviderError,
    RetentionError,
)
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import off_loop
from retention.logs import get_logger
from retention.provider.client import ProviderClient
from retention.services.recording import enrol_in

log = get_logger("retention.discover")
PAGE_SIZE = 100
# the kinds of stored object a provider may list, each crawled on its own; a provider without
# a listing of chat completions (most keep none) is no error, unlike one without responses'
LISTED_KINDS = (ObjectKind.RESPONSE, ObjectKind.CHAT_COMPLETION)


@dataclass
class DiscoverySummary:
    """What one discovery run did for one provider."""

    provider: str
    pages: int = 0
    listed: int = 0
    enrolled: int = 0
    invalid: int = 0
    complete: bool = False
    error: str | None = None
    unsupported: bool = False
    object: str = ObjectKind.RESPONSE  # what was listed: responses, or chat completions

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass
class CrawlState:
    """Per provider, kept in the ledger's meta table."""

    high_water: int | None = None  # created_at of the newest response of the last full crawl
    after: str | None = None  # the cursor of an unfinished crawl
    top: int | None = None  # the newest created_at the unfinished crawl saw
    last_complete: str | None = None
    listed_total: int = 0
    discovered_total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def key(provider: str, kind: str = ObjectKind.RESPONSE) -> str:
        """The meta key (a provider's responses; `PROVIDER/KIND` for another kind)."""
        name = provider if kind == ObjectKind.RESPONSE else f"{provider}/{kind}"
        return meta_key(MetaKey.DISCOVER, name)


def load_state(ledger: Ledger, provider: str, kind: str = ObjectKind.RESPONSE) -> CrawlState:
    """The crawl state of `provider`'s listing of `kind`."""
    with ledger.read() as conn:
        value = queries.get_meta(conn, CrawlState.key(provider, kind))
    return CrawlState(**json.loads(value)) if value else CrawlState()


def to_record(
    item: Any, provider: str, now: datetime | None = None, kind: str = ObjectKind.RESPONSE
) -> NewRecord | None:
    """A listing item as a record; None for an item that is not stored; ValueError if its ID
    is bad. The response is stored at the provider, so it is tracked whatever else its item
    holds: text the ledger cannot store is escaped and cut to size (`provider_text`,
    `provider_metadata`), and a creation time that is not one, or is later than `now` (plus
    skew), is left out: the response is then counted from when it was seen, and that time
    never moves the high-water mark."""
    if not isinstance(item, dict) or not is_valid_id(item.get("id")):
        raise ValueError("invalid item or response ID")
    if item.get("store") is False:
        return None
    # a chat completion says `created`, a response `created_at` (both unix seconds)
    created_at = _creation_time(item.get("created_at", item.get("created")))
    if created_at is not None and now is not None and created_at > now + FUTURE_SKEW:
        created_at = None
    model = item.get("model")
    previous = item.get("previous_response_id")
    return NewRecord(
        response_id=item["id"],
        object=kind,
        provider=provider,
        created_at=created_at,
        model=provider_text(model, MAX_NAME) if isinstance(model, str) and model else None,
        metadata=provider_metadata(item.get("metadata")),
        previous_response_id=previous if is_valid_id(previous) else None,
    )


def _creation_time(value: Any) -> datetime | None:
    """A listing item's creation time; None when absent or not a time (the response is then
    counted from when it was first seen: later than its true deadline, never earlier)."""
    if value is None:
        return None
    try:
        return parse_time(value, field="created_at")
    except (InputError, ValueError, OverflowError):
        return None


def provider_text(value: str, limit: int, *, name: bool = True) -> str:
    """A provider's string as the ledger can store it: flawed characters escaped, at most
    `limit` characters (a prefix still matches the globs policies use)."""
    return escaped(value, name=name)[:limit]


def provider_metadata(value: Any) -> dict[str, str]:
    """A listing item's metadata as the ledger can store it, never refused: keys and values
    escaped and cut to size, other values as their JSON text, at most MAX_META keys."""
    if not isinstance(value, dict):
        return {}
    result: dict[str, str] = {}
    for key, item in list(value.items())[:MAX_META]:
        if not isinstance(key, str) or not key:
            continue
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, str):
            text = item
        else:
            try:
                text = json.dumps(item, ensure_ascii=False, default=str)
            except (ValueError, RecursionError):
                text = type(item).__name__
        result[provider_text(key, MAX_KEY)] = provider_text(text, MAX_VALUE, name=False)
    return result


async def discover(
    ledger: Ledger,
    settings: Settings,
    policies: PolicySet,
    provider: str,
    *,
    clock: Callable[[], datetime],
    transport: httpx.AsyncBaseTransport | None = None,
    kind: str = ObjectKind.RESPONSE,
) -> DiscoverySummary:
    """Crawl `provider`'s listing of `kind` (stored responses, or stored chat completions)
    until complete; errors end the run with the cursor saved."""
    config = settings.providers[provider]
    key = config.api_key()
    report = DiscoverySummary(provider=provider, object=kind)
    state = await off_loop(load_state, ledger, provider, kind)
    client = ProviderClient(config, key, transport=transport)
    asked: set[str | None] = set()  # the cursors this run sent: one sent twice is a loop
    try:
        while not report.complete:
            if state.after in asked:
                page_name = "its first page" if state.after is None else quote(state.after)
                raise ProviderError(f"the listing loops: it led back to {page_name} again")
            asked.add(state.after)
            try:
                page = await client.list_page(limit=PAGE_SIZE, after=state.after, kind=kind)
            except (CursorRefused, DiscoveryUnsupported) as exc:
                if state.after is None:
                    raise
                # the saved cursor is gone (Llama Stack answers 400 once the response it names
                # is deleted): walk again from the top, still down to the old high-water mark
                log.info("discover.cursor_refused", provider=provider, error=exc.message)
                state.after = None
                continue
            report.pages += 1
            if state.after is not None and not page.items:
                # the response the cursor named was deleted or expired meanwhile: the crawl
                # restarts from the newest, still down to the old high-water mark, so no hole
                state.after = None
                continue
            records, reached = _read_page(page.items, state, report, provider, clock(), kind)
            report.complete = reached or not page.has_more or page.last_id is None
            await off_loop(
                _commit, ledger, settings, policies, state, records, page.last_id, report, clock()
            )
    except DiscoveryUnsupported as exc:
        report.unsupported = True
        if kind == ObjectKind.RESPONSE:  # the listing discovery is for: say it is missing
            report.error = exc.message
            log.warning("discover.failed", provider=provider, error=exc.message)
    except RetentionError as exc:
        report.error = exc.message
        log.warning("discover.failed", provider=provider, object=kind, error=exc.message)
    finally:
        await client.aclose()
    return report


def _read_page(
    items: list[Any],
    state: CrawlState,
    report: DiscoverySummary,
    provider: str,
    now: datetime | None = None,
    kind: str = ObjectKind.RESPONSE,
) -> tuple[list[NewRecord], bool]:
    """The page's records down to the high-water mark, and whether it was reached."""
    records: list[NewRecord] = []
    for item in items:
        try:
            record = to_record(item, provider, now, kind)
        except (ValueError, RetentionError):
            report.invalid += 1
            continue
        created = int(record.created_at.timestamp()) if record and record.created_at else None
        if created is not None and state.high_water is not None and created < state.high_water:
            return records, True
        report.listed += 1
        if state.top is None and created is not None:
            state.top = created
        if record is not None:
            records.append(record)
    return records, False


def _commit(
    ledger: Ledger,
    settings: Settings,
    policies: PolicySet,
    state: CrawlState,
    records: list[NewRecord],
    cursor: str | None,
    report: DiscoverySummary,
    now: datetime,
) -> None:
    """Enrol a page and move the cursor (or the high-water mark) in one transaction."""
    with ledger.write() as tx:
        enrolled = enrol_in(tx, settings, policies, records, source="discovery")
        report.enrolled += enrolled
        state.listed_total += len(records)
        state.discovered_total += enrolled
        if report.complete:
            state.high_water = state.top if state.top is not None else state.high_water
            state.after, state.top, state.last_complete = None, None, format_time(now)
        else:
            state.after = cursor
        key = CrawlState.key(report.provider, report.object)
        queries.set_meta(tx.conn, key, json.dumps(asdict(state)))
