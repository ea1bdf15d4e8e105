"""Sweeps: find what is due, delete it at the provider, record every outcome with its event."""
