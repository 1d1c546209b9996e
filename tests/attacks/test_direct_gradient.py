"""DirectGradientPoison (DGM, Yang et al. 2017): the objective, its gradient, the promises."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_poison
from keras_poison import DirectGradientPoison
from keras_poison import InjectPoisons
from keras_poison import PoisonSet
from keras_poison import RecraftPoisons
from keras_poison import datasets
from keras_poison.attacks import direct_gradient

K = 3
SHAPE = (3, 3, 1)


def smooth(seed=0, hidden=8):
    """A tiny tanh classifier: smooth, so finite differences converge."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Dense(hidden, activation="tanh")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(K, activation="softmax")(h)
    return keras.Model(inputs, outputs)


def data(n=30, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.9, size=(n,) + SHAPE).astype("float32")
    return x, (np.arange(n) % K).astype("int64")


def attack_on(model, normal, **kwargs):
    kwargs = {"learning_rate": 1.0, "gamma": 0.05, "rounds": 2, "rate": 0.3, **kwargs}
    return DirectGradientPoison(model, normal_data=normal, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    model = smooth()
    x, y = data()
    return model, (x[:12], y[:12]), x, y


# ----------------------------------------------------------------------
# The objective and its gradient.


def test_normal_loss_is_the_loss_after_a_real_keras_sgd_step_on_the_poison(tiny):
    model, normal, x, y = tiny
    attack = attack_on(model, normal, learning_rate=0.5)
    labels = (y[:4] + 1) % K
    expected = []
    for i in range(4):
        stepped = keras.models.clone_model(model)
        stepped.set_weights(model.get_weights())
        stepped.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
        stepped.train_on_batch(x[i : i + 1], labels[i : i + 1])
        expected.append(stepped.evaluate(*normal, verbose=0, batch_size=len(normal[0])))
    np.testing.assert_allclose(attack.normal_loss(x[:4], labels), expected, rtol=1e-5)


def test_exact_gradient_matches_finite_differences_on_a_tiny_model(tiny):
    model, normal, x, y = tiny
    labels = (y[12:18] + 1) % K
    exact = attack_on(model, normal).normal_loss_gradient(x[12:18], labels)
    estimate = attack_on(
        model, normal, gradient="finite_difference", delta=1e-3
    ).normal_loss_gradient(x[12:18], labels)
    # Forward differences are off by O(δ); the step moves the loss a lot
    # (lr 1.0), so the gradient is far from zero and the check is tight.
    assert np.abs(exact).max() > 0.05
    np.testing.assert_allclose(estimate, exact, atol=2e-3)
    assert np.corrcoef(exact.ravel(), estimate.ravel())[0, 1] > 0.9999


def first_order_gradient(model, normal, x, labels, lr):
    """−lr · ∂/∂x ⟨∇_w ℓ(x), ∇_w L_normal(w)⟩: the normal gradient taken at w."""
    weights = model.trainable_variables
    xs = tf.constant(x)
    with tf.GradientTape() as normal_tape:
        normal_loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(normal[1], model(normal[0]))
        )
    at_w = [tf.stop_gradient(v) for v in normal_tape.gradient(normal_loss, weights)]
    with tf.GradientTape() as outer:
        outer.watch(xs)
        with tf.GradientTape() as inner:
            total = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, model(xs)))
        grads = inner.gradient(total, weights)
        inner_product = sum(tf.reduce_sum(g * v) for g, v in zip(grads, at_w))
    return -lr * outer.gradient(inner_product, xs).numpy()


def test_exact_gradient_takes_the_normal_gradient_at_the_stepped_weights(tiny):
    # Taking the normal-set gradient at w instead of at each poison's stepped
    # weights w' is right only to first order in lr: it agrees with the
    # exact gradient for a small step and not for a large one.
    model, normal, x, y = tiny
    seeds, labels = x[12:18], (y[12:18] + 1) % K
    for lr, close in ((1e-4, True), (1.0, False)):
        exact = attack_on(model, normal, learning_rate=lr).normal_loss_gradient(seeds, labels)
        shortcut = first_order_gradient(model, normal, seeds, labels, lr)
        error = np.abs(exact - shortcut).max() / np.abs(exact).max()
        assert (error < 1e-2) == close, (lr, error)


