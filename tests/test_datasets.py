import numpy as np
import pytest

from keras_poison import datasets


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


@pytest.fixture(scope="module")
def mnist5k():
    return datasets.load("mnist5k")


def write_npz(path, n_train=6, n_test=4, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 4, 4, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 4, 4, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


# digits and mnist5k (ship with scikit-learn and with this package)


def test_digits_shapes_and_dtypes(digits):
    (x_train, y_train), (x_test, y_test) = digits
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert y_train.shape == (1437,) and y_test.shape == (360,)


def test_digits_are_scaled_to_full_uint8_range(digits):
    (x_train, _), _ = digits
    assert x_train.min() == 0 and x_train.max() == 255


def test_digits_split_is_stratified(digits):
    (_, y_train), (_, y_test) = digits
    full = np.bincount(np.concatenate([y_train, y_test]))
    # Stratification keeps every class within one example of 20% in test.
    assert np.all(np.abs(np.bincount(y_test) - 0.2 * full) <= 1)


def test_digits_split_is_deterministic(digits):
    (x_train, y_train), _ = digits
    x_again, y_again = datasets.load("digits", split="train")
    np.testing.assert_array_equal(x_again, x_train)
    np.testing.assert_array_equal(y_again, y_train)


def test_mnist5k_shapes_dtypes_and_range(mnist5k):
    (x_train, y_train), (x_test, y_test) = mnist5k
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_test.dtype == np.int64
    assert x_train.max() == 255 and x_train.min() == 0


def test_mnist5k_split_is_stratified(mnist5k):
    (_, y_train), (_, y_test) = mnist5k
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10


def test_single_split_name_returns_one_pair():
    x, y = datasets.load("digits", split="test")
    assert x.shape == (360, 8, 8, 1) and y.shape == (360,)


# Local .npz files


def test_npz_file_round_trips(tmp_path):
    arrays = write_npz(tmp_path / "data.npz")
    (x_train, y_train), (x_test, y_test) = datasets.load(
        "cifar10", path=tmp_path / "data.npz"
    )
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert y_train.dtype == np.int64 and x_test.dtype == np.uint8


def test_directory_with_single_npz_is_loaded(tmp_path):
    arrays = write_npz(tmp_path / "anything.npz")
    x_test, _ = datasets.load("cifar10", path=tmp_path, split="test")
    np.testing.assert_array_equal(x_test, arrays["x_test"])


def test_directory_prefers_file_named_after_dataset(tmp_path):
    write_npz(tmp_path / "aaa.npz", n_train=2)
    write_npz(tmp_path / "mnist.npz", n_train=5)
    x_train, _ = datasets.load("mnist", path=tmp_path, split="train")
    assert len(x_train) == 5


def test_directory_with_several_other_npz_is_rejected(tmp_path):
    write_npz(tmp_path / "a.npz")
    write_npz(tmp_path / "b.npz")
    with pytest.raises(ValueError, match=r"cifar10\.npz.*\['a\.npz', 'b\.npz'\]"):
        datasets.load("cifar10", path=tmp_path)


def test_npz_grayscale_images_get_channel_axis(tmp_path):
    write_npz(tmp_path / "d.npz", x_train=np.zeros((6, 4, 4), np.uint8))
    x_train, _ = datasets.load("mnist", path=tmp_path / "d.npz", split="train")
    assert x_train.shape == (6, 4, 4, 1)


def test_npz_column_labels_are_flattened(tmp_path):
    write_npz(tmp_path / "d.npz", y_train=np.zeros((6, 1), np.uint8))
    _, y_train = datasets.load("cifar10", path=tmp_path / "d.npz", split="train")
    assert y_train.shape == (6,)


def test_npz_missing_keys_are_named(tmp_path):
    write_npz(tmp_path / "d.npz", y_test=None)
    expected = r"missing \['y_test'\].*holds \['x_test', 'x_train', 'y_train'\]"
    with pytest.raises(ValueError, match=expected):
        datasets.load("cifar10", path=tmp_path / "d.npz")


def test_npz_length_mismatch_is_rejected(tmp_path):
    write_npz(tmp_path / "d.npz", y_train=np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"len\(x_train\)=6, len\(y_train\)=5"):
        datasets.load("cifar10", path=tmp_path / "d.npz")


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load("cifar10", path=tmp_path / "nope.npz")


# Names, splits and class names


def test_unknown_name_lists_valid_names():
    expected = r"\['cifar10', 'mnist', 'digits', 'mnist5k'\].*name='svhn'"
    with pytest.raises(ValueError, match=expected):
        datasets.load("svhn")


def test_unknown_split_is_rejected_for_builtin_source():
    with pytest.raises(ValueError, match="split='validation'"):
        datasets.load("digits", split="validation")


def test_cifar10_class_names_in_label_order():
    assert datasets.class_names("cifar10") == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]


