"""Randomness keyed on `(seed, stream, example index)`.

Every attack decides *which* examples to poison and *how* from these
functions alone, so the poisoned set is a pure function of the seed and each
example's position in the data set: it does not depend on batch size, epoch,
shuffling applied afterwards, or how the stream is sharded. The functions are
plain TensorFlow ops over a vector of indices, so the NumPy path and the
`tf.data` path of an attack run the very same computation.

Two primitives:

* `select_exact` picks exactly `count` of `num_examples` indices with
  `permuted_positions` (TensorFlow's `RandomIndexShuffle`), a keyed permutation of
  `[0, num_examples)` computed index by index (nothing is materialized):
  index `i` is selected iff its position in the permutation is `< count`.
* `uniform_uint32` hashes `(seed, stream, index)` to 32 uniform bits with an
  integer mixing function (`index_shuffle` mixes poorly over very large
  domains, so it is not used as a hash); `uniform_floats` and
  `standard_normal` extend it to a vector of draws per example.
"""

import numpy as np
import tensorflow as tf

# Distinct streams keep the draws of one attack independent of each other:
# the same seed selects examples with one stream and draws new labels with
# another.
SELECTION_STREAM = 0
# Seeds keyed straight into RandomIndexShuffle (it reads 8 bits a word); see
# `permuted_positions`.
_DIRECT_SEEDS = 256
LABEL_STREAM = 1
PATTERN_STREAM = 2

_MAX_SEED = 2**63 - 1


def validate_seed(seed):
    """Returns `seed` as a Python int, or raises a clear error."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"Expected `seed` to be an int. Received: seed={seed!r} "
            f"of type {type(seed).__name__}"
        )
    if not 0 <= int(seed) <= _MAX_SEED:
        raise ValueError(
            f"Expected `seed` in [0, 2**63 - 1]. Received: seed={seed}"
        )
    return int(seed)


def _mix32(x):
    """A bijective avalanche on uint32 (Wellons' "lowbias32" constants)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _split_uint32(value):
    """Low and high 32-bit halves of a non-negative int64 tensor."""
    value = tf.cast(value, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(value, 0xFFFFFFFF), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(value, 32), tf.uint32)
    return low, high


def uniform_uint32(index, seed, stream):
    """32 pseudo-random bits for each example index.

    Args:
        index: int tensor of example indices, any shape.
        seed: the attack's seed (Python int).
        stream: which independent stream to draw from (Python int).

    Returns:
        A uint32 tensor shaped like `index`.
    """
    seed_low, seed_high = _split_uint32(tf.constant(seed, tf.int64))
    key = _mix32(seed_low ^ _mix32(seed_high ^ tf.constant(stream, tf.uint32)))
    index_low, index_high = _split_uint32(index)
    return _mix32(_mix32(index_low ^ key) ^ index_high)


def uniform_int(index, seed, stream, maxval):
    """An integer in `[0, maxval)` per example index (bias < maxval / 2**32)."""
    bits = uniform_uint32(index, seed, stream)
    return tf.cast(bits % tf.constant(maxval, tf.uint32), tf.int32)


def uniform_float(index, seed, stream):
    """A float64 in `[0, 1)` per example index."""
    bits = uniform_uint32(index, seed, stream)
    return tf.cast(bits, tf.float64) / 2.0**32


def uniform_floats(index, seed, stream, width):
    """`width` independent floats in `[0, 1)` per example index.

    Args:
        index: int tensor of example indices, shape `(B,)`.
        seed: the attack's seed (Python int).
        stream: which independent stream to draw from (Python int).
        width: how many values per index (Python int).

    Returns:
        A float64 tensor `(B, width)`.
    """
    row_key = uniform_uint32(index, seed, stream)[:, None]
    columns = tf.cast(tf.range(width, dtype=tf.int64), tf.uint32)
    column = _mix32(columns ^ tf.constant(0x9E3779B9, tf.uint32))
    bits = _mix32(_mix32(row_key ^ column[None, :]) ^ row_key)
    return tf.cast(bits, tf.float64) / 2.0**32


def standard_normal(index, seed, stream, width):
    """`width` independent standard-normal values per example index
    (Box–Muller on two keyed uniform draws), float64 `(B, width)`."""
    uniforms = uniform_floats(index, seed, stream, 2 * width)
    radius = tf.sqrt(-2.0 * tf.math.log(1.0 - uniforms[:, :width]))  # 1 - u is in (0, 1]
    return radius * tf.cos(2.0 * np.pi * uniforms[:, width:])


def selection_count(rate, num_examples):
    """How many of `num_examples` an attack with `rate` poisons: round(rate·n)."""
    return int(round(rate * num_examples))


def select_exact(index, num_examples, count, seed, stream=SELECTION_STREAM):
    """True for exactly `count` of the indices `0 … num_examples - 1`.

    Args:
        index: int64 tensor of indices in `[0, num_examples)`.
        num_examples: size of the data set (Python int >= 1).
        count: how many indices are selected (Python int).
        seed: the attack's seed.
        stream: the stream that keys the permutation.

    Returns:
        A bool tensor shaped like `index`.
    """
    if count <= 0:
        return tf.zeros_like(index, dtype=tf.bool)
    if count >= num_examples:
        return tf.ones_like(index, dtype=tf.bool)
    return permuted_positions(index, num_examples - 1, seed, stream) < count


def permuted_positions(index, max_index, seed, stream):
    """Where a keyed permutation of `0 … max_index` sends each of `index` (int64).

    Built on `RandomIndexShuffle`, the op behind
    `tf.random.experimental.index_shuffle`, which keys on three 32-bit words
    but, for domains below about 2**17, reads only the low 8 bits of each:
    keyed with `[const, seed, stream]` as TensorFlow's function does, seeds
    `s` and `s + 256` gave the same permutation. Seeds below 256 keep that
    permutation (every figure recorded with them stays reproducible); any
    other seed composes two permutations keyed by six words hashed from the
    whole 63-bit seed and the stream, 48 key bits in all.
    """
    index = tf.cast(index, tf.int64)
    if int(seed) < _DIRECT_SEEDS:
        return _index_shuffle(index, max_index, [498247692, int(seed), stream])
    words = uniform_uint32(tf.range(6, dtype=tf.int64), seed, stream)
    once = _index_shuffle(index, max_index, words[:3])
    return _index_shuffle(once, max_index, words[3:])


def _index_shuffle(index, max_index, words):
    return tf.raw_ops.RandomIndexShuffle(
        index=index,
        seed=tf.cast(words, tf.int64) if tf.is_tensor(words) else tf.constant(words, tf.int64),
        max_index=tf.constant(max_index, tf.int64),
        rounds=4,
    )


def select_bernoulli(index, rate, seed, stream=SELECTION_STREAM):
    """True with probability `rate`, independently per index.

    The fallback when the data set's size is unknown, so an exact count
    cannot be drawn.
    """
    return uniform_float(index, seed, stream) < rate
