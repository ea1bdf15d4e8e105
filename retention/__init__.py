"""retention: enforce data-retention policies on stored LLM responses, and prove it."""

__version__ = "0.1.0"
