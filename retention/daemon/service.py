"""`retention run`: sweeps on a schedule, the HTTP surface, signals and systemd, in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from retention import __version__
from retention.audit.checkpoint import write_checkpoint
from retention.audit.signing import Signer
from retention.audit.witness import Witnesses
from retention.config.policyfile import load_policies
from retention.config.settings import Settings
from retention.core.policies import PolicySet
from retention.daemon import systemd
from retention.daemon.http import make_app
from retention.daemon.metrics import Metrics
from retention.discover import discover
from retention.errors import ConfigError, RetentionError
from retention.ledger import store
from retention.ledger.ledger import Ledger
from retention.logs import get_logger
from retention.reconcile import DIGEST_KEY, sync_policies
from retention.sweep.report import SweepReport
from retention.sweep.runner import exclusive, sweep_once

log = get_logger("retention.daemon")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"server.listen: expected host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Daemon:
    """One running daemon. `run()` returns its exit code once stopped."""

    def __init__(
        self,
        settings: Settings,
        policies: PolicySet,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        if settings.sweep.interval.total_seconds() <= 0:
            raise ConfigError("sweep.interval: the daemon needs an interval above 0")
        self.settings, self.policies, self.ledger, self.clock = settings, policies, ledger, clock
        self.metrics = Metrics(ledger, clock)
        self.witnesses = Witnesses(settings.audit.witness)
        self.metrics.watch_witnesses(self.witnesses)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.stopping = False
        self.port: int | None = None
        self._stop = asyncio.Event()
        self._stop_sweeps = asyncio.Event()
        self._sweep: asyncio.Task[SweepReport] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self.signer: Signer | None = None
        self._no_listing: set[str] = set()

    def alive(self) -> bool:
        """The scheduler runs (what liveness means)."""
        return bool(self.scheduler.running)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `stop()`), then drain and return 0."""
        for provider in self.settings.providers.values():
            provider.api_key()  # a missing key stops start-up, not every sweep
        with ExitStack() as stack:
            stack.enter_context(exclusive(self.ledger))
            sync_policies(self.ledger, self.policies)
            self.signer = self._signer()
            runner = await self._serve_http()
            self._start_scheduler()
            self._install_signals()
            with self.ledger.write() as tx:
                tx.event(
                    "daemon.started",
                    details={
                        "version": __version__,
                        "port": self.port,
                        "sweep_interval_s": int(self.settings.sweep.interval.total_seconds()),
                    },
                )
            systemd.notify("READY=1", "STATUS=serving")
            watchdog = self._start_watchdog()
            await self._stop.wait()
            await self._shutdown(runner, watchdog)
        return 0

    def stop(self) -> None:
        """Begin a graceful stop (what SIGTERM does)."""
        if not self.stopping:
            self.stopping = True
            log.info("daemon.stopping")
            self._stop.set()

    async def _serve_http(self) -> web.AppRunner:
        """Start the HTTP server on `server.listen`."""
        host, port = parse_listen(self.settings.server.listen)
        runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("http.listening", host=host, port=self.port)
        return runner

    def _start_scheduler(self) -> None:
        """Interval sweeps that never overlap, the first one now; signed checkpoints."""
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
        self.scheduler.start()

    async def _witness_job(self) -> None:
        """Send what the witnesses still hold (a worker thread: a witness may be slow)."""
        await asyncio.to_thread(self.witnesses.retry_spooled)

    def _signer(self) -> Signer | None:
        """The checkpoint key, created 0600 on first start when missing."""
        path = self.settings.audit.signing_key_file
        return Signer.from_file(path, create=True) if path else None

    async def _discover_job(self) -> None:
        """Crawl each provider's listing; a provider without one is skipped from then on."""
        for name in self.settings.providers:
            if self.stopping or name in self._no_listing:
                continue
            try:
                report = await discover(
                    self.ledger, self.settings, self.policies, name, clock=self.clock
                )
            except Exception as exc:
                log.error("discover.crashed", provider=name, error=f"{type(exc).__name__}: {exc}")
                continue
            if report.unsupported:
                self._no_listing.add(name)
            log.info("discover.done", **report.as_dict())

    async def _checkpoint_job(self) -> None:
        """Sign the chain's head every checkpoint_interval, idle or not (in a worker thread: it
        reads the database and may wait on a witness)."""
        if self.stopping or self.signer is None:
            return
        try:
            await asyncio.to_thread(self._checkpoint)
        except Exception as exc:
            log.error("audit.checkpoint_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)

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
        """One scheduled sweep; any failure is logged and the schedule carries on."""
        if self.stopping:
            return
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.follow_ledger_policies)
            self._sweep = asyncio.create_task(
                sweep_once(
                    self.ledger,
                    self.settings,
                    lambda: self.policies,  # a reload mid-sweep applies at once
                    clock=self.clock,
                    hooks=self.metrics.hooks(),
                    stop=self._stop_sweeps,
                    lock=False,
                )
            )
            report = await asyncio.shield(self._sweep)  # only _drain may cancel a sweep
            log.info(
                "sweep.done",
                deleted=report.total("deleted"),
                absent=report.total("absent"),
                failed=report.total("failed"),
                deferred=report.total("deferred"),
            )
        except asyncio.CancelledError:
            log.warning("sweep.cancelled")
        except Exception as exc:
            self.metrics.sweep_errors.inc()
            log.error("sweep.crashed", error=f"{type(exc).__name__}: {exc}")
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

    def _load_policies(self) -> None:
        """Read, apply and adopt the policies file, or refuse it with `policy.rejected`."""
        path = self.settings.policies_file
        try:
            fresh = load_policies(path)
            sync_policies(self.ledger, fresh)
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, RetentionError) else (f"{type(exc).__name__}: {exc}")
            )
            log.error("policy.rejected", source=str(path), error=message)
            with self.ledger.write() as tx:
                tx.event(
                    "policy.rejected",
                    error=message,
                    details={"source": str(path), "kept_digest": self.policies.digest()},
                )
            return
        self.policies = fresh
        log.info("policy.reloaded", source=str(path), digest=fresh.digest())

    def follow_ledger_policies(self) -> None:
        """Adopt the policies file when another process applied new policies to the ledger
        (a CLI command after an edit), so this daemon never plans with stale ones."""
        with self.ledger.read() as conn:
            applied = store.get_meta(conn, DIGEST_KEY)
        if applied is not None and applied != self.policies.digest():
            self._load_policies()

    async def _shutdown(self, runner: web.AppRunner, watchdog: asyncio.Task[None] | None) -> None:
        """Stop claiming, let in-flight deletions finish within the grace period, record it."""
        systemd.notify("STOPPING=1")
        self._stop_sweeps.set()
        grace = self.settings.sweep.shutdown_grace.total_seconds()
        drained = await self._drain(grace)
        self.scheduler.shutdown(wait=False)  # after the drain: it cancels running jobs
        if watchdog:
            watchdog.cancel()
        with self.ledger.write() as tx:
            tx.event("daemon.stopped", details={"drained": drained})
        if self.signer is not None:  # the trail ends on a signed head
            try:
                self._checkpoint()
            except Exception as exc:
                log.error("audit.checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        self.witnesses.close()
        await runner.cleanup()
        log.info("daemon.stopped", drained=drained)

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
