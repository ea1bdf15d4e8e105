"""RFC 9162 Merkle tree maths: roots, inclusion and consistency proofs, the frontier."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_hex_of,
    verify_consistency,
    verify_inclusion,
)

REPO = Path(__file__).resolve().parents[2]
MAX_SIZE = 300
# distinct record hashes, so that no two leaves are equal
RECORDS = [hashlib.sha256(f"record {i}".encode()).hexdigest() for i in range(MAX_SIZE)]
LEAVES = [leaf_hash(h) for h in RECORDS]


# ---------------------------------------------------------------------------------------------
# The reference: RFC 9162 section 2.1 transcribed literally, over raw entries d[i] (the 32 bytes
# of a record's hex hash), with its own hashing so that it shares no code with the module.


def _sha(data: bytes) -> bytes:
    """HASH() of the RFC: SHA-256."""
    return hashlib.sha256(data).digest()


def _ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _ref_k(n)
    return _sha(b"\x01" + _ref_mth(d[0:k]) + _ref_mth(d[k:n]))


def _ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return [*_ref_path(m, d[0:k]), _ref_mth(d[k:n])]
    return [*_ref_path(m - k, d[k:n]), _ref_mth(d[0:k])]


def _ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [_ref_mth(d)]
    k = _ref_k(n)
    if m <= k:
        return [*_ref_subproof(m, d[0:k], b), _ref_mth(d[k:n])]
    return [*_ref_subproof(m - k, d[k:n], False), _ref_mth(d[0:k])]


def _ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1."""
    return _ref_subproof(m, d, True)


def _ref_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) sibling sits on, leaf end first, from the recursion."""
    if n == 1:
        return ()
    k = _ref_k(n)
    if m < k:
        return (*_ref_shape(m, k), "right")
    return (*_ref_shape(m - k, n - k), "left")


# ---------------------------------------------------------------------------------------------


def _entries(n: int) -> list[bytes]:
    """The raw entries behind the first n test leaves."""
    return [bytes.fromhex(h) for h in RECORDS[:n]]


def _flip(h: bytes, bit: int) -> bytes:
    """h with one bit inverted."""
    out = bytearray(h)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _small_records(n: int) -> list[str]:
    """The record hashes "00"*32, "01"*32, ... of the pinned vectors."""
    return [f"{i:02x}" * 32 for i in range(n)]


PINNED_ROOTS = {
    1: "7f9c9e31ac8256ca2f258583df262dbc7d6f68f2a03043d5c99a4ae5a7396ce9",
    2: "28fb81e496897e0ce886f08602392e9239b65c659041e5202163e58ad898f444",
    3: "ba8d94b7fbcecae7b81c4c80574fe24734a6917bf9c1ecd66ff3e0c34ead4620",
    5: "85e20cac1f02fda7bcdb2fc3f908568c57018c77815f1fa361acad13994f08bf",
    8: "f907f23f76aa01b755a614d31ef9832909f44638b4590073301e61e6d01f9a1d",
}


def test_empty_root_is_the_hash_of_nothing() -> None:
    """The empty tree's root is SHA-256 of no bytes, e3b0c442..., from every entry point."""
    literal = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == literal
    assert root([]).hex() == literal
    assert Frontier().root().hex() == literal
    assert root_hex_of([]) == literal


def test_leaf_and_node_recipes() -> None:
    """A leaf is SHA-256(0x00 || 32 raw bytes); a node is SHA-256(0x01 || left || right)."""
    assert leaf_hash("00" * 32).hex() == (
        "7f9c9e31ac8256ca2f258583df262dbc7d6f68f2a03043d5c99a4ae5a7396ce9"
    )
    assert leaf_hash("ab" * 32) == hashlib.sha256(b"\x00" + b"\xab" * 32).digest()
    a, b = LEAVES[0], LEAVES[1]
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert leaf_hash("AB" * 32) == leaf_hash("ab" * 32)


@pytest.mark.parametrize("bad", ["", "00" * 31, "00" * 33, "zz" * 32, " " + "0" * 63, "00 " * 21])
def test_leaf_hash_rejects_anything_but_64_hex_chars(bad: str) -> None:
    """A record hash that is not exactly 64 hex characters is refused, not silently leafed."""
    with pytest.raises(ValueError, match="64 hex"):
        leaf_hash(bad)


