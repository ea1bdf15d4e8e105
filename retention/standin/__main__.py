"""`python -m retention.standin`: run the provider stand-in on loopback until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import sys

from retention.standin.flavours import FLAVOURS
from retention.standin.server import Knobs, StandIn


def main(argv: list[str] | None = None) -> None:
    """Parse knobs, serve, print the base URL on the first line of stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m retention.standin", description="The provider stand-in on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--api-key", default="test-key", help="the bearer key it accepts")
    parser.add_argument("--account", default=None, help="required x-fireworks-account-id")
    parser.add_argument(
        "--blind-key", default=None, help="a second key, accepted but seeing no response"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--rate-429", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of a 429")
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="fraction of connections dropped without an answer",
    )
    parser.add_argument(
        "--flavor",
        choices=tuple(FLAVOURS),
        default="fireworks",
        help="the provider it plays (retention/standin/flavours.py)",
    )
    parser.add_argument(
        "--deny-delete-rate",
        type=float,
        default=0.0,
        help="fraction of DELETEs answered 401 (a key allowed to read, not to delete)",
    )
    parser.add_argument(
        "--echo-key",
        action="store_true",
        help="play a careless provider: echo the Authorization header received in x-request-id, "
        "raw in 401 bodies, JSON-escaped in other error bodies and listed metadata",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the faults")
    args = parser.parse_args(argv)
    knobs = Knobs(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        rate_429=args.rate_429,
        retry_after=args.retry_after,
        drop_rate=args.drop_rate,
        flavor=args.flavor,
        deny_delete_rate=args.deny_delete_rate,
    )
    standin = StandIn(
        api_key=args.api_key,
        account=args.account,
        knobs=knobs,
        seed=args.seed,
        blind_key=args.blind_key,
        echo_key=args.echo_key,
    )
    try:
        asyncio.run(_serve(standin, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


async def _serve(standin: StandIn, port: int) -> None:
    """Serve forever."""
    await standin.serve(port=port)
    print(standin.base_url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