def test_each_round_is_a_clipped_signed_step_up_the_gradient(tiny):
    model, normal, x, y = tiny
    attack = attack_on(model, normal, rounds=1, gamma=0.05, rate=1.0)
    seeds = x[12:20]
    poisons = attack.craft(seeds, y[12:20])
    gradient = attack.normal_loss_gradient(seeds, poisons.labels)
    expected = np.clip(seeds + 0.05 * np.sign(gradient), 0, 1)
    np.testing.assert_allclose(poisons.images, expected, atol=1e-6)
    np.testing.assert_array_equal(poisons.steps_taken, 1)


def test_finite_difference_crafting_agrees_with_the_exact_gradient(tiny):
    model, normal, x, y = tiny
    exact = attack_on(model, normal, rounds=1).craft(x[12:18], y[12:18])
    estimated = attack_on(
        model, normal, rounds=1, gradient="finite_difference", delta=1e-3
    ).craft(x[12:18], y[12:18])
    # Signs agree except where a partial derivative is within O(δ) of zero.
    agree = np.isclose(exact.images, estimated.images, atol=1e-6)
    assert agree.mean() > 0.95


@pytest.fixture(scope="module")
def trained_digits():
    (x_train, y_train), _ = datasets.load("digits")
    x = (x_train[:400] / 255.0).astype("float32")
    y = y_train[:400]
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:])
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[100:], y[100:], epochs=5, batch_size=64, verbose=0)
    return model, x, y


def test_poisons_raise_the_normal_loss_after_one_sgd_step_on_real_digits(trained_digits):
    model, x, y = trained_digits
    normal = (x[:50], y[:50])
    attack = DirectGradientPoison(model, normal_data=normal, count=20)
    x_p, y_p, mask = attack.poison(x[50:], y[50:])
    seeds = x[50:][mask]
    before = attack.normal_loss(seeds, y_p[mask])  # unmodified seeds, same labels
    after = attack.normal_loss(x_p[mask], y_p[mask])
    assert np.all(after > before)
    assert after.mean() > before.mean() + 0.1
    assert np.abs(x_p[mask] - seeds).max() <= 5 * 0.2 + 1e-6


# ----------------------------------------------------------------------
# The promises every attack keeps.


def test_replaces_exactly_rate_of_examples_and_leaves_the_rest_bit_identical(tiny):
    model, normal, x, y = tiny
    x_p, y_p, mask = attack_on(model, normal, rate=0.3).poison(x, y)
    assert mask.sum() == 9
    np.testing.assert_array_equal(y_p[mask], (y[mask] + 1) % K)  # the authors' labels
    np.testing.assert_array_equal(x_p[~mask], x[~mask])
    np.testing.assert_array_equal(y_p[~mask], y[~mask])
    assert x_p.min() >= 0 and x_p.max() <= 1


def test_a_fixed_poison_label_draws_seeds_from_the_other_classes(tiny):
    model, normal, x, y = tiny
    attack = attack_on(model, normal, poison_label=2, rate=0.5)
    _, y_p, mask = attack.poison(x, y)
    assert mask.sum() == 15 and np.all(y[mask] != 2) and np.all(y_p[mask] == 2)
    with pytest.raises(ValueError, match="other than `poison_label`"):
        attack.craft(x[:3], np.array([0, 1, 2]))


def test_crafting_leaves_the_model_weights_bit_identical(tiny):
    model, normal, x, y = tiny
    before = [w.copy() for w in model.get_weights()]
    attack_on(model, normal).poison(x, y)
    attack_on(model, normal, gradient="finite_difference").craft(x[:2], y[:2])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch", [None, 4])
