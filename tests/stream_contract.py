"""The stream contract, as one function: a pipeline case gives `exact` or `error`.

DESIGN.md: for any pipeline a user can hand to `model.fit`, a transform's
stream result equals its NumPy result on the same data, or the library
raises (at build time, or on the first batch with its own message). This
module builds one such pipeline from a `PipelineCase`, runs a transform on
it and on the arrays, and says which of the outcomes it got:

* `"exact"`: the stream gave the NumPy result, bit for bit (mask included);
* `"error"`: a clear error of the library (a `ValueError`/`TypeError` at
  build time, or an assertion with the library's message while iterating);
* `"unclear"`: some other exception (a shape error from deep inside TF);
* `"silent"`: it ran and gave something else. The goal is none of these two.

Used by tests/test_stream_contract.py (hypothesis over the cases) and by
benchmarks/stream_contract.py (the whole matrix, counted, for the docs).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_poison import ClassPatternNoise
from keras_poison import DetectionReport
from keras_poison import InjectPoisons
from keras_poison import PoisonSet
from keras_poison import RandomFlip
from keras_poison import Sanitize
from keras_poison import TargetedFlip

NUM_CLASSES = 4
IMAGE_DTYPES = ("uint8", "float32")
IMAGE_SHAPES = ((6, 6, 3), (6, 6, 1), (6, 6), (12,))
LABEL_FORMATS = ("sparse_int", "sparse_float", "column_uint8", "one_hot_float", "one_hot_int")
STRUCTURES = ("pair", "weighted", "dict")
BATCH_SIZES = (None, 1, 3, NUM_CLASSES, 16)
UPSTREAM = (None, "map", "shuffle", "repeat", "shard", "filter")
TRANSFORMS = (
    "random_flip",
    "targeted_flip",
    "class_pattern",
    "inject_poisons",
    "sanitize_drop",
    "sanitize_relabel",
    "sanitize_drop_content",
    "sanitize_relabel_content",
)
# Ops after which a position-keyed transform must refuse the stream.
ORDER_CHANGING = ("shuffle", "repeat", "shard", "filter")


@dataclasses.dataclass(frozen=True)
class PipelineCase:
    transform: str
    image_dtype: str = "uint8"
    image_shape: tuple = (6, 6, 3)
    label_format: str = "sparse_int"
    structure: str = "pair"
    batch_size: int = None
    drop_remainder: bool = False
    upstream: str = None
    n: int = 23
    seed: int = 0


def make_arrays(case):
    rng = np.random.default_rng(case.seed)
    shape = (case.n, *case.image_shape)
    if case.image_dtype == "uint8":
        x = rng.integers(0, 256, size=shape).astype("uint8")
    else:
        x = rng.uniform(0, 1, size=shape).astype(case.image_dtype)
    classes = rng.integers(0, NUM_CLASSES, size=case.n)
    y = {
        "sparse_int": lambda: classes.astype("int64"),
        "sparse_float": lambda: classes.astype("float32"),
        "column_uint8": lambda: classes.astype("uint8")[:, None],
        "one_hot_float": lambda: np.eye(NUM_CLASSES, dtype="float32")[classes],
        "one_hot_int": lambda: np.eye(NUM_CLASSES, dtype="int64")[classes],
    }[case.label_format]()
    # Example ids ride along as sample weights (or a second input), so the
    # examples a transform keeps can be named.
    ids = np.arange(case.n, dtype="float32")
    return x, y, ids


def make_transform(case, x, y):
    name = case.transform
    if name == "random_flip":
        return RandomFlip(0.3, NUM_CLASSES, seed=case.seed)
    if name == "targeted_flip":
        return TargetedFlip({0: 1, 1: 0, 2: 3, 3: 2}, rate=0.3, seed=case.seed)
    if name == "class_pattern":
        epsilon = 8 if case.image_dtype == "uint8" else 8 / 255
        return ClassPatternNoise(NUM_CLASSES, epsilon=epsilon, seed=case.seed, fraction=0.5)
    if name == "inject_poisons":
        sources = sorted({1 % case.n, case.n - 1})
        images = np.full((len(sources), *x.shape[1:]), 1, dtype=x.dtype)
        return InjectPoisons(PoisonSet(images, [2] * len(sources), sources))
    rng = np.random.default_rng(case.seed + 1)
    flagged = rng.random(case.n) < 0.3
    report = DetectionReport(
        rng.random(case.n), flagged, suggested_labels=rng.integers(0, NUM_CLASSES, case.n)
    )
    action = "relabel" if "relabel" in name else "drop"
    if name.endswith("content"):
        return Sanitize(report.with_content_keys(x, y), action=action, key="content")
    return Sanitize(report, action=action)


def _source(case, x, y, ids):
    if case.structure == "pair":
        return tf.data.Dataset.from_tensor_slices((x, y))
    if case.structure == "weighted":
        return tf.data.Dataset.from_tensor_slices((x, y, ids))
    return tf.data.Dataset.from_tensor_slices(({"image": x, "id": ids}, y))


def _upstream(case, ds):
    if case.upstream is None:
        return ds
    return {
        "map": lambda: ds.map(lambda *e: e),
        "shuffle": lambda: ds.shuffle(case.n, seed=7, reshuffle_each_iteration=False),
        "repeat": lambda: ds.repeat(2),
        "shard": lambda: ds.shard(2, 0),
        "filter": lambda: ds.filter(lambda *e: True),
    }[case.upstream]()


def _collect(ds, batched):
    columns = None
    for element in ds.as_numpy_iterator():
        parts = tf.nest.flatten(element)
        if columns is None:
            columns = [[] for _ in parts]
        for column, part in zip(columns, parts):
            column.append(np.asarray(part))
    if columns is None:
        return None
    join = np.concatenate if batched else np.stack
    return [join(column) for column in columns]


def _flat(x, y, ids, mask, case):
    """The expected stream columns, in `tf.nest.flatten` order."""
    if case.structure == "pair":
        parts = [x, y]
    elif case.structure == "weighted":
        parts = [x, y, ids]
    else:  # dict x: flatten sorts keys: "id" before "image"
        parts = [ids, x, y]
    return parts + ([mask] if mask is not None else [])


def expected_columns(case, transform, x, y, ids):
    """What the stream must yield: the NumPy result on the data it reads."""
    # The examples (and their order) the transform reads.
    order = np.arange(case.n)
    if case.upstream == "shuffle":
        order = np.array(
            list(tf.data.Dataset.range(case.n).shuffle(case.n, seed=7, reshuffle_each_iteration=False))
        )
    elif case.upstream == "repeat":
        order = np.concatenate([order, order])
    elif case.upstream == "shard":
        order = order[0::2]
    if case.batch_size and case.drop_remainder:
        order = order[: len(order) // case.batch_size * case.batch_size]
    if isinstance(transform, Sanitize):
        if transform.key == "content":
            x_s, y_s = x[order], y[order]
            ids_s = ids[order]
            x_out, y_out = transform.apply(x_s, y_s)
            if transform.action == "drop":
                ids_s = ids_s[~transform.flagged[order]]
            return _flat(x_out, y_out, ids_s, None, case)
        x_out, y_out = transform.apply(x, y)
        if transform.action == "drop":
            kept = np.flatnonzero(~transform.flagged)
            kept_here = np.isin(kept, order)
            return _flat(x_out[kept_here], y_out[kept_here], ids[kept][kept_here], None, case)
        return _flat(x_out[order], y_out[order], ids[order], None, case)
    x_p, y_p, mask = transform.poison(x, y)
    return _flat(x_p[order], y_p[order], ids[order], mask[order], case)


def run_case(case):
    """Runs one case; returns `(outcome, detail)`."""
    x, y, ids = make_arrays(case)
    transform = make_transform(case, x, y)
    ds = _upstream(case, _source(case, x, y, ids))
    if case.batch_size:
        ds = ds.batch(case.batch_size, drop_remainder=case.drop_remainder)
    # A flat vector is no image-shaped input: then the key must be named.
    image_key = "image" if case.structure == "dict" and len(case.image_shape) == 1 else None
    try:
        if isinstance(transform, Sanitize):
            out = transform.transform(ds, image_key=image_key)
        else:
            out = transform.transform(ds, with_mask=True, image_key=image_key)
        got = _collect(out, bool(case.batch_size))
    except (ValueError, TypeError) as error:
        return "error", f"{type(error).__name__}: {str(error)[:200]}"
    except tf.errors.InvalidArgumentError as error:
        message = error.message
        if "Expected" in message or "num_examples" in message or "report" in message:
            return "error", f"on iteration: {message[:200]}"
        return "unclear", message[:300]
    except Exception as error:  # anything else is not a clear error
        return "unclear", f"{type(error).__name__}: {str(error)[:300]}"
    try:
        want = expected_columns(case, transform, x, y, ids)
    except (ValueError, TypeError) as error:
        # The NumPy path rejects these arrays, but the stream took them.
        return "silent", f"stream ran, NumPy path raised {error}"
    if got is None:
        got = [np.zeros((0,))] * len(want)
    if len(got) != len(want):
        return "silent", f"{len(got)} columns, expected {len(want)}"
    for index, (g, w) in enumerate(zip(got, want)):
        if len(w) == 0 and len(g) == 0:
            continue
        if g.shape != w.shape or g.dtype != w.dtype or not np.array_equal(g, w):
            return "silent", f"column {index}: got {g.shape} {g.dtype}, expected {w.shape} {w.dtype}"
    return "exact", ""


def must_be_exact(case):
    """Whether the contract requires the exact result (not an error)."""
    if case.upstream in ORDER_CHANGING:
        return case.transform.endswith("content")
    return True
