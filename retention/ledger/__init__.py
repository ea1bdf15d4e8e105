"""The ledger: every stored response we know of, its deadline and state, and the audit rows."""
