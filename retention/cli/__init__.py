"""The `retention` command line: thin wrappers over the core and the ledger."""
