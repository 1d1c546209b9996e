"""Integrity manifests: strict access control, made checkable in software.

The seed report (000, §4.5) lists *strict access control* over the training
data among the best practices against poisoning: if no one but the data's
owner can write it, no one else can flip its labels or slip in patterned
images. Access control is a policy, though, and nothing in a training run
can see whether it held. A manifest makes it checkable: `DatasetManifest`
records a SHA-256 fingerprint of every example when the data is known to be
good, and `verify` later reports exactly which examples were modified in
place, relabelled, added or removed since then, before a model is trained
on them.

What is fingerprinted:

* An image by its raw bytes together with its dtype and shape, so that a
  cast (say `uint8` to `float32`) or a reshape counts as a change even
  where the values are equal.
* A label by its class index as `int64`: sparse, `(n, 1)` and one-hot copies
  of the same labels match, so changing the label *format* is not taken for
  relabelling. The manifest stores the class index itself rather than a
  hash of it: with a handful of classes a hash would hide nothing (it is
  inverted by trying every class), whereas the index lets a report say
  which label an example had. The original label format, and the number of
  classes of one-hot labels, are recorded as metadata.

Examples are matched by content, not position, so a data set that was only
shuffled verifies as clean.

File format (version 1). A `.json` manifest is one object: `format_version`,
`fingerprint` (the recipe, in words), `count`, `image_shape` (one image),
`image_dtype` (NumPy's `dtype.str`, e.g. `"|u1"`, `"<f4"`), `label_format`
(`"sparse"` or `"one_hot"`), `num_classes` (the one-hot width or `null`),
`digest`, then `image_sha256` (one hex digest per example) and `labels`
(one class index per example), both in data order. An image's digest is
`sha256(dtype.str + str(shape) + image.tobytes())` with the per-image shape
as a Python tuple, e.g. `sha256(b"|u1(32, 32, 3)" + bytes)`. A `.npz`
manifest holds the same: `metadata` (the fields above as a JSON string),
`image_sha256` (`uint8`, shape `(count, 32)`) and `labels` (`int64`). The
`digest` is the SHA-256 of the metadata without `digest` as compact
sorted-key JSON, followed by the raw image digests and the labels as
little-endian `int64`; it is the same in both formats.

A saved manifest carries a SHA-256 digest of its own content, checked on
`load`. The digest catches accidental corruption (a truncated copy, a bad
disk) and naive edits; it does not stop an attacker who can rewrite the file,
since they can recompute it. Against such an attacker keep the manifest where
the data's writers cannot change it (another machine, a read-only bucket, a
commit in version control), or sign the file.
"""

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from dataclasses import field

import numpy as np

FORMAT_VERSION = 1
_DIGEST_SIZE = 32  # bytes in a SHA-256 digest
_EXTENSIONS = (".json", ".npz")
_SUMMARY_LIMIT = 10  # indices listed per kind in `summary()`


