"""How long an auditor waits: `retention audit verify FILE` on a large trail.

    python bench/verify_trail.py [--records 1000000] [--checkpoint-every 10000]
                                 [--json bench-verify.json]

Writes a trail of N records (deletion events as a sweep writes them, a signed checkpoint with
its Merkle root every `--checkpoint-every` records and one at the end) and its public key into
a temporary folder, then times `retention audit verify FILE --pubkey KEY` as a process, start
included: every record's hash re-computed, every link, every root re-computed from the leaves,
every signature checked. Also reports the file's size and the verifier's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import report
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.checkpoint_message import signed_message
from retention.audit.hashchain import GENESIS, seal_line
from retention.audit.merkle import Frontier, leaf_hash
from retention.audit.signatures import public_pem
from retention.evidence.signing_key import Signer


def write_trail(path: Path, n: int, every: int, signer: Signer) -> None:
    """N records of one chain, checkpointed every `every` records and at the end."""
    frontier, prev, last_sig = Frontier(), GENESIS, ""
    ts = "2026-12-07T06:00:00.000000Z"
    with open(path, "w", encoding="utf-8") as handle:
        for seq in range(1, n + 1):
            if seq % every == 0 or seq == n:
                details = {
                    "covers_seq": seq - 1,
                    "covers_hash": prev,
                    "root_hash": frontier.root().hex(),
                    "prev_signature": last_sig,
                    "key_fingerprint": signer.fingerprint,
                    "interval_s": 3600,
                }
                details["signature"] = signer.sign(signed_message(details, chain="main", ts=ts))
                last_sig = details["signature"]
                body = {"event": "audit.checkpoint", "ts": ts, "details": details}
            else:
                body = {
                    "event": "response.deleted",
                    "ts": ts,
                    "response_id": f"resp_{seq:09d}",
                    "provider": "fireworks",
                    "account": "acme",
                    "policy": "pii",
                    "deadline": ts,
                    "http_status": 200,
                    "provider_request_id": f"req_{seq}",
                    "attempt": 1,
                    "actor": {"host": "bench", "pid": 1},
                    "details": {"lag_s": 3},
                }
            record, line = seal_line(body, chain="main", seq=seq, prev_hash=prev)
            prev = record["hash"]
            frontier.append(leaf_hash(prev))
            handle.write(line + "\n")


def main() -> None:
    """Write the trail, verify it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=10_000)
    parser.add_argument("--json", default="bench-verify.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trail, key = Path(folder) / "trail.jsonl", Path(folder) / "pub.pem"
        signer = Signer(Ed25519PrivateKey.generate())
        key.write_text(public_pem(signer.public))
        started = time.perf_counter()
        write_trail(trail, args.records, args.checkpoint_every, signer)
        written = time.perf_counter() - started
        started = time.perf_counter()
        command = ["audit", "verify", str(trail), "--pubkey", str(key)]
        result = subprocess.run(
            [sys.executable, "-m", "retention", *command],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        assert result.returncode == 0, result.stdout + result.stderr
        report(
            {
                "records": args.records,
                "file_mb": round(trail.stat().st_size / 1e6, 1),
                "write_s": round(written, 1),
                "verify_s": round(elapsed, 1),
                "verify_records_per_s": round(args.records / elapsed),
                "verify_peak_rss_mb": peak,
                "verdict": result.stdout.strip(),
            },
            args.json,
        )


if __name__ == "__main__":
    main()
