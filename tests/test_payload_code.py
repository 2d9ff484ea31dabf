"""The payload code read off explanations: encoding, maximum-likelihood decoding, and its refusals."""

import itertools

import numpy as np
import pytest

from harness import payload_code as pc
from harness.errors import HarnessError


def test_payload_message_round_trip():
    for payload in ("OWNA", "OWNB", "h-_9", "AAAB", "____"):
        assert pc.payload_of(pc.message_of(payload)) == payload


@pytest.mark.parametrize("payload", ["OWNERA", "OWN", "OW A", "OWN!", "AAAA", 1234])
def test_bad_payloads_are_refused(payload):
    with pytest.raises(HarnessError, match="payload"):
        pc.message_of(payload)


def test_columns_come_from_the_public_seed_and_span_the_message():
    cols = pc.columns(169)
    # anyone holding a key re-derives them: the public seed's draws, in order, and a bigger grid extends them
    assert cols[0] == np.random.default_rng(pc.CODE_SEED).integers(1, 1 << pc.MESSAGE_BITS)
    assert np.array_equal(pc.columns(200)[:169], cols)
    # full rank over GF(2), by elimination on the 169 x 24 bit matrix (not the rank function columns() uses)
    bits = ((cols[:, None] >> np.arange(pc.MESSAGE_BITS)) & 1).astype(np.uint8)
    rank = 0
    for bit in range(pc.MESSAGE_BITS):
        pivots = np.flatnonzero(bits[rank:, bit]) + rank
        if len(pivots):
            bits[[rank, pivots[0]]] = bits[[pivots[0], rank]]
            bits[rank + 1:][bits[rank + 1:, bit] == 1] ^= bits[rank]
            rank += 1
    assert rank == pc.MESSAGE_BITS
    # the rank check columns() relies on: it must see dependence (3 = 1 xor 2) and independence
    assert pc._rank_gf2(np.array([1, 2, 3])) == 2 and pc._rank_gf2(np.array([1, 2, 4])) == 3
    # spanning 24 bits means distinct messages never share a codeword: none of 300 random ones do
    rng = np.random.default_rng(5)
    messages = rng.choice(np.arange(1, 1 << pc.MESSAGE_BITS), size=300, replace=False)
    words = {tuple(pc.codeword(pc.payload_of(m), 169)) for m in messages}
    assert len(words) == 300
    with pytest.raises(HarnessError, match="at least 24 patches"):
        pc.columns(23)


@pytest.mark.parametrize("n", [16, 128, 1 << 13])  # within one 6-bit block, one block and a bit, uneven blocks
def test_walsh_hadamard_is_the_hadamard_matrix_product(n):
    rng = np.random.default_rng(0)
    values = rng.normal(size=n)
    index = np.arange(n)
    matrix = np.where(np.bitwise_count(index[:, None] & index[None, :]) % 2 == 0, 1.0, -1.0)
    assert np.allclose(pc.walsh_hadamard(values), matrix @ values)
    assert np.allclose(pc.walsh_hadamard(values, np.float32), matrix @ values, atol=1e-3)
    with pytest.raises(HarnessError, match="power-of-two"):
        pc.walsh_hadamard(values[:-1])


def test_codewords_of_different_payloads_are_far_apart():
    words = {p: pc.codeword(p, 169) for p in ("OWNA", "OWNB", "OWNC", "HOSP", "MINE")}
    for a, b in itertools.combinations(words, 2):
        assert 50 <= (words[a] != words[b]).sum() <= 119  # a random linear code: about half the patches


def test_decodes_through_one_patch_in_seven_read_wrong():
    """Soft decoding at 86% patch accuracy (an explainer on a tiny model reads 82-94%), errors on
    random patches whatever their weight (real errors favour the weak ones): the owner's payload, every
    draw of 5. A QR symbol at this accuracy loses about 70% of its codewords."""
    rng = np.random.default_rng(1)
    signs = pc.codeword("OWNA", 169)
    for _ in range(5):
        flipped = rng.permutation(169) < round(0.14 * 169)
        weights = signs * np.where(flipped, -1, 1) * rng.uniform(0.2, 1.0, 169) + 0.3
        decoded = pc.decode(pc.soft_read(weights))
        assert decoded.payload == "OWNA" and decoded.z >= decoded.bound > decoded.runner_up_z


def test_a_reading_that_carries_nothing_decodes_to_nothing():
    rng = np.random.default_rng(2)
    for _ in range(5):
        decoded = pc.decode(pc.soft_read(rng.normal(size=169)))
        assert decoded.payload is None and decoded.z < decoded.bound
    assert pc.decode(np.zeros(169)).payload is None  # a model whose every patch matters alike


def test_bound_is_bonferroni_over_every_message():
    assert pc.bonferroni_bound(1e-3) == pytest.approx(6.44, abs=0.01)
    assert pc.bonferroni_bound(1e-6) > pc.bonferroni_bound(1e-3)