@dataclass(frozen=True, eq=False)
class ManifestDiff:
    """What changed between a `DatasetManifest` and the data verified against it.

    Examples are matched by content. Every example of the data is either
    matched to one of the manifest (unchanged or `relabelled`) or is
    `modified` or `added`; every example of the manifest is either matched
    or is `modified` or `removed`. Reordering alone is not a change.

    Attributes:
        modified: Data indices of examples whose image changed in place: the
            image at that position matches no remaining manifest image, and
            the manifest's image at the same position matches no remaining
            data image. The label may have changed too. The index is the same
            in the data and in the manifest.
        relabelled: Data indices of examples whose image is in the manifest
            with another label.
        added: Data indices of examples in the data but not in the manifest.
        removed: Manifest indices of examples in the manifest but not in
            the data.
        old_labels: The manifest's label of each `relabelled` example, in
            the same order.
        new_labels: The data's label of each `relabelled` example, in the
            same order.
        num_examples: Number of examples in the data.
        num_manifest_examples: Number of examples in the manifest.

    Example:

    >>> x = np.arange(12, dtype="uint8").reshape(4, 3)
    >>> manifest = DatasetManifest.create(x, np.array([0, 1, 0, 1]))
    >>> diff = manifest.verify(x, np.array([0, 1, 1, 1]))
    >>> diff.clean, diff.relabelled.tolist()
    (False, [2])
    """

    modified: np.ndarray
    relabelled: np.ndarray
    added: np.ndarray
    removed: np.ndarray
    old_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    new_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_examples: int = 0
    num_manifest_examples: int = 0

    @property
    def clean(self):
        """`True` when nothing was modified, relabelled, added or removed."""
        return not any(
            len(a) for a in (self.modified, self.relabelled, self.added, self.removed)
        )

    def summary(self):
        """Returns a short, readable report of the changes.

        Returns:
            A multi-line string: one line with the counts, then one line per
            kind of change listing the first indices.
        """
        counts = (
            f"{len(self.modified)} modified, {len(self.relabelled)} relabelled, "
            f"{len(self.added)} added, {len(self.removed)} removed"
        )
        head = (
            f"{self.num_examples} examples checked against a manifest of "
            f"{self.num_manifest_examples}"
        )
        if self.clean:
            return f"{head}: clean (no changes)."
        lines = [f"{head}: {counts}."]
        lines += _index_line("modified (data index)", self.modified)
        relabels = [
            f"{i} ({old} -> {new})"
            for i, old, new in zip(self.relabelled, self.old_labels, self.new_labels)
        ]
        lines += _index_line("relabelled (data index: old -> new)", relabels)
        lines += _index_line("added (data index)", self.added)
        lines += _index_line("removed (manifest index)", self.removed)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _index_line(title, items):
    if not len(items):
        return []
    shown = ", ".join(str(i) for i in list(items)[:_SUMMARY_LIMIT])
    more = f", ... ({len(items) - _SUMMARY_LIMIT} more)" if len(items) > _SUMMARY_LIMIT else ""
    return [f"  {title}: {shown}{more}"]