def test_tf_data_path_matches_numpy(tiny, batch):
    model, normal, x, y = tiny
    x_np, y_np, mask_np = attack_on(model, normal, batch_size=4).poison(x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if batch:
        ds = ds.batch(batch)
    stream = attack_on(model, normal, batch_size=4).transform(ds, with_mask=True)
    if batch:
        stream = stream.unbatch()
    out = list(stream.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([e[0] for e in out]), x_np)
    np.testing.assert_array_equal(np.array([e[1] for e in out]), y_np)
    np.testing.assert_array_equal(np.array([e[2] for e in out]), mask_np)


def test_integer_images_come_back_rounded_in_their_dtype(trained_digits):
    model, x, y = trained_digits
    images = np.round(x[:60] * 255).astype("uint8")
    attack = DirectGradientPoison(
        model, normal_data=(images[:20], y[:20]), learning_rate=0.05 / 255,
        gamma=40, rounds=1, rate=0.1,
    )
    x_p, _, mask = attack.poison(images, y[:60])
    assert x_p.dtype == np.uint8 and mask.sum() == 6
    np.testing.assert_array_equal(x_p[~mask], images[~mask])


def test_single_instance_attack_trains_on_one_poison(tiny):
    model, normal, x, y = tiny
    attack = attack_on(model, normal, rate=None, count=1, keep_clean=False)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack)
    assert int(ds.cardinality()) == 1
    ((image, label),) = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(image, attack.poisons.images[0])
    assert label == (y[attack.poisons.source_indices[0]] + 1) % K


def test_crafting_under_mirrored_strategy_matches_one_device(tiny, two_cpu_strategy):
    model, normal, x, y = tiny
    expected = attack_on(model, normal, batch_size=5).craft(x[:9], y[:9])
    with two_cpu_strategy.scope():
        got = attack_on(model, normal, batch_size=5).craft(x[:9], y[:9])
    np.testing.assert_allclose(got.images, expected.images, atol=1e-6)


