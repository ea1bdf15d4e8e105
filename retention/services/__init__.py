"""What the commands and the daemon do to the ledger: record IDs, apply policies, requeue."""