class DatasetManifest:
    """Per-example SHA-256 fingerprints of an image classification data set.

    Create a manifest while the data is known to be good, keep it where the
    data's writers cannot change it, and `verify` the data against it before
    training: the returned `ManifestDiff` lists the examples modified in
    place, relabelled, added and removed since (seed report 000, §4.5,
    *strict access control*; see the module docstring).

    Images are fingerprinted with their dtype and shape, labels by class
    index, so one-hot and sparse copies of the same data match. Data can be
    NumPy arrays or a `tf.data.Dataset` of `(image, label)` pairs, batched or
    not; a dataset is streamed, holding one batch at a time.

    Use `DatasetManifest.create` rather than the constructor.

    Args:
        image_digests: `uint8` array of shape `(n, 32)`, the SHA-256 digest
            of each image.
        labels: `int64` array of shape `(n,)`, the class index of each
            example.
        image_shape: Tuple, the shape of one image.
        image_dtype: The NumPy dtype of the images.
        label_format: `"sparse"` or `"one_hot"`, as the labels were given.
            Defaults to `"sparse"`.
        num_classes: The one-hot width, or `None` for sparse labels.
            Defaults to `None`.

    Example:

    >>> x = np.random.default_rng(0).random((6, 4, 4, 1), dtype="float32")
    >>> y = np.array([0, 1, 2, 0, 1, 2])
    >>> manifest = DatasetManifest.create(x, y)
    >>> len(manifest), manifest.image_shape, manifest.image_dtype
    (6, (4, 4, 1), dtype('float32'))
    >>> manifest.verify(x[::-1], y[::-1]).clean  # reordering is no change
    True
    >>> x[3] += 0.5
    >>> print(manifest.verify(x, y))
    6 examples checked against a manifest of 6: 1 modified, 0 relabelled, 0 added, 0 removed.
      modified (data index): 3
    """

    def __init__(
        self,
        image_digests,
        labels,
        image_shape,
        image_dtype,
        label_format="sparse",
        num_classes=None,
    ):
        self.image_digests = np.asarray(image_digests, dtype=np.uint8).reshape(-1, _DIGEST_SIZE)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.image_dtype = np.dtype(image_dtype)
        self.label_format = label_format
        self.num_classes = None if num_classes is None else int(num_classes)

    @classmethod
    def create(cls, x, y=None):
        """Fingerprints every example of a data set.

        Args:
            x: Images as an array of shape `(n, ...)`, or a `tf.data.Dataset`
                yielding `(image, label)` pairs, unbatched or batched (then
                `y` must be `None`). A rank-1 label element is a batch of
                sparse labels when its length is open (as after `batch`) or
                equals the image's leading dimension and its dtype is an
                integer; otherwise it is one example's label.
            y: Labels of shape `(n,)`, `(n, 1)` or one-hot `(n, num_classes)`,
                for array `x`. Defaults to `None`.

        Returns:
            A `DatasetManifest`.

        Example:

        >>> x = np.zeros((3, 2, 2), dtype="uint8")
        >>> x[1] = 1; x[2] = 2
        >>> y = np.eye(3, dtype="float32")  # one-hot
        >>> manifest = DatasetManifest.create(x, y)
        >>> manifest.label_format, manifest.num_classes, manifest.labels.tolist()
        ('one_hot', 3, [0, 1, 2])
        >>> ds = tf.data.Dataset.from_tensor_slices((x, [0, 1, 2])).batch(2)
        >>> DatasetManifest.create(ds).verify(x, y).clean
        True
        """
        digests, labels, spec = _fingerprint(x, y, expected=None)
        return cls(digests, labels, **spec)

    def verify(self, x, y=None):
        """Compares data with this manifest.

        Examples are matched by image fingerprint first, as a multiset (so
        duplicates and reordering are handled): data and manifest examples
        with the same image and label pair up first, then those with the
        same image and another label (`relabelled`). Of what is left, a data
        example and a manifest example at the same index are `modified`;
        the other data examples are `added` and the other manifest examples
        `removed`. See `ManifestDiff` for the index space of each array.

        Args:
            x: Images or a `tf.data.Dataset`, as for `create`.
            y: Labels, as for `create`. Their format (sparse or one-hot) may
                differ from the manifest's. Defaults to `None`.

        Returns:
            A `ManifestDiff`.

        Raises:
            ImageFormatChanged: (a `ValueError`) if the images' per-example
                shape or dtype differs from the manifest's (checked before
                any example is hashed).
            ValueError: if the data is empty or malformed.

        Example:

        >>> x = np.arange(8, dtype="int32").reshape(4, 2)
        >>> manifest = DatasetManifest.create(x, np.array([0, 0, 1, 1]))
        >>> diff = manifest.verify(x[:3], np.array([0, 0, 1]))
        >>> diff.removed.tolist(), diff.clean
        ([3], False)
        """
        expected = (self.image_shape, self.image_dtype)
        digests, labels, _ = _fingerprint(x, y, expected=expected)
        return _compare(self.image_digests, self.labels, digests, labels)

    @property
    def digest(self):
        """Hex SHA-256 digest of the whole manifest: fingerprints and metadata.

        It is the same whichever file format the manifest is saved in.
        """
        return _content_digest(self._metadata(), self.image_digests, self.labels)

    def save(self, path):
        """Writes the manifest to a `.json` or `.npz` file.

        JSON is readable and diffable (one hex fingerprint per example);
        `.npz` is about half the size and faster for large data sets. Both
        hold the same content and the same self-digest, checked by `load`.

        Args:
            path: Destination; its extension, `.json` or `.npz`, picks the
                format.

        Example:

        ```python
        manifest.save("cifar10_train.manifest.json")
        ```
        """
        path = os.fspath(path)
        extension = _extension(path)
        metadata = self._metadata()
        metadata["digest"] = self.digest
        if extension == ".json":
            document = dict(
                metadata,
                image_sha256=[bytes(d).hex() for d in self.image_digests],
                labels=self.labels.tolist(),
            )
            with open(path, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=1)
                f.write("\n")
        else:
            # Metadata as a JSON string in a 0-d unicode array: readable with
            # allow_pickle=False, unlike a dict (an object array).
            with open(path, "wb") as f:
                np.savez(
                    f,
                    metadata=np.array(json.dumps(metadata, sort_keys=True)),
                    image_sha256=self.image_digests,
                    labels=self.labels,
                )

    @classmethod
    def load(cls, path):
        """Reads a manifest written by `save`, checking its self-digest.

        Nothing in the file is executed: JSON is parsed as data and `.npz`
        arrays are read with `allow_pickle=False`.

        Args:
            path: A `.json` or `.npz` file written by `save`.

        Returns:
            A `DatasetManifest`.

        Raises:
            ValueError: if the extension is neither `.json` nor `.npz`, the
                file is unreadable, truncated or malformed, its format version
                is unknown, or its content no longer matches its digest.
            FileNotFoundError: if `path` does not exist.

        Example:

        ```python
        manifest = DatasetManifest.load("cifar10_train.manifest.json")
        diff = manifest.verify(x_train, y_train)
        ```
        """
        path = os.fspath(path)
        extension = _extension(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Expected `path` to be an existing manifest file. "
                f"Received: path={path!r}, which does not exist"
            )
        try:
            if extension == ".json":
                metadata, digests, labels = _read_json(path)
            else:
                metadata, digests, labels = _read_npz(path)
            manifest = cls._from_parts(metadata, digests, labels)
            stored = str(metadata["digest"])
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as error:
            # Truncation and garbage surface as many error types; one message.
            raise ValueError(
                f"Expected `path` to be a manifest file written by "
                f"DatasetManifest.save. Received: path={path!r}, which is "
                f"truncated or malformed ({type(error).__name__}: {error})"
            ) from error
        if manifest.digest != stored:
            raise ValueError(
                f"The manifest file {path!r} is corrupted or was edited: digest "
                f"mismatch (stored {stored}, content hashes to "
                f"{manifest.digest})."
            )
        return manifest

    @classmethod
    def _from_parts(cls, metadata, digests, labels):
        version = metadata["format_version"]
        if version != FORMAT_VERSION:
            raise ValueError(
                f"Expected manifest format_version {FORMAT_VERSION}. "
                f"Received: format_version={version!r}"
            )
        digests = np.asarray(digests)
        labels = np.asarray(labels)
        count = metadata["count"]
        if digests.shape != (count, _DIGEST_SIZE) or labels.shape != (count,):
            raise ValueError(
                f"Expected {count} fingerprints and labels. Received: "
                f"image_sha256 of shape {digests.shape}, labels of shape {labels.shape}"
            )
        return cls(
            digests,
            labels,
            image_shape=metadata["image_shape"],
            image_dtype=np.dtype(metadata["image_dtype"]),
            label_format=metadata["label_format"],
            num_classes=metadata["num_classes"],
        )

    def _metadata(self):
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": "image: sha256(dtype.str + str(shape) + raw C-order bytes); label: int64 class index",
            "count": len(self),
            "image_shape": list(self.image_shape),
            "image_dtype": self.image_dtype.str,
            "label_format": self.label_format,
            "num_classes": self.num_classes,
        }

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return (
            f"DatasetManifest({len(self)} examples, image_shape={self.image_shape}, "
            f"image_dtype={self.image_dtype}, label_format={self.label_format!r})"
        )