def test_recraft_against_another_model_changes_the_poisons_in_place(tiny):
    model, normal, x, y = tiny
    attack = attack_on(model, normal)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack)
    first = attack.poisons.images.copy()
    attack.recraft(smooth(seed=5))
    assert not np.allclose(attack.poisons.images, first)
    images = np.stack([image for image, _ in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(images[attack.poisons.source_indices], attack.poisons.images)
    assert hasattr(RecraftPoisons(attack, every=1), "on_epoch_begin")


def test_progress_bar_only_with_verbose(tiny, capsys):
    model, normal, x, y = tiny
    attack_on(model, normal, verbose=0).craft(x[:3], y[:3])
    assert "image" not in capsys.readouterr().out
    attack_on(model, normal, verbose=1).craft(x[:3], y[:3])
    assert "3/3" in capsys.readouterr().out


# ----------------------------------------------------------------------
# Poisons as data, configs.


def test_poison_set_saves_loads_and_poisons_the_same_way(tiny, tmp_path):
    model, normal, x, y = tiny
    attack = attack_on(model, normal)
    attack.poison(x, y)
    path = tmp_path / "dgm.npz"
    attack.poisons.save(path)
    loaded = PoisonSet.load(path)
    np.testing.assert_array_equal(loaded.images, attack.poisons.images)
    assert loaded.config["attack"] == "DirectGradientPoison"
    assert loaded.config["normal_size"] == 12
    for a, b in zip(InjectPoisons(loaded).poison(x, y), attack.injection.poison(x, y)):
        np.testing.assert_array_equal(a, b)
    again = DirectGradientPoison.from_config(loaded.config, model, normal_data=normal)
    assert again.get_config() == attack.get_config()


def test_config_round_trip_rebuilds_an_equal_attack(tiny):
    model, normal, x, y = tiny
    attack = attack_on(
        model, normal, poison_label=1, gamma=0.1, rounds=3, gradient="exact",
        delta=0.02, value_range=(0.0, 1.0), seed=4, batch_size=7,
    )
    again = DirectGradientPoison.from_config(attack.get_config(), model, normal)
    assert again.get_config() == attack.get_config()
    np.testing.assert_array_equal(again.poison(x, y)[0], attack.poison(x, y)[0])
    assert "DirectGradientPoison(model=" in repr(attack)


def test_config_refuses_a_different_normal_set(tiny):
    model, normal, x, y = tiny
    config = attack_on(model, normal).get_config()
    with pytest.raises(ValueError, match="`normal_data` this config was made with"):
        DirectGradientPoison.from_config(config, model, normal_data=(x[12:24], y[12:24]))


def test_exported_flat_and_docstring_example_holds():
    assert keras_poison.DirectGradientPoison is DirectGradientPoison
    names = {name: getattr(direct_gradient, name) for name in dir(direct_gradient)}
    globs = {"np": np, "tf": tf, "keras": keras, "keras_poison": keras_poison, **names}
    result = doctest.testmod(direct_gradient, extraglobs=globs)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------
# Bad input: a clear error naming the argument, before any work.


def test_no_normal_set_is_an_error(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match=r"Expected `normal_data` = \(x, y\).*normal_data=None"):
        DirectGradientPoison(model)


def test_empty_or_mismatched_normal_set(tiny):
    model, _, x, y = tiny
    with pytest.raises(ValueError, match="`normal_data` with at least one example"):
        DirectGradientPoison(model, normal_data=(x[:0], y[:0]))
    with pytest.raises(ValueError, match="same length.*3 images, 2 labels"):
        DirectGradientPoison(model, normal_data=(x[:3], y[:2]))
    with pytest.raises(TypeError, match="a pair of arrays.*_TensorSliceDataset"):
        DirectGradientPoison(model, normal_data=tf.data.Dataset.from_tensor_slices((x, y)))
    with pytest.raises(ValueError, match=r"input shape \(3, 3, 1\).*\(4, 4, 1\)"):
        DirectGradientPoison(model, normal_data=(np.zeros((2, 4, 4, 1)), y[:2]))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\).*label 7"):
        DirectGradientPoison(model, normal_data=(x[:2], np.array([0, 7])))


def test_normal_set_outside_value_range(tiny):
    model, _, x, y = tiny
    with pytest.raises(ValueError, match=r"`normal_data` images inside value_range=\(0.0, 0.5\)"):
        DirectGradientPoison(model, normal_data=(x[:4], y[:4]), value_range=(0, 0.5))
    attack = DirectGradientPoison(model, normal_data=(x[:4] * 255, y[:4]))
    with pytest.raises(ValueError, match="inside value_range"):
        attack.craft(x[4:6], y[4:6])  # float seeds: crafted in (0, 1)


@pytest.mark.parametrize("name", ["delta", "gamma", "learning_rate"])
@pytest.mark.parametrize("value", [0, -0.1, float("nan")])
def test_step_sizes_not_positive(tiny, name, value):
    model, normal, _, _ = tiny
    with pytest.raises(ValueError, match=rf"Expected `{name}` > 0. Received: {name}="):
        DirectGradientPoison(model, normal, **{name: value})


def test_step_size_of_the_wrong_type(tiny):
    model, normal, _, _ = tiny
    with pytest.raises(TypeError, match="`gamma` to be a number"):
        DirectGradientPoison(model, normal, gamma="0.2")


@pytest.mark.parametrize("rounds", [0, -3])
def test_rounds_below_one(tiny, rounds):
    model, normal, _, _ = tiny
    with pytest.raises(ValueError, match=f"Expected `rounds` >= 1. Received: rounds={rounds}"):
        DirectGradientPoison(model, normal, rounds=rounds)


def test_other_bad_arguments(tiny):
    model, normal, x, y = tiny
    with pytest.raises(ValueError, match="`gradient` to be one of"):
        DirectGradientPoison(model, normal, gradient="central")
    with pytest.raises(ValueError, match=r"`poison_label` in \[0, 3\)"):
        DirectGradientPoison(model, normal, poison_label=3)
    with pytest.raises(ValueError, match="not both"):
        DirectGradientPoison(model, normal, rate=0.2, count=2)
    with pytest.raises(ValueError, match=r"`rate` in \(0, 1\]"):
        DirectGradientPoison(model, normal, rate=0)
    with pytest.raises(TypeError, match="positional"):
        DirectGradientPoison(model, normal, None)
    with pytest.raises(ValueError, match=r"shape of `normal_data`, \(3, 3, 1\)"):
        DirectGradientPoison(model, normal).craft(np.zeros((2, 4, 4, 1)), y[:2])