@pytest.mark.parametrize("n", sorted(PINNED_ROOTS))
def test_pinned_roots(n: int) -> None:
    """Literal roots of the records "00"*32.. pin the recipe, via the reference and the module."""
    records = _small_records(n)
    expected = PINNED_ROOTS[n]
    assert _ref_mth([bytes.fromhex(h) for h in records]).hex() == expected
    assert root([leaf_hash(h) for h in records]).hex() == expected
    assert root_hex_of(records) == expected
    frontier = Frontier()
    frontier.extend(leaf_hash(h) for h in records)
    assert frontier.root().hex() == expected


@pytest.mark.parametrize("n", range(1, 18))
def test_everything_matches_the_rfc_reference(n: int) -> None:
    """For n in 1..17, roots and every inclusion/consistency proof equal RFC 9162 and verify."""
    d, leaves = _entries(n), LEAVES[:n]
    tree_root = _ref_mth(d)
    assert root(leaves) == tree_root
    frontier = Frontier()
    frontier.extend(leaves)
    assert frontier.root() == tree_root
    for index in range(n):
        proof = inclusion_proof(index, leaves)
        assert proof == _ref_path(index, d)
        assert verify_inclusion(index, n, leaves[index], proof, tree_root)
    for m in range(1, n + 1):
        proof = consistency_proof(m, leaves)
        assert proof == _ref_proof(m, d)
        assert verify_consistency(m, n, _ref_mth(d[:m]), tree_root, proof)


def test_proof_builders_reject_impossible_requests() -> None:
    """Asking for a leaf outside the tree, or for consistency from m outside 1..n, is an error."""
    leaves = LEAVES[:5]
    for index in (-1, 5, 6):
        with pytest.raises(ValueError):
            inclusion_proof(index, leaves)
    with pytest.raises(ValueError):
        inclusion_proof(0, [])
    for m in (-1, 0, 6):
        with pytest.raises(ValueError):
            consistency_proof(m, leaves)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11])
def test_every_single_bit_flip_breaks_inclusion(n: int) -> None:
    """In small trees, flipping any one bit of any proof element, the leaf or the root fails."""
    leaves = LEAVES[:n]
    tree_root = root(leaves)
    for index in range(n):
        proof, leaf = inclusion_proof(index, leaves), leaves[index]
        for bit in range(256):
            assert not verify_inclusion(index, n, _flip(leaf, bit), proof, tree_root)
            assert not verify_inclusion(index, n, leaf, proof, _flip(tree_root, bit))
            for i, element in enumerate(proof):
                bad = [*proof[:i], _flip(element, bit), *proof[i + 1 :]]
                assert not verify_inclusion(index, n, leaf, bad, tree_root)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_every_single_bit_flip_breaks_consistency(n: int) -> None:
    """In small trees, flipping any one bit of any proof element or either root fails."""
    leaves = LEAVES[:n]
    second = root(leaves)
    for m in range(1, n):
        proof, first = consistency_proof(m, leaves), root(leaves[:m])
        for bit in range(256):
            assert not verify_consistency(m, n, _flip(first, bit), second, proof)
            assert not verify_consistency(m, n, first, _flip(second, bit), proof)
            for i, element in enumerate(proof):
                bad = [*proof[:i], _flip(element, bit), *proof[i + 1 :]]
                assert not verify_consistency(m, n, first, second, bad)


sizes = st.integers(min_value=1, max_value=MAX_SIZE)


@settings(max_examples=25, deadline=None)
@given(size=sizes)
def test_every_inclusion_proof_verifies(size: int) -> None:
    """Every leaf of a random tree of up to 300 leaves has a proof that verifies."""
    leaves = LEAVES[:size]
    tree_root = root(leaves)
    for index in range(size):
        assert verify_inclusion(
            index, size, leaves[index], inclusion_proof(index, leaves), tree_root
        )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=sizes)
