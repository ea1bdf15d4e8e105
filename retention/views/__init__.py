"""Read-only views of the ledger: status, explain, the compliance report, a policy diff."""
