"""The ledger: every stored response we know of, its deadline and state, and the audit trail
written in the same transactions (audit_writer.py) and published to `audit.file`
(audit_file.py)."""