def test_digit_class_names_are_digit_strings():
    assert datasets.class_names("digits") == [str(d) for d in range(10)]


# Online sources (network replaced by monkeypatch)


def fail(message):
    def raise_error(*args, **kwargs):
        raise RuntimeError(message)

    return raise_error


def test_offline_error_says_to_pass_path(monkeypatch):
    monkeypatch.setattr(datasets, "_load_tfds", fail("no prepared tfds data"))
    monkeypatch.setattr(datasets, "_load_keras", fail("URL fetch failure"))
    expected = r"(?s)Could not download cifar10.*path="
    with pytest.raises(OSError, match=expected) as info:
        datasets.load("cifar10")
    message = str(info.value)
    assert "no prepared tfds data" in message and "URL fetch failure" in message


def test_offline_error_chains_both_underlying_errors(monkeypatch):
    monkeypatch.setattr(datasets, "_load_tfds", fail("tfds"))
    monkeypatch.setattr(datasets, "_load_keras", fail("keras"))
    with pytest.raises(OSError) as info:
        datasets.load("mnist")
    assert str(info.value.__cause__) == "keras"
    assert str(info.value.__cause__.__context__) == "tfds"


def test_download_false_never_tries_keras_datasets(monkeypatch):
    monkeypatch.setattr(datasets, "_load_tfds", fail("tfds"))
    monkeypatch.setattr(datasets, "_load_keras", fail("must not be called"))
    with pytest.raises(OSError, match="download=False") as info:
        datasets.load("mnist", download=False)
    assert "must not be called" not in str(info.value)


def test_falls_back_to_keras_datasets_when_tfds_fails(monkeypatch):
    monkeypatch.setattr(datasets, "_load_tfds", fail("tfds"))
    monkeypatch.setattr(
        datasets,
        "_load_keras",
        lambda name, splits: [
            (np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int64))
        ],
    )
    x, _ = datasets.load("mnist", split="train")
    assert x.shape == (2, 4, 4, 1)


def test_keras_datasets_arrays_are_normalized(monkeypatch):
    # keras.datasets gives mnist without a channel axis and cifar10 labels
    # of shape (n, 1) as uint8.
    class FakeModule:
        @staticmethod
        def load_data():
            x = np.zeros((3, 4, 4), np.uint8)
            y = np.array([[1], [2], [3]], np.uint8)
            return (x, y), (x[:1], y[:1])

    import keras

    monkeypatch.setattr(keras.datasets, "mnist", FakeModule)
    (x_train, y_train), (x_test, _) = datasets._load_keras(
        "mnist", ("train", "test")
    )
    assert x_train.shape == (3, 4, 4, 1) and x_test.shape == (1, 4, 4, 1)
    assert y_train.tolist() == [1, 2, 3] and y_train.dtype == np.int64


def test_npz_channels_first_images_and_negative_labels_are_refused(tmp_path):
    # Both loaded silently before (hostile-user pass).
    x = np.zeros((10, 3, 32, 32), np.uint8)
    y = np.arange(10)
    np.savez(tmp_path / "chw.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="channels-first; store np.moveaxis"):
        datasets.load("cifar10", path=tmp_path / "chw.npz")
    x = np.zeros((10, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "neg.npz", x_train=x, y_train=y - 6, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="class indices >= 0"):
        datasets.load("cifar10", path=tmp_path / "neg.npz")
    big = np.full(10, 2**63 + 3, np.uint64)
    np.savez(tmp_path / "big.npz", x_train=x, y_train=big, x_test=x, y_test=y)
    with pytest.raises(ValueError, match="fit int64"):
        datasets.load("cifar10", path=tmp_path / "big.npz")
