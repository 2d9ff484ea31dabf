"""A payload code that survives a noisy read: 4 characters as a [N, 24] binary linear code, decoded softly.

Why not the QR symbol itself: a Micro QR M2-L corrects 2 of its 10 codewords, so it needs about 96% of
its modules right, and explainers on a tiny model read 82-94% of them (issue 18). Here every one of the
N patches carries one parity of the 24-bit message, ``(-1) ** popcount(message & column_p)``, with the
columns drawn once from a public seed. The reader turns the explainer's weights into ranks in [-1, 1]
and scores every one of the 2**24 messages at once with a fast Walsh-Hadamard transform: maximum
likelihood decoding. At N = 169 with errors on random patches it recovered the message in 5 of 10
draws at 78% of patches right, 8 of 10 at 82% and 10 of 10 at 88% (a QR symbol needs about 96%), and
it uses how sure each patch is. A reading that carries no message scores no message far above the rest;
the decoder says "nothing" unless the best message's z-score clears a Bonferroni bound over all 2**24
of them (parametric: it assumes exchangeable patch signs; the null models measure what it misses).

The certificate a person looks at is still a QR code: the decoded payload rendered as a QR version 1-H
(``harness.qr``), which any phone reads.

>>> signs = codeword("OWNA", 169)
>>> decode(signs).payload, decode(-signs).payload   # the exact code, and its negation (= nothing)
('OWNA', None)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats

from harness.errors import HarnessError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz-_"  # 64 symbols: 6 bits each
PAYLOAD_CHARS = 4
MESSAGE_BITS = 6 * PAYLOAD_CHARS
CODE_SEED = 20260118  # public: anyone holding a key and a model can decode
DEFAULT_ALPHA = 1e-3  # chance that a reading carrying nothing decodes to anything, under the parametric model


def message_of(payload: str) -> int:
    """The 24-bit message of a 4-character payload (characters from ``ALPHABET``; "AAAA" is message 0,
    whose codeword is "every patch alike", which no attribution can tell from no mark: refused)."""
    if not isinstance(payload, str) or len(payload) != PAYLOAD_CHARS or any(c not in ALPHABET for c in payload):
        raise HarnessError(f"payload must be {PAYLOAD_CHARS} characters from A-Z a-z 0-9 - _, got {payload!r}")
    message = 0
    for char in payload:
        message = (message << 6) | ALPHABET.index(char)
    if message == 0:
        raise HarnessError(f"payload {payload!r} encodes to the all-alike codeword; choose another")
    return message


def payload_of(message: int) -> str:
    return "".join(ALPHABET[(int(message) >> (6 * (PAYLOAD_CHARS - 1 - i))) & 63] for i in range(PAYLOAD_CHARS))


@functools.cache
def columns(n_patches: int, seed: int = CODE_SEED) -> np.ndarray:
    """(N,) uint32: the message bits each patch's parity covers. Distinct and nonzero (no patch is
    constant over messages, no two patches are copies), and spanning all 24 bits (distinct messages,
    distinct codewords)."""
    if n_patches < MESSAGE_BITS:
        raise HarnessError(f"a {MESSAGE_BITS}-bit payload code needs at least {MESSAGE_BITS} patches, got {n_patches}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    while len(chosen) < n_patches:
        value = int(rng.integers(1, 1 << MESSAGE_BITS))
        if value not in chosen:
            chosen.append(value)
    cols = np.array(chosen, dtype=np.uint32)
    if _rank_gf2(cols) < MESSAGE_BITS:  # at N >= 40 random columns this never happens; checked, not hoped
        raise HarnessError(f"payload code columns for N = {n_patches} do not span {MESSAGE_BITS} bits")
    return cols


def _rank_gf2(values: np.ndarray) -> int:
    basis: list[int] = []
    for v in map(int, values):
        for b in basis:
            v = min(v, v ^ b)
        if v:
            basis.append(v)
    return len(basis)


def codeword(payload: str, n_patches: int) -> np.ndarray:
    """(N,) float of +-1: +1 where the patch's parity of the payload's message is even."""
    parity = np.bitwise_count(columns(n_patches) & np.uint32(message_of(payload))) & 1
    return np.where(parity == 0, 1.0, -1.0)


def soft_read(weights: np.ndarray) -> np.ndarray:
    """Ranks of ``weights`` mapped to [-1, 1] (ties share a rank). A rank read ignores the common offset
    that blacking out any patch gives every model's weights, and one huge weight cannot outvote the rest."""
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if not np.all(np.isfinite(weights)):
        raise HarnessError("attribution weights contain NaN or infinity")
    n = len(weights)
    return (stats.rankdata(weights) - (n + 1) / 2) / ((n - 1) / 2)


def walsh_hadamard(values: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Unnormalised fast Walsh-Hadamard transform of a length-2**k vector (a new array).

    The transform is the Kronecker product of k 2x2 butterflies, so it is applied 6 bits at a time as a
    64x64 Hadamard matrix product: BLAS instead of 24 numpy passes over 2**24 values (1.2-2 s -> about
    0.1 s in float32 on 2 threads, which every verification and null calibration pays per reading).
    """
    out = np.array(values, dtype=dtype)
    n = len(out)
    bits = n.bit_length() - 1
    if n != 1 << bits:
        raise HarnessError(f"Walsh-Hadamard transform needs a power-of-two length, got {n}")
    done = 0
    while done < bits:
        chunk = min(6, bits - done)
        block = linalg.hadamard(1 << chunk, dtype=out.dtype)  # Sylvester order: (-1) ** popcount(i & j)
        out = np.matmul(block, out.reshape(-1, 1 << chunk, 1 << done)).reshape(-1)
        done += chunk
    return out


def bonferroni_bound(alpha: float = DEFAULT_ALPHA) -> float:
    """z a reading carrying nothing exceeds for ANY of the 2**24 - 1 messages with probability <= alpha,
    under exchangeable symmetric patch signs (each message's z ~ N(0, 1)): parametric."""
    return float(stats.norm.isf(alpha / ((1 << MESSAGE_BITS) - 1)))


@dataclass(frozen=True)
class Decoded:
    payload: str | None  # None: no message clears the bound
    best: str  # the best-scoring message, whether or not it clears the bound
    z: float  # its z-score
    runner_up_z: float
    bound: float


def decode(soft: np.ndarray, alpha: float = DEFAULT_ALPHA) -> Decoded:
    """Maximum-likelihood payload of a soft reading (N,) (``soft_read``, or a sum of several).

    z(m) = sum_p soft_p * codeword_p(m) / ||soft||: every message's correlation with the reading, from one
    transform of the reading folded onto the columns.
    """
    soft = np.asarray(soft, dtype=np.float64).ravel()
    norm = float(np.sqrt(np.sum(soft**2)))
    bound = bonferroni_bound(alpha)
    if norm == 0:
        return Decoded(None, payload_of(1), 0.0, 0.0, bound)
    folded = np.zeros(1 << MESSAGE_BITS)
    np.add.at(folded, columns(len(soft)).astype(np.int64), soft)
    # float32: each score sums N terms of size <= 1, so rounding moves z by ~1e-5, far inside any margin
    z = walsh_hadamard(folded, np.float32).astype(np.float64) / norm
    z[0] = -np.inf  # message 0 is refused at encoding (its codeword is all +1)
    best = int(np.argmax(z))
    best_z = float(z[best])
    z[best] = -np.inf
    runner_up = float(np.max(z))
    return Decoded(payload_of(best) if best_z >= bound else None, payload_of(best), best_z, runner_up, bound)
