"""DatasetManifest: per-example fingerprints that show what changed in a data set."""

import doctest
import hashlib
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_poison import RandomFlip
from keras_poison import cli
from keras_poison.defences import integrity
from keras_poison.defences.integrity import DatasetManifest
from keras_poison.defences.integrity import ManifestDiff


def make_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 6, 6, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return x, y


@pytest.fixture
def data():
    return make_data()


@pytest.fixture
def manifest(data):
    return DatasetManifest.create(*data)


def assert_diff(diff, modified=(), relabelled=(), added=(), removed=()):
    assert diff.modified.tolist() == list(modified)
    assert diff.relabelled.tolist() == list(relabelled)
    assert diff.added.tolist() == list(added)
    assert diff.removed.tolist() == list(removed)


# --- Fingerprints --------------------------------------------------------


def test_fingerprints_are_stable_across_copies(data):
    x, y = data
    first = DatasetManifest.create(x, y)
    second = DatasetManifest.create(x.copy(), y.copy())
    np.testing.assert_array_equal(first.image_digests, second.image_digests)
    assert first.digest == second.digest


def test_fingerprints_match_a_known_sha256_of_dtype_shape_and_bytes():
    x = np.arange(4, dtype=np.uint8).reshape(1, 2, 2)
    expected = hashlib.sha256(b"|u1(2, 2)" + x[0].tobytes()).digest()
    assert bytes(DatasetManifest.create(x, [0]).image_digests[0]) == expected


def test_records_shape_dtype_count_and_label_format(manifest):
    assert (len(manifest), manifest.image_shape, manifest.image_dtype) == (
        40, (6, 6, 3), np.dtype("uint8")
    )
    assert (manifest.label_format, manifest.num_classes) == ("sparse", None)


def test_same_bytes_with_another_dtype_get_another_fingerprint():
    x = np.arange(4, dtype=np.uint8).reshape(1, 4)
    unsigned = DatasetManifest.create(x, [0]).image_digests
    signed = DatasetManifest.create(x.view(np.int8), [0]).image_digests
    assert bytes(unsigned[0]) != bytes(signed[0])


def test_verify_against_another_dtype_raises_naming_both(manifest, data):
    x, y = data
    with pytest.raises(ValueError, match="dtype uint8.*Received.*dtype float32"):
        manifest.verify(x.astype("float32"), y)


def test_one_hot_and_sparse_labels_give_the_same_fingerprints(data):
    x, y = data
    sparse = DatasetManifest.create(x, y)
    one_hot = DatasetManifest.create(x, np.eye(10, dtype="float32")[y])
    np.testing.assert_array_equal(sparse.labels, one_hot.labels)
    assert (one_hot.label_format, one_hot.num_classes) == ("one_hot", 10)
    assert sparse.verify(x, np.eye(10)[y]).clean


def test_column_labels_match_sparse_labels(manifest, data):
    x, y = data
    assert manifest.verify(x, y[:, None]).clean


# --- Verification --------------------------------------------------------


def test_unchanged_data_verifies_clean(manifest, data):
    diff = manifest.verify(*data)
    assert diff.clean
    assert "clean" in diff.summary()


def test_shuffled_data_verifies_clean(manifest, data):
    x, y = data
    order = np.random.default_rng(1).permutation(len(x))
    assert manifest.verify(x[order], y[order]).clean


def test_detects_images_modified_in_place(manifest, data):
    x, y = data
    x = x.copy()
    x[[3, 17], 0, 0, 0] ^= 1
    assert_diff(manifest.verify(x, y), modified=[3, 17])


def test_detects_relabelled_examples_with_old_and_new_labels(manifest, data):
    x, y = data
    y = y.copy()
    y[[5, 9]] = (y[[5, 9]] + 1) % 10
    diff = manifest.verify(x, y)
    assert_diff(diff, relabelled=[5, 9])
    assert diff.new_labels.tolist() == y[[5, 9]].tolist()
    assert diff.old_labels.tolist() == ((y[[5, 9]] - 1) % 10).tolist()


def test_relabelled_set_equals_the_random_flip_mask(manifest, data):
    x, y = data
    x_poisoned, y_poisoned, mask = RandomFlip(0.2, num_classes=10, seed=0).poison(x, y)
    diff = manifest.verify(x_poisoned, y_poisoned)
    assert mask.any()
    assert_diff(diff, relabelled=np.flatnonzero(mask).tolist())


def test_detects_appended_examples_as_added(manifest, data):
    x, y = data
    extra_x, extra_y = make_data(n=2, seed=5)
    diff = manifest.verify(np.concatenate([x, extra_x]), np.concatenate([y, extra_y]))
    assert_diff(diff, added=[40, 41])


def test_detects_deleted_examples_as_removed_in_manifest_indices(manifest, data):
    x, y = data
    keep = np.setdiff1d(np.arange(40), [0, 12])
    assert_diff(manifest.verify(x[keep], y[keep]), removed=[0, 12])