def _extension(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in _EXTENSIONS:
        raise ValueError(
            f"Expected `path` to end in one of {list(_EXTENSIONS)}. "
            f"Received: path={path!r}"
        )
    return extension


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        document = json.load(f)  # JSONDecodeError is a ValueError
    if not isinstance(document, dict):
        raise ValueError("the top level is not a JSON object")
    digests = [bytes.fromhex(h) for h in document.pop("image_sha256")]
    digests = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, _DIGEST_SIZE)
    labels = np.asarray(document.pop("labels"), dtype=np.int64)
    return document, digests, labels


def _read_npz(path):
    with np.load(path, allow_pickle=False) as archive:
        metadata = json.loads(str(archive["metadata"][()]))
        digests = archive["image_sha256"]
        labels = archive["labels"]
    if digests.dtype != np.uint8 or labels.dtype != np.int64:
        raise ValueError(
            f"arrays of dtype {digests.dtype} and {labels.dtype}, not uint8 and int64"
        )
    return metadata, digests, labels


def _content_digest(metadata, digests, labels):
    """SHA-256 over a canonical serialization, independent of the file format."""
    hasher = hashlib.sha256()
    hasher.update(json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode())
    hasher.update(np.ascontiguousarray(digests, dtype=np.uint8).tobytes())
    hasher.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return hasher.hexdigest()


# --- Fingerprinting -------------------------------------------------------