def test_a_flipped_bit_breaks_inclusion(data: st.DataObject, size: int) -> None:
    """One flipped bit anywhere in the proof, the leaf or the root makes verification fail."""
    index = data.draw(st.integers(0, size - 1), label="index")
    leaves = LEAVES[:size]
    leaf, proof, tree_root = leaves[index], inclusion_proof(index, leaves), root(leaves)
    assert verify_inclusion(index, size, leaf, proof, tree_root)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 leaf, -1 root
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        leaf = _flip(leaf, bit)
    elif target == -1:
        tree_root = _flip(tree_root, bit)
    else:
        proof = [*proof[:target], _flip(proof[target], bit), *proof[target + 1 :]]
    assert not verify_inclusion(index, size, leaf, proof, tree_root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(min_value=2, max_value=MAX_SIZE))
def test_a_wrong_index_breaks_inclusion(data: st.DataObject, size: int) -> None:
    """A proof for one leaf does not place that leaf at any other index (leaves distinct)."""
    index = data.draw(st.integers(0, size - 1), label="index")
    other = data.draw(st.integers(0, size + 5).filter(lambda i: i != index), label="other")
    leaves = LEAVES[:size]
    proof, tree_root = inclusion_proof(index, leaves), root(leaves)
    assert not verify_inclusion(other, size, leaves[index], proof, tree_root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=sizes)
def test_a_wrong_size_fails_unless_the_path_has_the_same_shape(
    data: st.DataObject, size: int
) -> None:
    """A claimed size passes only if RFC PATH has the same sibling sides there (size is unbound)."""
    index = data.draw(st.integers(0, size - 1), label="index")
    other = data.draw(st.integers(0, 2 * MAX_SIZE).filter(lambda s: s != size), label="other")
    leaves = LEAVES[:size]
    proof, tree_root = inclusion_proof(index, leaves), root(leaves)
    same_shape = index < other and _ref_shape(index, other) == _ref_shape(index, size)
    assert verify_inclusion(index, other, leaves[index], proof, tree_root) == same_shape


def test_claimed_sizes_that_verify_are_those_with_the_same_path_shape() -> None:
    """For trees of 1..17 leaves and claimed sizes 0..40, exactly the same-shape sizes pass."""
    for n in range(1, 18):
        leaves = LEAVES[:n]
        tree_root = root(leaves)
        for index in range(n):
            proof = inclusion_proof(index, leaves)
            for claimed in range(41):
                same = index < claimed and _ref_shape(index, claimed) == _ref_shape(index, n)
                assert verify_inclusion(index, claimed, leaves[index], proof, tree_root) == same


def test_the_tree_size_is_not_authenticated_by_an_inclusion_proof() -> None:
    """Leaf 0's proof in a 3-leaf tree also verifies as size 4: take size from a signed head."""
    leaves = LEAVES[:3]
    proof, tree_root = inclusion_proof(0, leaves), root(leaves)
    assert verify_inclusion(0, 3, leaves[0], proof, tree_root)
    assert verify_inclusion(0, 4, leaves[0], proof, tree_root)
    assert not verify_inclusion(0, 2, leaves[0], proof, tree_root)
    assert not verify_inclusion(0, 5, leaves[0], proof, tree_root)


@settings(max_examples=25, deadline=None)
@given(size=sizes)
def test_every_consistency_proof_verifies(size: int) -> None:
    """Every m in 1..n has a consistency proof to n that verifies."""
    leaves = LEAVES[:size]
    second = root(leaves)
    frontier = Frontier()
    for m in range(1, size + 1):
        frontier.append(leaves[m - 1])
        proof = consistency_proof(m, leaves)
        assert verify_consistency(m, size, frontier.root(), second, proof)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(min_value=2, max_value=MAX_SIZE))
def test_a_flipped_bit_breaks_consistency(data: st.DataObject, size: int) -> None:
    """One flipped bit in a consistency proof or either root makes verification fail."""
    m = data.draw(st.integers(1, size - 1), label="m")
    leaves = LEAVES[:size]
    first, second, proof = root(leaves[:m]), root(leaves), consistency_proof(m, leaves)
    assert verify_consistency(m, size, first, second, proof)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 first, -1 second
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        first = _flip(first, bit)
    elif target == -1:
        second = _flip(second, bit)
    else:
        proof = [*proof[:target], _flip(proof[target], bit), *proof[target + 1 :]]
    assert not verify_consistency(m, size, first, second, proof)