def test_a_replaced_example_in_shorter_data_is_modified_and_the_tail_removed(manifest, data):
    x, y = data
    x = x[:38].copy()
    x[4] = 0
    assert_diff(manifest.verify(x, y[:38]), modified=[4], removed=[38, 39])


def test_duplicated_images_with_swapped_labels_verify_clean():
    x = np.zeros((3, 2, 2), np.uint8)
    x[2] = 7
    manifest = DatasetManifest.create(x, [1, 2, 3])
    assert manifest.verify(x[[1, 0, 2]], [2, 1, 3]).clean


def test_an_extra_duplicate_is_added_not_relabelled():
    x = np.zeros((2, 2, 2), np.uint8)
    x[1] = 5
    manifest = DatasetManifest.create(x, [0, 1])
    diff = manifest.verify(x[[0, 1, 0]], [0, 1, 0])
    assert_diff(diff, added=[2])


def test_summary_counts_each_kind_of_change(manifest, data):
    x, y = data
    y = y.copy()
    y[2] = (y[2] + 1) % 10
    text = str(manifest.verify(x[:-1], y[:-1]))
    assert "0 modified, 1 relabelled, 0 added, 1 removed" in text
    assert "removed (manifest index): 39" in text


def test_diff_is_frozen(manifest, data):
    diff = manifest.verify(*data)
    assert isinstance(diff, ManifestDiff)
    with pytest.raises(AttributeError):
        diff.modified = np.array([1])


# --- tf.data -------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 1, 7, 64], ids=lambda b: f"batch={b}")
def test_dataset_and_arrays_give_the_same_manifest(data, manifest, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(data)
    if batch_size:
        ds = ds.batch(batch_size)
    assert DatasetManifest.create(ds).digest == manifest.digest


def test_dataset_with_one_hot_labels_verifies_against_sparse_manifest(data, manifest):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, 10)))
    assert manifest.verify(ds).clean
    assert manifest.verify(ds.batch(8, drop_remainder=False)).clean


def test_batched_dataset_with_fixed_batch_size_is_read_as_batches(data, manifest):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10, drop_remainder=True)
    assert manifest.verify(ds).clean


def test_dataset_of_other_image_shape_raises_before_reading(manifest):
    def never():
        raise AssertionError("the dataset was read")
        yield  # pragma: no cover

    spec = (tf.TensorSpec((8, 8, 3), tf.uint8), tf.TensorSpec((), tf.int64))
    ds = tf.data.Dataset.from_generator(never, output_signature=spec)
    with pytest.raises(ValueError, match=r"shape \(6, 6, 3\).*Received.*\(8, 8, 3\)"):
        manifest.verify(ds)


def test_dataset_with_y_argument_raises(data):
    ds = tf.data.Dataset.from_tensor_slices(data)
    with pytest.raises(ValueError, match="Expected `y` to be None"):
        DatasetManifest.create(ds, data[1])


# --- Validation ----------------------------------------------------------


def test_verify_against_another_image_shape_names_both_shapes(manifest, data):
    x, y = data
    with pytest.raises(ValueError, match=r"Expected `x`.*\(6, 6, 3\).*Received.*\(6, 6, 1\)"):
        manifest.verify(x[..., :1], y)


def test_lengths_that_differ_raise(data):
    x, y = data
    with pytest.raises(ValueError, match=r"len\(x\)=40, len\(y\)=39"):
        DatasetManifest.create(x, y[:-1])


def test_empty_data_raises():
    with pytest.raises(ValueError, match="at least one example"):
        DatasetManifest.create(np.zeros((0, 2, 2)), np.zeros(0, int))


def test_labels_of_wrong_rank_raise(data):
    x, _ = data
    with pytest.raises(ValueError, match=r"Expected `y` of shape.*y.shape=\(40, 2, 5\)"):
        DatasetManifest.create(x, np.zeros((40, 2, 5)))


def test_soft_labels_raise(data):
    x, _ = data
    with pytest.raises(ValueError, match="one-hot"):
        DatasetManifest.create(x, np.full((40, 10), 0.1))


def test_arrays_without_labels_raise(data):
    with pytest.raises(ValueError, match="Expected `y`"):
        DatasetManifest.create(data[0])


# --- Files ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_and_load_round_trip(manifest, data, tmp_path, suffix):
    path = tmp_path / f"manifest{suffix}"
    manifest.save(path)
    loaded = DatasetManifest.load(path)
    assert loaded.digest == manifest.digest
    assert (loaded.image_shape, loaded.image_dtype) == (manifest.image_shape, manifest.image_dtype)
    assert loaded.verify(*data).clean


def test_json_and_npz_files_carry_the_same_digest(manifest, tmp_path):
    manifest.save(tmp_path / "m.json")
    manifest.save(tmp_path / "m.npz")
    stored = json.loads((tmp_path / "m.json").read_text())["digest"]
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert json.loads(str(archive["metadata"][()]))["digest"] == stored == manifest.digest


