"""`retention run`: sweeps on a schedule, the HTTP surface, signals and systemd, in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Connection

from retention import __version__
from retention.config.settings import Settings, split_listen
from retention.core.loopback import is_loopback
from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.vocabulary import Event, MetaKey, Notice, Outcome
from retention.daemon import fdlimit, systemd
from retention.daemon.connections import ConnectionLimits, ConnectionTable, watch
from retention.daemon.group_commit import GroupCommit
from retention.daemon.http import make_app
from retention.daemon.listener import GuardedRunner, Listener, open_sockets
from retention.daemon.metrics import Metrics
from retention.daemon.policy_watch import (
    POLL_EVERY,
    FileRecord,
    PolicyWatch,
    Reading,
    record_file,
    recorded_file,
)
from retention.daemon.throttled_log import ThrottledLog
from retention.daemon.tls import server_context
from retention.daemon.write_gate import WriteGate
from retention.discover import LISTED_KINDS, discover
from retention.errors import ConfigError, LedgerError, RetentionError, UsageError
from retention.evidence.checkpoints import write_checkpoint
from retention.evidence.signing_key import Signer
from retention.evidence.witness import Witnesses
from retention.ledger import queries
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import off_loop
from retention.logs import get_logger
from retention.notify.notifier import Notifier
from retention.provider.client import ProviderClient
from retention.provider.probe import ProbeResult
from retention.services import subject_index
from retention.services.holds import lift_expired
from retention.services.policies_in_force import policies_in_force
from retention.services.policy_sync import sync_policies
from retention.services.recording import EnrolResult, enrol_group
from retention.services.subject_key import subject_key
from retention.sweep.probing import probe_with_ledger
from retention.sweep.runner import exclusive, sweep_once
from retention.sweep.summary import SweepSummary

log = get_logger("retention.daemon")
BACKFILL_JOB = "subject-backfill"
WORKER_THREADS = 16
BACKFILL_EVERY = 2.0  # seconds between steps of the subject backfill of an older ledger
BACKFILL_BATCHES = 5  # batches (subject_index.BATCH records each) a step
HOLD_EXPIRY_EVERY = 2.0  # seconds between looks for a placed hold whose `until` has come


def file_fingerprint(path: Path) -> str:
    """The SHA-256 of a file's bytes, or why it cannot be read (a missing file is one state)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def failure(exc: BaseException) -> dict[str, Any]:
    """Log fields for a job that failed: our own errors by their message; anything else (a bug
    of ours or a library's) with its traceback too, redacted like every line."""
    if isinstance(exc, RetentionError):
        return {"error": exc.message}
    return {"error": f"{type(exc).__name__}: {exc}", "exc_info": exc}


class _PoliciesMoved(Exception):
    """The ledger applies other policies than this daemon's: an ingest commit adopts them."""


