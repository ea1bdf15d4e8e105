"""Merkle tree maths of RFC 9162 section 2.1, over audit records. Pure: standard library only.

    leaf  = SHA-256(0x00 || bytes.fromhex(record["hash"]))      (32 raw bytes in)
    node  = SHA-256(0x01 || left || right)
    MTH({}) = SHA-256(b""); MTH of n > 1 leaves splits at k, the largest power of two < n:
    MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))

Inclusion proofs are PATH(m, D[n]) and consistency proofs PROOF(m, D[n]), both listed from the
leaf end upwards; the verifiers are the algorithms of sections 2.1.3.2 and 2.1.4.2 verbatim.
Hashes are bytes here; hex strings appear only where a name says so. An auditor imports this
module on its own, so it must never import anything else from `retention`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_hex_of",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

EMPTY_ROOT: bytes = _sha256(b"").digest()


def _check_hex64(value: object, what: str) -> str:
    """Return `value` if it is 64 hex characters, else raise ValueError."""
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise ValueError(f"{what} must be 64 hex characters, got {value!r}")
    return value


def leaf_hash(record_hash_hex: str) -> bytes:
    """SHA-256(0x00 || the 32 raw bytes of a record's hex `hash`): the record's leaf."""
    return _sha256(b"\x00" + bytes.fromhex(_check_hex64(record_hash_hex, "record hash"))).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _pair_up(level: list[bytes]) -> list[bytes]:
    """The next level up: adjacent pairs hashed, an odd last node carried up unchanged."""
    pairs = zip(level[0::2], level[1::2], strict=False)
    upper = [_sha256(b"\x01" + a + b).digest() for a, b in pairs]
    if len(level) & 1:
        upper.append(level[-1])
    return upper


def _range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of leaves[lo:hi] (hi > lo), level by level, hashing each node once."""
    if hi - lo == 1:
        return leaves[lo]
    level = [_sha256(b"\x01" + leaves[i] + leaves[i + 1]).digest() for i in range(lo, hi - 1, 2)]
    if (hi - lo) & 1:
        level.append(leaves[hi - 1])
    while len(level) > 1:
        level = _pair_up(level)
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes; EMPTY_ROOT for no leaves."""
    return _range_root(leaves, 0, len(leaves)) if len(leaves) else EMPTY_ROOT


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]): the audit path of leaf `index` (0-based), leaf end first."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_range_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_range_root(leaves, lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), leaf end first; empty when m == n."""
    n = len(leaves)
    if not 0 < m <= n:
        raise ValueError(f"consistency needs 0 < m <= n, got m={m}, n={n}")
    proof: list[bytes] = []
    lo, hi, whole = 0, n, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_range_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_range_root(leaves, lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(_range_root(leaves, lo, hi))
    proof.reverse()
    return proof


def _is_hash(value: object) -> TypeGuard[bytes]:
    """Whether a value is a 32-byte hash."""
    return isinstance(value, bytes) and len(value) == 32


def _hash_list(proof: Iterable[object]) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes, or None if it is anything else."""
    if isinstance(proof, (str, bytes, bytearray)):
        return None
    try:
        items = list(proof)
    except TypeError:
        return None
    hashes = [h for h in items if _is_hash(h)]
    return hashes if len(hashes) == len(items) else None


def _is_size(value: object) -> bool:
    """Whether a value is a non-negative int (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: whether `proof` puts `leaf` at `index` of the tree `expected_root`."""
    if not (_is_size(index) and _is_size(size) and _is_hash(leaf) and _is_hash(expected_root)):
        return False
    path = _hash_list(proof)
    if path is None or index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    m: int, n: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of n leaves extends the tree of m leaves."""
    if not (_is_size(m) and _is_size(n) and _is_hash(first_root) and _is_hash(second_root)):
        return False
    hashes = _hash_list(proof)
    if hashes is None or m == 0 or m > n:
        return False
    if m == n:
        return len(hashes) == 0 and first_root == second_root
    if len(hashes) == 0:
        return False
    path = [first_root, *hashes] if m & (m - 1) == 0 else hashes
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


@dataclass
class Frontier:
    """Roots of the perfect subtrees of a tree of `size` leaves, left to right, largest first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def from_hex(cls, size: int, hexes: Sequence[str]) -> Frontier:
        """A frontier from its size and hex subtree roots; ValueError if they disagree."""
        if not _is_size(size):
            raise ValueError(f"frontier size must be a non-negative int, got {size!r}")
        if not isinstance(hexes, Sequence) or isinstance(hexes, str):
            raise ValueError(f"subtree roots must be a list of hex strings, got {hexes!r}")
        if len(hexes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} subtree roots")
        return cls(size, [bytes.fromhex(_check_hex64(h, "subtree root")) for h in hexes])

    def to_hex(self) -> list[str]:
        """The subtree roots as lowercase hex, left to right."""
        return [h.hex() for h in self.hashes]

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, merging equal-size subtrees at the right end (O(1) amortised)."""
        hashes = self.hashes
        hashes.append(leaf)
        self.size += 1
        carry = self.size
        while not carry & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            carry >>= 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append each leaf hash in turn."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the tree: the subtree roots folded from the right; EMPTY_ROOT when empty."""
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier(self.size, list(self.hashes))


def root_hex_of(record_hashes: Iterable[str]) -> str:
    """Hex MTH of the leaves made from audit records' hex hashes, in order."""
    frontier = Frontier()
    frontier.extend(leaf_hash(h) for h in record_hashes)
    return frontier.root().hex()