def test_consistency_edge_cases() -> None:
    """m == n needs an empty proof and equal roots; m == 0, m > n and empty proofs fail."""
    leaves = LEAVES[:6]
    r6, r4 = root(leaves), root(leaves[:4])
    assert consistency_proof(6, leaves) == []
    assert verify_consistency(6, 6, r6, r6, [])
    assert not verify_consistency(6, 6, r6, r4, [])
    assert not verify_consistency(6, 6, r6, r6, [r4])
    assert not verify_consistency(0, 6, EMPTY_ROOT, r6, [])
    assert not verify_consistency(0, 6, EMPTY_ROOT, r6, [r6])
    assert not verify_consistency(7, 6, r6, r6, [])
    assert not verify_consistency(4, 6, r4, r6, [])
    proof = consistency_proof(4, leaves)
    assert verify_consistency(4, 6, r4, r6, proof)
    assert not verify_consistency(4, 6, r4, r6, [*proof, proof[-1]])
    assert not verify_consistency(4, 6, r4, r6, proof[:-1])
    assert not verify_consistency(4, 6, r6, r4, proof)


GARBAGE = [None, "", "00" * 32, b"", b"\x00" * 31, b"\x00" * 33, 0, [b"\x00" * 32]]


def test_verifiers_never_raise_on_garbage() -> None:
    """Malformed arguments of any type give False, never an exception."""
    leaves = LEAVES[:5]
    proof, tree_root, leaf = inclusion_proof(2, leaves), root(leaves), leaves[2]
    assert verify_inclusion(2, 5, leaf, proof, tree_root)
    assert verify_inclusion(2, 5, leaf, tuple(proof), tree_root)
    for junk in GARBAGE:
        assert not verify_inclusion(junk, 5, leaf, proof, tree_root)  # type: ignore[arg-type]
        assert not verify_inclusion(2, junk, leaf, proof, tree_root)  # type: ignore[arg-type]
        assert not verify_inclusion(2, 5, junk, proof, tree_root)  # type: ignore[arg-type]
        assert not verify_inclusion(2, 5, leaf, junk, tree_root)  # type: ignore[arg-type]
        assert not verify_inclusion(2, 5, leaf, [*proof[:-1], junk], tree_root)  # type: ignore[list-item]
        assert not verify_inclusion(2, 5, leaf, proof, junk)  # type: ignore[arg-type]
    for bad_index, bad_size in [(-1, 5), (5, 5), (2, 0), (2, -5), (True, 5), (2**70, 5)]:
        assert not verify_inclusion(bad_index, bad_size, leaf, proof, tree_root)
    assert not verify_inclusion(2, 5, leaf, [*proof, proof[0]], tree_root)
    assert not verify_inclusion(2, 5, leaf, proof[:-1], tree_root)
    assert not verify_inclusion(2, 2**70, leaf, proof, tree_root)
    assert not verify_inclusion(0, 1, leaf, [leaf], leaf)

    first, cproof = root(leaves[:3]), consistency_proof(3, leaves)
    assert verify_consistency(3, 5, first, tree_root, cproof)
    for junk in GARBAGE:
        assert not verify_consistency(junk, 5, first, tree_root, cproof)  # type: ignore[arg-type]
        assert not verify_consistency(3, junk, first, tree_root, cproof)  # type: ignore[arg-type]
        assert not verify_consistency(3, 5, junk, tree_root, cproof)  # type: ignore[arg-type]
        assert not verify_consistency(3, 5, first, junk, cproof)  # type: ignore[arg-type]
        assert not verify_consistency(3, 5, first, tree_root, junk)  # type: ignore[arg-type]
        assert not verify_consistency(3, 5, first, tree_root, [junk])  # type: ignore[list-item]
    assert not verify_consistency(3, 2**70, first, tree_root, cproof)
    assert not verify_consistency(-3, 5, first, tree_root, cproof)