class Daemon:
    """One running daemon. `run()` returns its exit code once stopped."""

    def __init__(
        self,
        settings: Settings,
        policies: PolicySet,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
        policies_seen: str | None = None,
    ) -> None:
        self.settings, self.policies, self.ledger, self.clock = settings, policies, ledger, clock
        # the policies file polled for changes; `policies_seen`: its fingerprint before
        # `policies` were read from it (taken now when not given)
        self.policy_watch = PolicyWatch(settings.policies_file, clock, policies_seen)
        self.metrics = Metrics(ledger, clock)
        self.witnesses = Witnesses(settings.audit.witness)
        self.metrics.watch_witnesses(self.witnesses)
        self.notifier = Notifier(settings.notify)  # a notify token that cannot be read: exit 2
        self.metrics.watch_notifier(self.notifier)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.stopping = False
        self.port: int | None = None
        self._stop = asyncio.Event()
        self._stop_sweeps = asyncio.Event()
        self._sweep: asyncio.Task[SweepSummary] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self.signer: Signer | None = None
        self._no_listing: set[tuple[str, str]] = set()  # (provider, kind) without a listing
        self.started = False  # start-up done: /readyz is 503 until then
        self.probes: dict[str, ProbeResult] = {}  # each provider's last probe: /readyz reads it
        self.metrics.watch_probes(self.probes)
        self.writes = WriteGate()  # ingest and receipts: a few at a time, none after the stop
        self.ingest = GroupCommit(self._commit_ingest)  # ingest requests commit in groups
        self.noise = ThrottledLog(log)  # floods (connections, bad token file): a line a minute
        self._rejected: tuple[str, str] | None = None  # the bad policies file last refused
        self._digested: tuple[PolicySet | None, str] = (None, "")  # see _policies_digest
        self._policy_lock = threading.Lock()
        self._sweeping = False  # a sweep job runs (scheduled, or asked for by an erasure)
        self._sweep_wanted = False  # a sweep was asked for: one more starts when this one ends
        self._backfill_error: str | None = None  # the last failure of the subject backfill
        self._backfilled = 0  # record ids the subject backfill passed since start

    def alive(self) -> bool:
        """The scheduler runs (what liveness means)."""
        return bool(self.scheduler.running)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `stop()`), then drain and return 0."""
        for provider in self.settings.providers.values():
            provider.api_key()  # a missing key stops start-up, not every sweep
        self.settings.server.ingest_token()  # so does a token file open to others (exit 2)
        subject_key(self.settings.erasure.key_file)  # and a bad erasure key (a missing one is made)
        # ledger calls wait in worker threads (SQLite's lock, up to 30 s): enough of them that
        # ingest's four, /readyz and /metrics never starve the sweep's lease renewals and writes
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="retention")
        )
        with ExitStack() as stack:  # every ledger call in a worker thread, start-up's too
            await off_loop(stack.enter_context, exclusive(self.ledger))
            self.notifier.start(self.ledger)  # committed events from here on; closed at stop
            stack.callback(self.notifier.close)  # and when start-up fails (closing twice: once)
            await off_loop(self._apply, self.policies, self.policy_watch.record())
            self.signer = self._signer()
            runner = await self._serve_http()
            self._install_signals()
            await off_loop(self._write_started)  # first: the one start-up write that must succeed
            self._start_scheduler()
            # in the background: a silent provider must not hold back liveness or READY; its
            # result reaches /readyz when it comes (and each sweep probes before deleting)
            probing = asyncio.create_task(self._probe_at_start())
            self.started = True
            systemd.notify("READY=1", "STATUS=serving")
            watchdog = self._start_watchdog()
            await self._stop.wait()
            probing.cancel()
            await self._shutdown(runner, watchdog)
        return 0

    def _write_started(self) -> None:
        """Write `daemon.started`."""
        with self.ledger.write() as tx:
            tx.event(
                Event.DAEMON_STARTED,
                details={
                    "version": __version__,
                    "port": self.port,
                    "sweep_interval_s": int(self.settings.sweep.interval.total_seconds()),
                },
            )

    def stop(self) -> None:
        """Begin a graceful stop (what SIGTERM does)."""
        if not self.stopping:
            self.stopping = True
            log.info("daemon.stopping")
            self._stop.set()

    async def _serve_http(self) -> web.AppRunner:
        """Start the HTTP surface on `server.listen`: header, body and keep-alive timeouts, a
        connection cap under the descriptor limit, accept errors logged at most once a minute,
        https when a certificate is configured (see daemon/connections.py, listener.py)."""
        host, port = split_listen(self.settings.server.listen)  # checked when loaded
        tls = server_context(self.settings)  # a file that does not load: exit 2 naming it
        limits = self._connection_limits()
        noise = self.noise
        asyncio.get_running_loop().set_exception_handler(noise.loop_handler)
        table = ConnectionTable(limits, shed=lambda why: noise.note("http.connections_shed", why))
        app = make_app(self)
        app.middlewares.append(watch(table))
        try:
            sockets = open_sockets(host, port)
        except OSError as exc:
            what = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UsageError(
                f"cannot listen on {host}:{port}: {what or exc} (server.listen in "
                f"{self.settings.path}; is another daemon running?)"
            ) from None
        runner = GuardedRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=limits.keepalive_timeout
        )
        await runner.setup()
        assert runner.server is not None
        runner.listener = Listener(sockets, table, runner.server, tls=tls, noise=noise)
        runner.listener.start()
        self.port = runner.listener.port
        log.info(
            "http.listening",
            host=host,
            port=self.port,
            scheme="https" if tls else "http",
            max_connections=limits.cap,
        )
        if tls is None and not is_loopback(host) and self._ingest_on():
            log.warning(
                "http.ingest_in_clear",
                host=host,
                hint="the ingest token and records travel unencrypted: set server.tls_cert_file "
                "and server.tls_key_file, or put a TLS proxy in front and listen on loopback",
            )
        return runner

    def _connection_limits(self) -> ConnectionLimits:
        """`server`'s limits, the connection cap lowered to what the descriptor limit leaves
        room for (after raising its soft limit towards the hard one)."""
        server = self.settings.server
        before, after = fdlimit.raise_soft_limit()
        if after != before:
            log.info("process.fd_limit_raised", soft_limit_before=before, soft_limit=after)
        reserve = fdlimit.RESERVE + sum(p.max_concurrency for p in self.settings.providers.values())
        limit = fdlimit.soft_limit()
        cap, spare = fdlimit.connection_cap(
            server.max_connections, limit, fdlimit.open_count(), reserve
        )
        if cap < server.max_connections:
            log.warning(
                "http.max_connections_lowered",
                max_connections=server.max_connections,
                cap=cap,
                fd_limit=limit,
                hint="raise the descriptor limit (LimitNOFILE=, ulimit -n) or lower "
                "server.max_connections",
            )
        return ConnectionLimits(
            header_timeout=server.header_timeout.total_seconds(),
            body_timeout=server.body_timeout.total_seconds(),
            keepalive_timeout=server.keepalive_timeout.total_seconds(),
            cap=cap,
            spare=spare,
        )

    def _ingest_on(self) -> bool:
        """Whether an ingest token is configured (a token file that fails to read counts)."""
        try:
            return self.settings.server.ingest_token() is not None
        except ConfigError:
            return True

    async def probe_providers(self, names: list[str]) -> None:
        """Probe `names` (at start, and before a sweep while one fails) and log each result;
        a failing provider does not stop the daemon, /readyz names it."""
        clients = {
            name: ProviderClient(
                self.settings.providers[name], self.settings.providers[name].api_key()
            )
            for name in names
        }
        try:
            results = await probe_with_ledger(
                self.ledger, self.settings.providers, clients, self.clock()
            )
        except RetentionError as exc:  # the ledger is away: probe without recorded IDs later
            log.error("provider.probe_crashed", error=exc.message)
            return
        finally:
            for client in clients.values():
                await client.aclose()
        for result in results.values():
            self.probed(result)

    async def _probe_at_start(self) -> None:
        """The start-up probe of every provider; whatever it meets is logged, never fatal."""
        try:
            await self.probe_providers(list(self.settings.providers))
        except Exception as exc:
            log.error("provider.probe_crashed", **failure(exc))

    def remember_probe(self, result: ProbeResult) -> None:
        """Keep a sweep's probe result for /readyz (its fault is an audit event, logged as
        such)."""
        self.probes[result.provider] = result

    def probed(self, result: ProbeResult) -> None:
        """Keep a probe's result for /readyz, and log it (a fault at error level)."""
        self.remember_probe(result)
        if result.ok:
            log.info("provider.probe_passed", provider=result.provider, detail=result.reason)
        else:
            log.error(
                result.event,
                provider=result.provider,
                check=result.check,
                http_status=result.http_status,
                error=result.reason,
            )

    def failing_probes(self) -> dict[str, ProbeResult]:
        """Providers whose last probe failed."""
        return {name: r for name, r in self.probes.items() if not r.ok}

    def _start_scheduler(self) -> None:
        """Interval sweeps that never overlap, the first one now; signed checkpoints."""
        # a run skipped because the last one still runs is the design (max_instances=1), not
        # news: while a long import holds the ledger, APScheduler would warn once per interval
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        common = {
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": None,
            "next_run_time": self.clock(),
        }
        self.scheduler.add_job(
            self._sweep_job,
            "interval",
            id="sweep",
            seconds=self.settings.sweep.interval.total_seconds(),
            **common,
        )
        discover_every = self.settings.discover_interval.total_seconds()
        if discover_every > 0:
            self.scheduler.add_job(
                self._discover_job, "interval", id="discover", seconds=discover_every, **common
            )
        if self.signer is not None:
            seconds = self.settings.audit.checkpoint_interval.total_seconds()
            self.scheduler.add_job(
                self._checkpoint_job,
                "interval",
                id="checkpoint",
                seconds=max(1.0, seconds),
                **common,
            )
        if self.witnesses.names:
            self.scheduler.add_job(
                self._witness_job,
                "interval",
                id="witness-retry",
                seconds=max(1.0, self.settings.sweep.interval.total_seconds()),
                **common,
            )
        self.scheduler.add_job(
            self._backfill_job, "interval", id=BACKFILL_JOB, seconds=BACKFILL_EVERY, **common
        )
        self.scheduler.add_job(
            self._policy_watch_job, "interval", id="policy-watch", seconds=POLL_EVERY, **common
        )
        self.scheduler.add_job(
            self._hold_expiry_job, "interval", id="hold-expiry", seconds=HOLD_EXPIRY_EVERY, **common
        )
        self.scheduler.start()

    async def _policy_watch_job(self) -> None:
        """Apply the policies file once its content changed (a ConfigMap's swap, an edit),
        without a signal; a failure is logged and the next poll tries again."""
        if self.stopping:
            return
        try:
            if await asyncio.to_thread(self.policy_watch.changed):
                await asyncio.to_thread(self._load_policies)
        except Exception as exc:
            log.error("policy.watch_failed", **failure(exc))

    async def _backfill_job(self) -> None:
        """Index by subject the records an older ledger tracked before subjects were, a few
        batches a step (in a worker thread, each batch its own transaction), so that start-up,
        sweeps and ingest never wait for it; one line when it is done, then the job ends."""
        if self.stopping:
            return
        try:
            before, left = await off_loop(self._backfill_step)
        except Exception as exc:  # the ledger is away, or the key file went bad: next step
            error = failure(exc)
            if error["error"] != self._backfill_error:  # once per distinct cause
                self._backfill_error = error["error"]
                log.error("subjects.backfill_failed", **error)
            return
        self._backfill_error = None
        self._backfilled += before - left
        if left:
            return
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(BACKFILL_JOB)
        if self._backfilled:
            log.info("subjects.backfill_finished", record_ids=self._backfilled)

    def _backfill_step(self) -> tuple[int, int]:
        """Record ids the backfill had to pass before this step, and after it."""
        with self.ledger.read() as conn:
            before = subject_index.backfill_left(conn)
        if not before:
            return 0, 0
        key = subject_key(self.settings.erasure.key_file)
        left = subject_index.backfill(self.ledger, self.settings, key, batches=BACKFILL_BATCHES)
        return before, left

    def sweep_now(self) -> None:
        """Sweep at once instead of at the next interval (an erasure made records due): a
        sweep starts now, or, while one runs, another starts right after it; never two at a
        time, and however many ask meanwhile, one more."""
        if self.stopping:
            return
        self._sweep_wanted = True
        if self._sweeping:
            return  # the running job sees the wish when its sweep ends
        # before start-up scheduled the sweeps there is no job yet: the first sweep runs at once
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job("sweep", next_run_time=datetime.now(UTC))

    async def _hold_expiry_job(self) -> None:
        """Lift the placed holds whose `until` has come (one cheap read when none has); when
        that left records due, sweep at once. A failure is logged at most once a minute and
        the next look tries again."""
        if not self.stopping and await self._lift_expired():
            self.sweep_now()

    async def _lift_expired(self) -> int:
        """`lift_expired_holds` in a worker thread; a failure is logged (at most once a
        minute) and counts as nothing lifted: the holds keep holding until a later look."""
        try:
            return await off_loop(self.lift_expired_holds)
        except Exception as exc:
            self.noise.note("hold.expiry_failed", type(exc).__name__, error=failure(exc)["error"])
            return 0

    def lift_expired_holds(self) -> int:
        """Lift every placed hold whose `until` has come, then adopt the policies without it;
        how many records it released are due now. Nothing while another replica's policies
        are newer than this daemon's file (they are waited for first)."""
        if self.policy_watch.behind_since is not None:
            return 0
        lifted = lift_expired(self.ledger, self.policies, self.clock())
        if lifted:
            self.follow_ledger_policies()
        return sum(hold["due_now"] for hold in lifted)

    async def _witness_job(self) -> None:
        """Send what the witnesses still hold (a worker thread: a witness may be slow)."""
        await asyncio.to_thread(self.witnesses.retry_spooled)

    def _signer(self) -> Signer | None:
        """The checkpoint key, created 0600 on first start when missing."""
        path = self.settings.audit.signing_key_file
        return Signer.from_file(path, create=True) if path else None

    async def _discover_job(self) -> None:
        """Crawl each provider's listing; a provider without one is skipped from then on. The
        policies in force are applied first, as every command that records IDs does (one read
        when another replica or the last reload already applied them)."""
        try:
            await off_loop(self.follow_ledger_policies)  # holds placed by another process too
            if self.policy_watch.behind_since is not None:  # another replica's are newer
                return
            await off_loop(sync_policies, self.ledger, self.policies)
        except Exception as exc:
            log.error("discover.crashed", **failure(exc))
            return
        for name, kind in itertools.product(self.settings.providers, LISTED_KINDS):
            if self.stopping or (name, kind) in self._no_listing:
                continue
            try:
                report = await discover(
                    self.ledger, self.settings, self.policies, name, clock=self.clock, kind=kind
                )
            except Exception as exc:
                log.error("discover.crashed", provider=name, object=kind, **failure(exc))
                continue
            if report.unsupported:
                self._no_listing.add((name, kind))
            log.info("discover.done", **report.as_dict())

    async def _checkpoint_job(self) -> None:
        """Sign the chain's head every checkpoint_interval, idle or not (in a worker thread: it
        reads the database and may wait on a witness)."""
        if self.stopping or self.signer is None:
            return
        try:
            await off_loop(self._checkpoint)
        except Exception as exc:
            log.error(Notice.AUDIT_CHECKPOINT_FAILED, **failure(exc))
            self.notifier.notice(Notice.AUDIT_CHECKPOINT_FAILED, error=failure(exc)["error"])

    def _checkpoint(self) -> None:
        """Write one checkpoint with the key file as it is now (`audit rotate-key` may have
        replaced it), and hand it to the witnesses."""
        self.signer = self._signer() or self.signer
        assert self.signer is not None
        write_checkpoint(
            self.ledger,
            self.signer,
            self.settings.audit.checkpoint_interval,
            publish=self.witnesses.publish,
        )

    def _install_signals(self) -> None:
        """SIGTERM and SIGINT stop; SIGHUP reloads the policies."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _start_watchdog(self) -> asyncio.Task[None] | None:
        """Ping systemd's watchdog when it asks for it."""
        interval = systemd.watchdog_interval()
        return asyncio.create_task(systemd.watchdog(interval)) if interval else None

    async def _sweep_job(self) -> None:
        """The scheduled sweep, then one more for each time a sweep was asked for while it ran
        (`sweep_now`); the scheduler never runs two of these jobs at once."""
        self._sweeping = True
        try:
            while not self.stopping:
                self._sweep_wanted = False  # this sweep starts after every wish so far
                await self._one_sweep()
                if not self._sweep_wanted:
                    break
        finally:
            self._sweeping = False

    async def _one_sweep(self) -> None:
        """One sweep; any failure is logged and the schedule carries on."""
        started = time.monotonic()
        try:
            await off_loop(self.follow_ledger_policies)
            if self.policy_watch.behind_since is not None:  # another replica's are newer
                return
            await self._lift_expired()  # before this sweep claims anything
            if self.failing_probes():  # an idle sweep probes nothing: /readyz must recover
                await self.probe_providers(list(self.failing_probes()))
            self._sweep = asyncio.create_task(
                sweep_once(
                    self.ledger,
                    self.settings,
                    lambda: self.policies,  # a reload mid-sweep applies at once
                    clock=self.clock,
                    hooks=dataclasses.replace(self.metrics.hooks(), probe=self.remember_probe),
                    stop=self._stop_sweeps,
                    lock=False,
                )
            )
            report = await asyncio.shield(self._sweep)  # only _drain may cancel a sweep
            log.info(
                "sweep.done",
                deleted=report.total(Outcome.DELETED),
                absent=report.total(Outcome.ABSENT),
                failed=report.total(Outcome.FAILED),
                deferred=report.total(Outcome.DEFERRED),
            )
        except asyncio.CancelledError:
            log.warning("sweep.cancelled")
        except Exception as exc:
            self.metrics.sweep_errors.inc()
            log.error(Notice.SWEEP_CRASHED, **failure(exc))
            self.notifier.notice(Notice.SWEEP_CRASHED, error=failure(exc)["error"])
        finally:
            self.metrics.sweep_duration.observe(time.monotonic() - started)

    def request_reload(self) -> None:
        """SIGHUP: reload the policies in the loop, one reload at a time."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        """Swap in the policies file's current content; a bad file keeps the last good one."""
        systemd.reloading()
        try:
            await asyncio.to_thread(self._load_policies)
        finally:
            systemd.notify("READY=1", "STATUS=serving")

    def _load_policies(self, *, keep: bool = False) -> bool:
        """Read, apply and adopt the policies file, or refuse it with `policy.rejected`: once
        per distinct bad file, however often ingest, sweeps or SIGHUP read it again (their
        worker threads take turns); whether it was applied. A refused file is not what the
        policies in force came from (the last good file stays that); with `keep`, those are
        applied again instead (over what another process applied)."""
        with self._policy_lock:
            reading = self.policy_watch.reading()
            # neither settled nor refused when it raised: the next poll tries again
            if self._load_policies_now(reading):
                self.policy_watch.settled(reading)
                return True
            self.policy_watch.refuse(reading)
            if keep:
                self._keep_in_force()
            return False

    def _load_policies_now(self, reading: Reading) -> bool:
        """`_load_policies`, under its lock: whether the file was applied."""
        path = self.settings.policies_file
        try:
            fresh = policies_in_force(self.settings, path, ledger=self.ledger)
            self._apply(fresh, self.policy_watch.record(reading))
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, RetentionError) else (f"{type(exc).__name__}: {exc}")
            )
            seen = (file_fingerprint(path), message)
            if seen == self._rejected:
                log.debug("policy.still_rejected", source=str(path))
                return False
            self._rejected = seen
            log.error(Event.POLICY_REJECTED, source=str(path), error=message)
            with self.ledger.write() as tx:
                tx.event(
                    Event.POLICY_REJECTED,
                    error=message,
                    details={"source": str(path), "kept_digest": self.policies.digest()},
                )
            return False
        self.policies, self._rejected = fresh, None
        log.info("policy.reloaded", source=str(path), digest=fresh.digest())
        return True

    def _keep_in_force(self) -> None:
        """Apply the policies in force again (the last good file's, joined by the ledger's
        holds as they are now), and adopt them: the file was refused."""
        with self.ledger.read() as conn:
            kept = with_ledger_holds(conn, self.policies)
        self._apply(kept, self.policy_watch.record())
        self.policies = kept

    def _apply(self, policies: PolicySet, record: FileRecord | None) -> None:
        """Apply policies read from this daemon's file to the ledger, recording first which
        file that is (a replica reading an older copy of it then waits for its own copy)."""
        if record is not None:
            record_file(self.ledger, record)
        sync_policies(self.ledger, policies)

    def _commit_ingest(self, batches: list[list[NewRecord]]) -> list[EnrolResult]:
        """Enrol a group of ingest requests in one transaction, under the policies in force:
        the transaction first checks that the ledger applies this daemon's; when it does not,
        they are adopted (follow_ledger_policies) and the group is enrolled again."""
        try:
            results = self._enrol_ingest(batches, check=self._ledger_applies_ours)
        except _PoliciesMoved:
            self.follow_ledger_policies()
            if self.policy_watch.behind_since is not None:
                # a replica applied a newer copy of our policies file: records planned now
                # with ours would keep their older deadlines once ours catch up, so they wait
                raise LedgerError(
                    "this replica is catching up with policies another replica applied (its "
                    "policies file has not refreshed yet); send again in a minute"
                ) from None
            results = self._enrol_ingest(batches, check=None)
        self.metrics.ingest_commits.inc()
        self.metrics.ingest_requests.inc(len(batches))
        self.metrics.ingest_ids.labels("recorded").inc(sum(r.accepted for r in results))
        self.metrics.ingest_ids.labels("duplicate").inc(sum(r.duplicates for r in results))
        return results

    def _enrol_ingest(
        self, batches: list[list[NewRecord]], check: Callable[[Connection], None] | None
    ) -> list[EnrolResult]:
        """One group's transaction (see _commit_ingest)."""
        return enrol_group(
            self.ledger,
            self.settings,
            self.policies,
            batches,
            source="ingest",
            check=check,
            publish_later=True,  # answered once committed; the audit file follows (publisher.py)
        )

    def _ledger_applies_ours(self, conn: Connection) -> None:
        """Raise _PoliciesMoved unless the ledger applies this daemon's policies (holds
        included): the check of follow_ledger_policies, in the ingest transaction itself."""
        if queries.get_meta(conn, MetaKey.POLICY_DIGEST) != self._policies_digest():
            raise _PoliciesMoved
        self.policy_watch.in_step()

    def follow_ledger_policies(self) -> None:
        """Keep the ledger applying this daemon's policies, so it never plans or sweeps with
        other ones. Holds another process placed or lifted, and its own file applied by a
        command after an edit, are adopted (the file is read again). Other policies are
        overruled at once (`policy.ledger_overruled`), unless a replica applied a newer copy
        of this daemon's own file: then it waits for its copy to show them (policy_watch)."""
        with self.ledger.read() as conn:
            applied = queries.get_meta(conn, MetaKey.POLICY_DIGEST)
            if applied is not None and applied == self._policies_digest():
                self.policy_watch.in_step()  # what it applies is ours, holds included
                return
            ours = with_ledger_holds(conn, self.policies).digest()
        if applied is None or applied == ours:
            self.policy_watch.in_step()
            if applied is not None and applied != self.policies.digest():
                self._load_policies(keep=True)  # holds placed or lifted by another process
            return
        with self.ledger.read() as conn:
            by_daemon = recorded_file(conn)
        since = self.policy_watch.behind_since
        if self.policy_watch.waits_for_file(by_daemon):
            return
        self._load_policies(keep=True)
        if self.policies.digest() == applied:  # the file changed to what the ledger applies
            return
        waited = {} if since is None else {"waited_s": int((self.clock() - since).total_seconds())}
        log.warning(
            "policy.ledger_overruled",
            source=str(self.settings.policies_file),
            replaced_digest=applied,
            digest=self.policies.digest(),
            **waited,
            hint="another process had applied other policies than this daemon's (a command "
            "run with another policies file, or a replica reading another file): this "
            "daemon's are applied again; every process on one ledger should read one file",
        )

    def _policies_digest(self) -> str:
        """The digest of the policies in force, computed once per policies read (each ingest
        commit compares it with the ledger's)."""
        if self._digested[0] is not self.policies:
            self._digested = (self.policies, self.policies.digest())
        return self._digested[1]

    async def _shutdown(self, runner: web.AppRunner, watchdog: asyncio.Task[None] | None) -> None:
        """Stop claiming, let in-flight deletions finish within the grace period, record it."""
        systemd.notify("STOPPING=1")
        self._stop_sweeps.set()
        http_writes = asyncio.create_task(self.writes.close())  # new ingest gets 503 from now
        grace = self.settings.sweep.shutdown_grace.total_seconds()
        drained = await self._drain(grace)
        self.scheduler.shutdown(wait=False)  # after the drain: it cancels running jobs
        if watchdog:
            watchdog.cancel()
        await http_writes  # nothing ingested lands after daemon.stopped and the checkpoint
        await self.ingest.drained()  # what the gate let in and queued is committed
        await off_loop(self.ledger.published)  # and in the audit file, before daemon.stopped
        await off_loop(self._write_stopped, drained)  # /healthz still answers meanwhile
        if self.signer is not None:  # the trail ends on a signed head
            try:
                await off_loop(self._checkpoint)
            except Exception as exc:
                log.error(Notice.AUDIT_CHECKPOINT_FAILED, **failure(exc))
                self.notifier.notice(Notice.AUDIT_CHECKPOINT_FAILED, error=failure(exc)["error"])
        self.witnesses.close()
        await asyncio.to_thread(self.notifier.close)  # a short bounded wait; the rest is spooled
        await runner.cleanup()
        log.info(Event.DAEMON_STOPPED, drained=drained)

    def _write_stopped(self, drained: bool) -> None:
        """Write `daemon.stopped`."""
        with self.ledger.write() as tx:
            tx.event(Event.DAEMON_STOPPED, details={"drained": drained})

    async def _drain(self, grace: float) -> bool:
        """Wait for the running sweep; cancel it after `grace` seconds (leases are returned)."""
        sweep = self._sweep
        if sweep is None or sweep.done():
            return True
        done, _ = await asyncio.wait({sweep}, timeout=grace)
        if done:
            return True
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sweep
        return False