def _fingerprint(x, y, expected):
    """Returns `(digests, labels, spec)` for arrays or a dataset.

    `expected` is `(image_shape, dtype)` to check against, or `None`; it is
    checked on the array (or the dataset's element spec) before hashing, and
    again on every batch of a dataset, whose spec may leave dimensions open.
    """
    if _is_dataset(x):
        if y is not None:
            raise ValueError(
                "Expected `y` to be None when `x` is a tf.data.Dataset (it "
                f"yields the labels). Received: y of type {type(y).__name__}"
            )
        batches = _dataset_batches(x, expected)
    else:
        batches = [_array_batch(x, y, expected)]

    digests, labels, spec = [], [], None
    for images, batch_labels, width in batches:
        spec = _merge_spec(spec, images, width)
        digests.append(_hash_images(images))
        labels.append(batch_labels)
    if spec is None or not sum(len(lab) for lab in labels):
        raise ValueError("Expected `x` to hold at least one example. Received: no examples")
    return np.concatenate(digests), np.concatenate(labels), spec


def _is_dataset(x):
    # Duck-typed so that this module (and the CLI) need not import TensorFlow.
    return hasattr(x, "as_numpy_iterator") and hasattr(x, "element_spec")


def _array_batch(x, y, expected):
    if y is None:
        raise ValueError(
            "Expected `y` (labels) when `x` is an array. Received: y=None"
        )
    x = np.asarray(x)
    if x.ndim < 1 or not len(x):
        raise ValueError(f"Expected `x` to hold at least one example. Received: x.shape={x.shape}")
    _check_images(x.shape[1:], x.dtype, expected)
    labels, width = _class_indices(y)
    if len(labels) != len(x):
        raise ValueError(
            "Expected `x` and `y` to have the same length. "
            f"Received: len(x)={len(x)}, len(y)={len(labels)}"
        )
    return x, labels, width


def _dataset_batches(dataset, expected):
    """Yields `(images, labels, width)` per dataset element, streaming."""
    # The dataset is already a TensorFlow object here; the module itself
    # stays importable without TensorFlow (the CLI's `manifest` commands).
    from keras_poison import streams

    layout = streams.describe(dataset, caller="DatasetManifest")
    if layout.arity != 2 or layout.image_key is not None:
        raise ValueError(
            "Expected `x` to be a tf.data.Dataset of (image, label) pairs. "
            f"Received: element_spec={dataset.element_spec}"
        )
    batched = layout.batched
    x_spec = layout.image_spec
    image_shape = x_spec.shape[1:] if batched else x_spec.shape
    if expected is not None and image_shape.rank is not None:
        # Compare what the spec knows now, before the first element is read.
        _check_images(
            tuple(image_shape.as_list()), np.dtype(x_spec.dtype.as_numpy_dtype), expected,
            open_dims=True,
        )
    for images, labels in dataset.as_numpy_iterator():
        images, labels = np.asarray(images), np.asarray(labels)
        if not batched:
            images, labels = images[np.newaxis], labels[np.newaxis]
        _check_images(images.shape[1:], images.dtype, expected)
        labels, width = _class_indices(labels)
        if len(labels) != len(images):
            raise ValueError(
                "Expected each dataset element to hold as many labels as images. "
                f"Received: {len(images)} images and {len(labels)} labels"
            )
        yield images, labels, width


class ImageFormatChanged(ValueError):
    """The images' per-example shape or dtype differs from the manifest's.

    A `ValueError`: the data changed as a whole (a cast or a reshape), so
    `verify` raises before hashing any example; the command line reports it
    as a change (exit status 1), not as an error.
    """


def _check_images(shape, dtype, expected, open_dims=False):
    if expected is None:
        return
    want_shape, want_dtype = expected
    shape = tuple(shape)
    same_shape = len(shape) == len(want_shape) and all(
        got == want or (open_dims and got is None) for got, want in zip(shape, want_shape)
    )
    if not same_shape or np.dtype(dtype) != want_dtype:
        raise ImageFormatChanged(
            f"Expected `x` to hold images of shape {tuple(want_shape)} and dtype "
            f"{want_dtype}, as in the manifest. Received: images of shape "
            f"{shape} and dtype {np.dtype(dtype)}"
        )


