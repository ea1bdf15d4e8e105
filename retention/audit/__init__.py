"""The audit trail's pure maths: the hash chain, RFC 9162 Merkle trees, what a checkpoint signs,
receipt checks and the verifier. The standard library and `cryptography` only: an auditor
imports this package without the database layer (ledger/ writes the trail, evidence/ signs it).
"""
