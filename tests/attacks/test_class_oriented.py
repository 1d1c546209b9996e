"""SupplanterPoison (COEG) and VictimPoison (COES): behaviour and promises."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import InjectPoisons
from keras_poison import PoisonSet
from keras_poison import SupplanterPoison
from keras_poison import VictimPoison
from keras_poison.attacks.crafting import SignedGradientCrafter
from keras_poison.attacks.crafting import logit_function

K = 4
SHAPE = (5, 5, 2)


def mlp(seed=0, hidden=16):
    """A small nonlinear classifier ending in logits -> softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(hidden, activation="tanh")(h)
    logits = keras.layers.Dense(K, name="logits")(h)
    outputs = keras.layers.Activation("softmax")(logits)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def linear(seed=0):
    """Logits linear in x: each signed step moves every pixel by exactly ε."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    logits = keras.layers.Dense(K, name="logits")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def data(n=60, dtype="float32", seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, size=(n,) + SHAPE).astype("float32")
    y = np.arange(n) % K
    if np.issubdtype(np.dtype(dtype), np.integer):
        x = np.round(x * 255)
    return x.astype(dtype), y.astype("int64")


def literal_algorithm_1(model, x_o, y_o, y_s, epsilon, steps, lam=1.0):
    """Algorithm 1 exactly as printed, one image at a time, eagerly."""
    f = logit_function(model)

    def logits_and_gradient(x):
        x = tf.constant(x[None])
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = f(x)[0]
            loss = lam * logits[y_s] - logits[y_o]
        return logits.numpy(), tape.gradient(loss, x)[0].numpy()

    _, gradient = logits_and_gradient(x_o)
    x = np.clip(x_o - epsilon * np.sign(gradient), 0, 1)
    taken = 1
    for _ in range(steps):
        before, gradient = logits_and_gradient(x)
        x = np.clip(x - epsilon * np.sign(gradient), 0, 1)
        taken += 1
        after, _ = logits_and_gradient(x)
        if after[y_s] > before[y_s] or after[y_o] < before[y_o]:
            break
    return x, taken


# ----------------------------------------------------------------------
# Logits.


def test_logits_are_the_pre_softmax_layer_output():
    model = mlp()
    x, _ = data(8)
    expected = keras.Model(model.input, model.get_layer("logits").output)(x)
    np.testing.assert_allclose(logit_function(model)(x), expected, rtol=1e-6)


def test_logits_of_a_dense_layer_with_softmax_activation():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(K, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    x, _ = data(8)
    logits = logit_function(model)(x)
    np.testing.assert_allclose(
        keras.ops.softmax(logits), model(x), rtol=1e-5, atol=1e-6
    )
    dense = model.layers[-1]
    manual = x.reshape(8, -1) @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(logits, manual, rtol=1e-5, atol=1e-5)


def test_model_with_linear_output_is_its_own_logits():
    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(K)(keras.layers.Flatten()(inputs)))
    x, _ = data(4)
    np.testing.assert_array_equal(logit_function(model)(x), model(x))


def test_unreadable_logits_name_the_argument_to_pass():
    inputs = keras.Input(SHAPE)
    outputs = keras.layers.Dense(K, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="logits_layer"):
        SupplanterPoison(model, supplanter=0)
    named = logit_function(model, logits_layer=model.layers[-2].name)
    assert named(data(2)[0]).shape == (2, 50)


# ----------------------------------------------------------------------
# Algorithm 1 and eq. 17, step by step.


def test_linear_model_moves_every_pixel_by_epsilon_each_step():
    model = linear()
    x, y = data(12)
    y = np.where(y == 0, 1, y)
    attack = SupplanterPoison(model, supplanter=0, epsilon=0.01, steps=4, rate=1.0)
    poisons = attack.craft(x, y)
    # L = f_s - f_o is linear, so its gradient is W_s - W_o at every step:
    # logits move monotonically and Algorithm 1 never breaks early.
    kernel = model.get_layer("logits").kernel.numpy()
    direction = np.sign(kernel[:, 0][None] - kernel.T[y]).reshape(x.shape)
    expected = np.clip(x - 5 * 0.01 * direction, 0, 1)
    np.testing.assert_allclose(poisons.images, expected, atol=1e-6)
    np.testing.assert_array_equal(poisons.steps_taken, 5)
    np.testing.assert_array_equal(poisons.labels, 0)


def test_batched_crafting_matches_the_literal_algorithm_per_image():
    model = mlp(seed=3)
    x, y = data(24, seed=4)
    keep = y != 2
    x, y = x[keep], y[keep]
    attack = SupplanterPoison(
        model, supplanter=2, epsilon=0.2, steps=6, batch_size=7, rate=1.0
    )
    poisons = attack.craft(x, y)
    for i in range(len(x)):
        expected, taken = literal_algorithm_1(model, x[i], y[i], 2, 0.2, 6)
        np.testing.assert_allclose(poisons.images[i], expected, atol=1e-6)
        assert poisons.steps_taken[i] == taken
    # The nonlinear model makes some examples stop before the last step.
    assert poisons.steps_taken.min() < 7


def test_early_break_keeps_the_step_that_triggered_it():
    model = mlp(seed=3)
    x, y = data(24, seed=4)
    keep = y != 2
    crafter = SignedGradientCrafter(
        logit_function(model), 0.2, 6, 1.0, "two_logit", (0, 1), early_break=False
    )
    full, taken = crafter.craft(x[keep], y[keep].astype("int32"),
                                np.full(keep.sum(), 2, "int32"), np.zeros(keep.sum(), bool))
    assert np.all(taken == 7)
    broke = SupplanterPoison(model, 2, epsilon=0.2, steps=6, rate=1.0).craft(x[keep], y[keep])
    stopped = broke.steps_taken < 7
    assert stopped.any()
    assert not np.allclose(full[stopped], broke.images[stopped])


def test_ascent_branch_raises_the_own_logit_for_all_steps():
    model = linear()
    x, y = data(16)
    attack = VictimPoison(model, victim=3, poison_label=0, epsilon=0.01, steps=3, rate=1.0)
    poisons = attack.craft(x, y)
    others = y != 3
    kernel = model.get_layer("logits").kernel.numpy()
    direction = np.sign(kernel.T[y[others]]).reshape(x[others].shape)
    np.testing.assert_allclose(
        poisons.images[others], np.clip(x[others] + 4 * 0.01 * direction, 0, 1), atol=1e-6
    )
    np.testing.assert_array_equal(poisons.labels[others], y[others])
    np.testing.assert_array_equal(poisons.labels[~others], 0)
    np.testing.assert_array_equal(poisons.steps_taken[others], 4)


def test_all_logits_objective_lowers_every_other_logit():
    model = linear()
    x, y = data(8)
    y = np.where(y == 0, 1, y)
    poisons = SupplanterPoison(
        model, 0, epsilon=0.01, steps=2, objective="all_logits", rate=1.0
    ).craft(x, y)
    kernel = model.get_layer("logits").kernel.numpy()
    others_sum = kernel.sum(axis=1)[None] - kernel.T[y]
    direction = np.sign(others_sum - kernel.T[y]).reshape(x.shape)
    np.testing.assert_allclose(poisons.images, np.clip(x - 0.03 * direction, 0, 1), atol=1e-6)


def test_poisons_stay_in_value_range_and_budget():
    model = mlp()
    x, y = data(40)
    attack = SupplanterPoison(
        model, 1, epsilon=0.1, steps=5, rate=1.0, value_range=(0.1, 0.9)
    )
    keep = y != 1
    poisons = attack.craft(x[keep], y[keep])
    assert poisons.images.min() >= 0.1 and poisons.images.max() <= 0.9
    budget = 0.1 * poisons.steps_taken.max() + 1e-6
    assert np.abs(poisons.images - x[keep]).max() <= budget


def test_integer_images_come_back_rounded_in_their_dtype():
    model = mlp()
    x, y = data(20, dtype="uint8")
    attack = SupplanterPoison(model, 1, epsilon=20, steps=2, rate=0.5)
    x_p, y_p, mask = attack.poison(x, y)
    assert x_p.dtype == np.uint8
    assert mask.sum() == 10
    assert np.all(x_p[~mask] == x[~mask])


# ----------------------------------------------------------------------
# Seeds and the promises of every attack.


def test_set_attack_replaces_exactly_rate_of_examples_from_other_classes():
    model = mlp()
    x, y = data(60)
    x_p, y_p, mask = SupplanterPoison(model, 2, epsilon=0.05, steps=2, rate=0.25).poison(x, y)
    assert mask.sum() == 15
    assert np.all(y[mask] != 2)
    assert np.all(y_p[mask] == 2)
    # Untouched examples are bit-identical.
    np.testing.assert_array_equal(x_p[~mask], x[~mask])
    np.testing.assert_array_equal(y_p[~mask], y[~mask])


def test_victim_seeds_are_spread_equally_over_classes():
    model = mlp()
    x, y = data(80)
    attack = VictimPoison(model, victim=3, poison_label=1, epsilon=0.05, steps=2, rate=0.5)
    chosen = attack.select_seeds(y)
    assert np.bincount(y[chosen], minlength=K).tolist() == [10, 10, 10, 10]
    uneven = VictimPoison(model, 3, 1, count=6).select_seeds(y)
    assert sorted(np.bincount(y[uneven], minlength=K).tolist()) == [1, 1, 2, 2]


def test_seed_choice_depends_on_seed_not_on_the_call():
    model = mlp()
    _, y = data(200)
    a = SupplanterPoison(model, 0, rate=0.1, seed=5).select_seeds(y)
    b = SupplanterPoison(model, 0, rate=0.1, seed=5).select_seeds(y)
    c = SupplanterPoison(model, 0, rate=0.1, seed=6).select_seeds(y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("batch", [None, 1, 7, 64])
def test_tf_data_path_matches_numpy_for_any_batching(batch):
    model = mlp()
    x, y = data(45)
    x_np, y_np, mask_np = VictimPoison(model, 2, 0, epsilon=0.05, steps=2, rate=0.4).poison(x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if batch:
        ds = ds.batch(batch)
    attack = VictimPoison(model, 2, 0, epsilon=0.05, steps=2, rate=0.4)
    out = list(attack.transform(ds, with_mask=True).unbatch().as_numpy_iterator()
               if batch else attack.transform(ds, with_mask=True).as_numpy_iterator())
    x_t = np.stack([e[0] for e in out])
    y_t = np.array([e[1] for e in out])
    mask_t = np.array([e[2] for e in out])
    np.testing.assert_array_equal(x_t, x_np)
    np.testing.assert_array_equal(y_t, y_np)
    np.testing.assert_array_equal(mask_t, mask_np)


def test_a_stream_that_drops_its_last_batch_gets_the_poisons_of_what_it_yields():
    # It used to raise about a `num_examples` the user never passed.
    model = mlp()
    x, y = data(45)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(7, drop_remainder=True)
    attack = SupplanterPoison(model, 0, epsilon=0.05, steps=2, rate=0.4)
    out = list(attack.transform(ds, with_mask=True).as_numpy_iterator())
    x_np, y_np, mask_np = SupplanterPoison(model, 0, epsilon=0.05, steps=2, rate=0.4).poison(
        x[:42], y[:42]
    )
    np.testing.assert_array_equal(np.concatenate([e[0] for e in out]), x_np)
    np.testing.assert_array_equal(np.concatenate([e[1] for e in out]), y_np)
    np.testing.assert_array_equal(np.concatenate([e[2] for e in out]), mask_np)


def test_one_hot_labels_keep_their_format():
    model = mlp()
    x, y = data(40)
    one_hot = np.eye(K, dtype="float32")[y]
    _, y_p, mask = SupplanterPoison(model, 3, epsilon=0.05, steps=1, rate=0.2).poison(x, one_hot)
    assert y_p.dtype == np.float32 and y_p.shape == one_hot.shape
    np.testing.assert_array_equal(y_p[mask].argmax(-1), 3)


def test_single_instance_attack_trains_on_one_poisoned_point():
    model = mlp()
    x, y = data(30)
    attack = SupplanterPoison(model, 0, epsilon=0.05, steps=2, count=1, keep_clean=False)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack)
    assert int(ds.cardinality()) == 1
    (image, label), = list(ds.as_numpy_iterator())
    assert label == 0
    source = attack.poisons.source_indices[0]
    assert y[source] != 0
    np.testing.assert_array_equal(image, attack.poisons.images[0])


def test_shuffled_input_is_rejected():
    model = mlp()
    x, y = data(40)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(40, seed=None)
    with pytest.raises(ValueError, match="`shuffle`.*Apply the attack first"):
        SupplanterPoison(model, 0, epsilon=0.05, steps=1, rate=0.5).transform(ds)


def test_crafting_under_mirrored_strategy_matches_one_device(two_cpu_strategy):
    model = mlp()
    x, y = data(21)
    y = np.where(y == 0, 1, y)
    expected = SupplanterPoison(model, 0, epsilon=0.05, steps=3, batch_size=8).craft(x, y)
    with two_cpu_strategy.scope():
        got = SupplanterPoison(model, 0, epsilon=0.05, steps=3, batch_size=8).craft(x, y)
    np.testing.assert_allclose(got.images, expected.images, atol=1e-6)
    np.testing.assert_array_equal(got.steps_taken, expected.steps_taken)


def test_config_round_trip_rebuilds_an_equal_attack():
    model = mlp()
    attack = VictimPoison(model, 1, 2, epsilon=0.2, steps=4, lam=0.5, rate=0.3, seed=9)
    again = VictimPoison.from_config(attack.get_config(), model)
    assert again.get_config() == attack.get_config()
    x, y = data(40)
    np.testing.assert_array_equal(again.poison(x, y)[0], attack.poison(x, y)[0])


# ----------------------------------------------------------------------
# `clip_values` was renamed `value_range` (the library's and Keras' name).


@pytest.mark.parametrize("cls,args", [(SupplanterPoison, (1,)), (VictimPoison, (1, 2))])
def test_value_range_is_the_argument_and_config_name(cls, args):
    attack = cls(mlp(), *args, value_range=(0.1, 0.9))
    assert attack.value_range == (0.1, 0.9)
    config = attack.get_config()
    assert config["value_range"] == [0.1, 0.9] and "clip_values" not in config


@pytest.mark.parametrize("cls,args", [(SupplanterPoison, (1,)), (VictimPoison, (1, 2))])
def test_clip_values_still_works_and_warns_that_it_is_deprecated(cls, args):
    model = mlp()
    with pytest.warns(DeprecationWarning, match="`clip_values` is deprecated.*`value_range`"):
        old = cls(model, *args, epsilon=0.1, steps=2, rate=0.5, clip_values=(0.1, 0.9))
    new = cls(model, *args, epsilon=0.1, steps=2, rate=0.5, value_range=(0.1, 0.9))
    assert old.get_config() == new.get_config()
    x, y = data(40)
    x = np.clip(x, 0.1, 0.9)
    np.testing.assert_array_equal(old.poison(x, y)[0], new.poison(x, y)[0])


def test_clip_values_and_value_range_together_is_an_error():
    with pytest.raises(TypeError, match="both `value_range` and its deprecated alias"):
        SupplanterPoison(mlp(), 1, value_range=(0, 1), clip_values=(0, 1))


def test_config_saved_with_clip_values_still_loads():
    # What get_config() wrote (and PoisonSets recorded) before the rename.
    model = mlp()
    config = SupplanterPoison(model, 1, epsilon=0.2, steps=3, seed=4).get_config()
    config.pop("value_range")
    config["clip_values"] = [0.1, 0.9]
    attack = SupplanterPoison.from_config(config, model)
    assert attack.value_range == (0.1, 0.9)
    assert attack.get_config()["value_range"] == [0.1, 0.9]


def test_signed_gradient_crafter_takes_value_range_and_the_old_name():
    logits = logit_function(linear())
    crafter = SignedGradientCrafter(logits, 0.1, 1, 1.0, "two_logit", value_range=(0.2, 0.8))
    assert crafter.value_range == (0.2, 0.8)
    with pytest.warns(DeprecationWarning, match="`clip_values` is deprecated"):
        old = SignedGradientCrafter(logits, 0.1, 1, 1.0, "two_logit", clip_values=(0.2, 0.8))
    assert (old.clip_low, old.clip_high) == (0.2, 0.8)


@pytest.mark.parametrize(
    "build",
    [
        lambda model: SupplanterPoison(model, 1, 0.3),
        lambda model: VictimPoison(model, 1, 2, 0.3),
    ],
    ids=["supplanter", "victim"],
)
def test_crafting_hyper_parameters_are_keyword_only(build):
    with pytest.raises(TypeError, match="positional"):
        build(mlp())


# ----------------------------------------------------------------------
# PoisonSet and InjectPoisons.


def test_poison_set_saves_and_loads_without_pickle(tmp_path):
    model = mlp()
    x, y = data(20)
    attack = SupplanterPoison(model, 0, epsilon=0.05, steps=2, rate=0.5)
    attack.poison(x, y)
    path = tmp_path / "poisons.npz"
    attack.poisons.save(path)
    loaded = PoisonSet.load(path)
    for name in ("images", "labels", "source_indices", "source_labels", "steps_taken"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(attack.poisons, name))
    assert loaded.config["supplanter"] == 0 and loaded.config["attack"] == "SupplanterPoison"
    # Re-used later, the loaded poisons poison the data the same way.
    x_a, y_a, _ = InjectPoisons(loaded).poison(x, y)
    x_b, y_b, _ = attack.injection.poison(x, y)
    np.testing.assert_array_equal(x_a, x_b)
    np.testing.assert_array_equal(y_a, y_b)


def test_truncated_or_pickled_poison_file_is_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 3)), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="missing"):
        PoisonSet.load(path)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        PoisonSet.load(pickled)


def test_inject_poisons_serializes_with_keras():
    poisons = PoisonSet(np.ones((2, 3, 3, 1), "float32"), [1, 1], [0, 4])
    injection = InjectPoisons(poisons, num_classes=3)
    config = keras.saving.serialize_keras_object(injection)
    again = keras.saving.deserialize_keras_object(config)
    x = np.zeros((6, 3, 3, 1), "float32")
    y = np.array([0, 2, 2, 0, 0, 2])
    for a, b in zip(again.poison(x, y), injection.poison(x, y)):
        np.testing.assert_array_equal(a, b)


def test_injection_rejects_mismatched_images():
    poisons = PoisonSet(np.ones((1, 3, 3, 1), "float32"), [1], [9])
    with pytest.raises(ValueError, match="shape"):
        InjectPoisons(poisons).poison(np.zeros((10, 4, 4, 1), "float32"), np.zeros(10, int))
    with pytest.raises(ValueError, match="dtype"):
        InjectPoisons(poisons).poison(np.zeros((10, 3, 3, 1), "uint8"), np.zeros(10, int))
    with pytest.raises(ValueError, match="source index"):
        InjectPoisons(poisons).poison(np.zeros((5, 3, 3, 1), "float32"), np.zeros(5, int))


def test_injection_into_a_batched_stream_checks_shape_and_single_instance_mode():
    poisons = PoisonSet(np.ones((1, 3, 3, 1), "float32"), [1], [2])
    batched = tf.data.Dataset.from_tensor_slices(
        (np.zeros((6, 3, 3, 1), "float32"), np.zeros(6, "int64"))
    ).batch(4)
    images = np.concatenate([x for x, _ in InjectPoisons(poisons).transform(batched)])
    assert images[2].min() == 1 and images[[0, 1, 3, 4, 5]].max() == 0
    with pytest.raises(ValueError, match="before `batch`"):
        InjectPoisons(poisons, keep_clean=False).transform(batched)
    wrong = tf.data.Dataset.from_tensor_slices(
        (np.zeros((6, 4, 4, 1), "float32"), np.zeros(6, "int64"))
    )
    with pytest.raises(ValueError, match="shape"):
        InjectPoisons(poisons).transform(wrong)


def test_injection_mask_is_exact_when_a_poison_equals_its_seed():
    # The mask compares only the replaced rows; a poison identical to the
    # example it replaces (image and label) changes nothing and is not marked.
    x = np.random.default_rng(0).random((9, 3, 3, 1)).astype("float32")
    y = np.arange(9) % 3
    poisons = PoisonSet(np.stack([x[2], x[5], x[7] + 0.5]), [y[2], 0, y[7]], [2, 5, 7])
    injection = InjectPoisons(poisons, num_classes=3)
    x_p, y_p, mask = injection.poison(x, y)
    assert np.flatnonzero(mask).tolist() == [5, 7]  # 5: label; 7: image
    assert x_p[[0, 1, 2, 3, 4, 5, 6, 8]].tobytes() == x[[0, 1, 2, 3, 4, 5, 6, 8]].tobytes()
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    masks = [m.numpy() for _, _, m in injection.transform(stream, with_mask=True)]
    assert np.array_equal(np.concatenate(masks), mask)


def test_crafted_float16_poisons_stay_inside_a_range_float16_cannot_hold_exactly():
    # Crafting clips in float32; 0.7 is 0.70019 in float16, so the cast back
    # rounded poisons past the range.
    from keras_poison import DirectGradientPoison

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 3, 1))
    hidden = keras.layers.Dense(5, activation="tanh")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(hidden)))
    x = np.random.default_rng(0).uniform(0.0, 0.7, size=(12, 3, 3, 1)).astype("float16")
    y = np.arange(12) % 3
    for attack in (
        SupplanterPoison(model, 0, epsilon=0.5, steps=3, value_range=(0.0, 0.7), rate=0.5),
        DirectGradientPoison(model, normal_data=(x[:6], y[:6]), gamma=0.5, rounds=2,
                             learning_rate=0.5, value_range=(0.0, 0.7), rate=0.5),
    ):
        x_p, _, mask = attack.poison(x, y)
        assert x_p.dtype == np.float16 and mask.any()
        assert float(x_p.max()) <= 0.7, type(attack).__name__