def _class_indices(y):
    """Returns `(labels, width)`: int64 class indices and the one-hot width."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise ValueError(
            "Expected `y` of shape (n,), (n, 1) or one-hot (n, num_classes). "
            f"Received: y.shape={y.shape}"
        )
    if y.ndim == 2:
        # Soft labels would lose information in an argmax: refuse them.
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError(
                "Expected 2-D `y` to be one-hot (one 1 per row, zeros "
                "elsewhere). Received: rows that are not one-hot"
            )
        return np.argmax(y, axis=1).astype(np.int64), y.shape[1]
    if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
        raise ValueError(
            f"Expected `y` to hold integer class indices. Received: y.dtype={y.dtype}"
        )
    if y.size and y.min() < 0:
        raise ValueError(
            f"Expected `y` to hold class indices >= 0. Received: y contains {y.min()}"
        )
    return y.astype(np.int64), None


def _merge_spec(spec, images, width):
    """The manifest metadata, checked to be the same for every batch."""
    current = {
        "image_shape": tuple(images.shape[1:]),
        "image_dtype": images.dtype,
        "label_format": "sparse" if width is None else "one_hot",
        "num_classes": width,
    }
    if spec is not None and spec != current:
        raise ValueError(
            "Expected every batch of `x` to have the same image shape, dtype "
            f"and label format. Received: {spec} then {current}"
        )
    return current


def _hash_images(images):
    """One SHA-256 digest per image, over its dtype, shape and raw bytes."""
    header = f"{images.dtype.str}{tuple(images.shape[1:])}".encode()
    out = np.empty((len(images), _DIGEST_SIZE), dtype=np.uint8)
    for i, image in enumerate(images):
        hasher = hashlib.sha256(header)
        hasher.update(np.ascontiguousarray(image).tobytes())
        out[i] = np.frombuffer(hasher.digest(), dtype=np.uint8)
    return out


# --- Matching -------------------------------------------------------------


def _compare(old_digests, old_labels, new_digests, new_labels):
    """Matches data examples to manifest examples; returns a `ManifestDiff`."""
    old_keys = [bytes(d) for d in old_digests]
    new_keys = [bytes(d) for d in new_digests]
    old_free = np.ones(len(old_keys), dtype=bool)
    new_free = np.ones(len(new_keys), dtype=bool)

    # Exact matches (image and label) first, so that duplicated images with
    # different labels pair up with their own label before any is counted
    # as relabelled.
    _pair(old_keys, old_labels, new_keys, new_labels, old_free, new_free)
    # Then the same image with another label; pairs come in data order.
    relabel_pairs = _pair(old_keys, None, new_keys, None, old_free, new_free)
    relabelled = np.array([new for _, new in relabel_pairs], dtype=np.int64)
    old_labels_of = np.array([old_labels[old] for old, _ in relabel_pairs], dtype=np.int64)
    new_labels_of = np.array([new_labels[new] for _, new in relabel_pairs], dtype=np.int64)

    # Unmatched at the same position on both sides: changed in place.
    both = min(len(old_keys), len(new_keys))
    in_place = old_free[:both] & new_free[:both]
    old_free[:both] &= ~in_place
    new_free[:both] &= ~in_place
    return ManifestDiff(
        modified=np.flatnonzero(in_place).astype(np.int64),
        relabelled=relabelled,
        added=np.flatnonzero(new_free).astype(np.int64),
        removed=np.flatnonzero(old_free).astype(np.int64),
        old_labels=old_labels_of,
        new_labels=new_labels_of,
        num_examples=len(new_keys),
        num_manifest_examples=len(old_keys),
    )


def _pair(old_keys, old_labels, new_keys, new_labels, old_free, new_free):
    """Pairs free examples with equal keys (and labels, if given), in order.

    Marks the paired examples as taken and returns `[(old, new), ...]`.
    """
    def key(keys, labels, i):
        return keys[i] if labels is None else (keys[i], int(labels[i]))

    waiting = {}
    for i in np.flatnonzero(old_free):
        waiting.setdefault(key(old_keys, old_labels, i), []).append(int(i))
    for queue in waiting.values():
        queue.reverse()  # pop() from the end takes the earliest index
    pairs = []
    for j in np.flatnonzero(new_free):
        queue = waiting.get(key(new_keys, new_labels, j))
        if queue:
            i = queue.pop()
            old_free[i] = new_free[j] = False
            pairs.append((i, int(j)))
    return pairs