# ---------------------------------------------------------------------------------------------
# Frontier


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=MAX_SIZE))
def test_frontier_holds_the_perfect_subtrees_and_round_trips_hex(size: int) -> None:
    """The frontier is the roots of size's power-of-two subtrees, and survives to_hex/from_hex."""
    leaves = LEAVES[:size]
    frontier = Frontier()
    frontier.extend(leaves)
    assert frontier.size == size
    start, expected = 0, []
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            expected.append(root(leaves[start : start + (1 << bit)]))
            start += 1 << bit
    assert frontier.hashes == expected
    hexes = frontier.to_hex()
    assert all(len(h) == 64 and h == h.lower() for h in hexes)
    again = Frontier.from_hex(size, hexes)
    assert again == frontier
    assert again.root() == frontier.root() == root(leaves)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=MAX_SIZE), split=st.integers(0, MAX_SIZE))
def test_frontier_extend_equals_appending_one_by_one(size: int, split: int) -> None:
    """extend() equals append() leaf by leaf, even resumed from a copy part way through."""
    leaves = LEAVES[:size]
    one_by_one = Frontier()
    for leaf in leaves:
        one_by_one.append(leaf)
    split = min(split, size)
    first_part = Frontier()
    first_part.extend(leaves[:split])
    resumed = first_part.copy()
    resumed.extend(iter(leaves[split:]))
    assert resumed == one_by_one
    assert first_part.size == split
    assert first_part.root() == root(leaves[:split])


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=MAX_SIZE))
def test_frontier_fold_equals_root(size: int) -> None:
    """Folding the subtree roots from the right gives the RFC root."""
    frontier = Frontier()
    frontier.extend(LEAVES[:size])
    folded = frontier.hashes[-1] if frontier.hashes else EMPTY_ROOT
    for h in reversed(frontier.hashes[:-1]):
        folded = node_hash(h, folded)
    assert folded == frontier.root() == root(LEAVES[:size])


def test_frontier_copy_is_independent() -> None:
    """Appending to a copy leaves the original alone."""
    original = Frontier()
    original.extend(LEAVES[:5])
    clone = original.copy()
    clone.append(LEAVES[5])
    assert original.size == 5
    assert original.root() == root(LEAVES[:5])
    assert clone.root() == root(LEAVES[:6])


@pytest.mark.parametrize(
    ("size", "hexes"),
    [
        (0, ["00" * 32]),
        (1, []),
        (3, ["00" * 32]),
        (4, ["00" * 32, "11" * 32]),
        (5, ["00" * 32, "11" * 32, "22" * 32]),
        (-1, []),
        (1, ["00" * 31]),
        (1, ["00" * 33]),
        (1, ["g" * 64]),
        (1, [" " + "0" * 63]),
        (1, [None]),
        (2, "00" * 32),
        (1, None),
        (1, {"00" * 32: 1}),
        ("1", ["00" * 32]),
        (True, ["00" * 32]),
    ],
)
def test_frontier_from_hex_rejects_mismatches(size: int, hexes: list[str]) -> None:
    """from_hex refuses a count of roots other than popcount(size), or roots not 64 hex chars."""
    with pytest.raises(ValueError):
        Frontier.from_hex(size, hexes)


def test_module_imports_only_the_standard_library() -> None:
    """Importing retention.audit.merkle loads nothing outside the standard library and itself."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("sqlalchemy", "retention.ledger", "retention.config", "cryptography",
                     "yaml", "structlog", "httpx", "aiohttp", "click", "hypothesis"):
            sys.modules[name] = None
        before = set(sys.modules)
        import retention.audit.merkle as merkle
        new = set(sys.modules) - before
        outside = {n.split(".")[0] for n in new} - set(sys.stdlib_module_names)
        ours = {n for n in new if n.split(".")[0] == "retention"}
        assert outside == {"retention"}, outside
        assert ours == {"retention", "retention.audit", "retention.audit.merkle"}, ours
        print(merkle.root_hex_of(["00" * 32]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == PINNED_ROOTS[1]