def test_npz_file_loads_without_pickle(manifest, tmp_path):
    manifest.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert {archive[k].dtype.kind for k in archive.files} <= {"U", "u", "i"}


def test_one_hot_metadata_survives_a_round_trip(data, tmp_path):
    x, y = data
    DatasetManifest.create(x, np.eye(10)[y]).save(tmp_path / "m.json")
    loaded = DatasetManifest.load(tmp_path / "m.json")
    assert (loaded.label_format, loaded.num_classes) == ("one_hot", 10)


def test_edited_json_fingerprint_raises_digest_mismatch(manifest, tmp_path):
    path = tmp_path / "m.json"
    manifest.save(path)
    document = json.loads(path.read_text())
    document["image_sha256"][3] = "00" * 32
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="corrupted or was edited: digest mismatch"):
        DatasetManifest.load(path)


def test_edited_json_label_raises_digest_mismatch(manifest, tmp_path):
    path = tmp_path / "m.json"
    manifest.save(path)
    document = json.loads(path.read_text())
    document["labels"][0] = (document["labels"][0] + 1) % 10
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="digest mismatch"):
        DatasetManifest.load(path)


def test_edited_npz_fingerprint_raises_digest_mismatch(manifest, tmp_path):
    path = tmp_path / "m.npz"
    manifest.save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["image_sha256"][0, 0] ^= 1
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="digest mismatch"):
        DatasetManifest.load(path)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_truncated_file_raises_naming_the_path(manifest, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    manifest.save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"path=.*m\\{suffix}.*truncated or malformed"):
        DatasetManifest.load(path)


def test_unknown_format_version_raises(manifest, tmp_path):
    path = tmp_path / "m.json"
    manifest.save(path)
    document = json.loads(path.read_text())
    document["format_version"] = 99
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="format_version 1.*Received: format_version=99"):
        DatasetManifest.load(path)


def test_unknown_extension_lists_the_known_ones(manifest, tmp_path):
    with pytest.raises(ValueError, match=r"\.json.*\.npz"):
        manifest.save(tmp_path / "m.pkl")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DatasetManifest.load(tmp_path / "absent.json")


# --- Docstrings ----------------------------------------------------------


def test_docstring_examples_hold():
    extraglobs = {"np": np, "tf": tf, **vars(integrity)}
    result = doctest.testmod(integrity, extraglobs=extraglobs)
    assert result.attempted > 0 and result.failed == 0


# --- CLI -----------------------------------------------------------------


@pytest.fixture
def npz(tmp_path, data):
    x, y = data
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    return path


def run_cli(*args):
    return cli.main(["manifest", *map(str, args)])


def test_cli_create_then_verify_unchanged_data_exits_0(npz, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert run_cli("create", "--data", npz, "--out", out) == 0
    assert run_cli("verify", "--data", npz, "--manifest", out) == 0
    assert "clean" in capsys.readouterr().out


def test_cli_verify_changed_data_prints_summary_and_exits_1(npz, tmp_path, data, capsys):
    out = tmp_path / "m.npz"
    run_cli("create", "--data", npz, "--out", out)
    x, y = data
    y = y.copy()
    y[7] = (y[7] + 1) % 10
    np.savez(npz, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    assert run_cli("verify", "--data", npz, "--manifest", out) == 1
    assert "1 relabelled" in capsys.readouterr().out


def test_cli_split_all_fingerprints_train_then_test(npz, tmp_path, capsys):
    out = tmp_path / "m.json"
    run_cli("create", "--data", npz, "--out", out, "--split", "all")
    assert len(DatasetManifest.load(out)) == 45
    assert run_cli("verify", "--data", npz, "--manifest", out, "--split", "train") == 1
    assert "5 removed" in capsys.readouterr().out


def test_cli_missing_data_exits_2_with_a_message(tmp_path, capsys):
    status = run_cli("create", "--data", tmp_path / "absent.npz", "--out", tmp_path / "m.json")
    err = capsys.readouterr().err
    assert status == 2
    assert "absent.npz" in err and "Traceback" not in err


def test_cli_tampered_manifest_exits_2(npz, tmp_path, capsys):
    out = tmp_path / "m.json"
    run_cli("create", "--data", npz, "--out", out)
    out.write_text(out.read_text().replace('"labels": [\n  ', '"labels": [\n  1'))
    assert run_cli("verify", "--data", npz, "--manifest", out) == 2
    assert "digest mismatch" in capsys.readouterr().err


def test_cli_verify_of_cast_images_reports_a_change_and_exits_1(npz, tmp_path, data, capsys):
    # A cast is a change of every image (the module's contract), not a tool error.
    out = tmp_path / "m.json"
    run_cli("create", "--data", npz, "--out", out)
    x, y = data
    np.savez(npz, x_train=x.astype("float32"), y_train=y, x_test=x[:5], y_test=y[:5])
    assert run_cli("verify", "--data", npz, "--manifest", out) == 1
    printed = capsys.readouterr().out
    assert "changed: every image" in printed and "float32" in printed
