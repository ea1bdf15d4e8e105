"""The audit trail: the pure hash chain, and the writer that commits events with state."""
