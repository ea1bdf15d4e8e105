"""Evidence from the ledger: signed checkpoints, deletion receipts, exports, witnesses, keys."""
