"""What a checkpoint's Ed25519 signature covers. Pure: the standard library only.

The signed message is the canonical JSON (the trail's own serialisation) of
    {"chain", "ts", "covers_seq", "covers_hash", "prev_signature", "key_fingerprint",
     "interval_s"}
plus, when the checkpoint's `details` hold them, `root_hash` (the RFC 9162 root of the chain's
records 1..covers_seq) and the key transition `next_key_fingerprint` and `next_public_key`.
`chain` and `ts` are the checkpoint record's own; the rest come from its `details`. A checkpoint
written before Merkle roots had none of the optional fields and keeps verifying as it was.
"""

from __future__ import annotations

from typing import Any

from retention.audit.hashchain import canonical

SIGNED_FIELDS = (
    "chain",
    "covers_seq",
    "covers_hash",
    "ts",
    "prev_signature",
    "key_fingerprint",
    "interval_s",
)
# signed when present: an attacker who strips one changes the message and breaks the signature
OPTIONAL_SIGNED_FIELDS = ("root_hash", "next_key_fingerprint", "next_public_key")


def signed_message(details: dict[str, Any], *, chain: str, ts: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    body = {
        "chain": chain,
        "ts": ts,
        **{k: details.get(k) for k in SIGNED_FIELDS if k not in ("chain", "ts")},
        **{k: details[k] for k in OPTIONAL_SIGNED_FIELDS if k in details},
    }
    return canonical(body).encode()
