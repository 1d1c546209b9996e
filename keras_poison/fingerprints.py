"""Content keys: a 64-bit fingerprint of each example's image bytes and label.

A transform keyed on an example's *position* needs the examples in the
data's own order; one keyed on its *content* does not: the same image with
the same label gets the same key whatever the order, shard or epoch it
arrives in. `Sanitize(report, key="content")` uses these keys to find the
flagged examples in a shuffled, repeated or sharded stream.

The key is TensorFlow's `tf.fingerprint` (FarmHash64) of the image's raw
bytes, fingerprinted again together with the class index as int64, so
the NumPy side and the `tf.data` side compute the very same op. Labels
enter as class indices, so sparse, `(n, 1)` and one-hot copies of one data
set have the same keys; images enter by their bytes, so a cast or a
rescale (uint8 to float in [0, 1]) gives other keys. Two examples with the
same image bytes and label have the same key and cannot be told apart.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices


def content_keys_tensor(images, class_indices):
    """int64 keys of a batch of examples (TensorFlow ops, graph-safe).

    Args:
        images: a tensor `(B, ...)` in the images' own dtype.
        class_indices: int tensor `(B,)`, the examples' classes.

    Returns:
        An int64 tensor `(B,)`.
    """
    image_bytes = tf.fingerprint(images)  # (B, 8) uint8
    label_bytes = tf.bitcast(tf.cast(class_indices, tf.int64)[:, None], tf.uint8)
    both = tf.concat([image_bytes, tf.reshape(label_bytes, (-1, 8))], axis=1)
    return tf.bitcast(tf.fingerprint(both), tf.int64)


def content_keys(x, y):
    """The content key of every example of NumPy arrays.

    Args:
        x: images `(n, ...)`, in the dtype the stream will carry.
        y: labels, sparse `(n,)`, `(n, 1)` or one-hot `(n, K)`.

    Returns:
        An int64 array `(n,)`.

    Example:

    >>> x = np.arange(24, dtype="uint8").reshape(3, 2, 2, 2)
    >>> keys = content_keys(x, np.array([0, 1, 1]))
    >>> bool(np.all(keys == content_keys(x, np.eye(2)[[0, 1, 1]])))
    True
    >>> bool(keys[0] == content_keys(x[:1], np.array([1]))[0])  # label counts
    False
    """
    x = np.asarray(x)
    labels, _ = to_class_indices(y, "y")
    if len(x) != len(labels):
        raise ValueError(
            "Expected `x` and `y` to have the same number of examples. "
            f"Received: len(x)={len(x)}, len(y)={len(labels)}"
        )
    if len(x) == 0:
        return np.zeros((0,), np.int64)
    chunks = []
    for start in range(0, len(x), 4096):
        stop = start + 4096
        chunks.append(
            content_keys_tensor(tf.constant(x[start:stop]), tf.constant(labels[start:stop])).numpy()
        )
    return np.concatenate(chunks)
