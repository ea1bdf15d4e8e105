"""A local stand-in of the provider's Responses API, for tests, benchmarks and the demo."""

from retention.standin.server import Knobs, StandIn

__all__ = ["Knobs", "StandIn"]
