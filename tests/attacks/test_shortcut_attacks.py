"""The shortcut attacks of the unlearnable-examples literature, and our
adaptive class pattern: each does what its paper says, on both dtypes."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from keras_poison import ClassConvolution
from keras_poison import ClassPatternNoise
from keras_poison import ClassPatternRemoval
from keras_poison import OnePixelShortcut
from keras_poison import SeparableNoise
from keras_poison import SmoothClassPattern


def smooth_images(n, shape=(16, 16, 3), seed=0):
    """Photograph-like images: low-pass noise around mid-grey, in (0, 1)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.2, 0.8, size=(n, shape[0] // 4, shape[1] // 4, shape[2]))
    images = tf.image.resize(coarse, shape[:2], method="bilinear").numpy()
    return np.clip(images + rng.normal(0, 0.02, size=images.shape), 0, 1).astype("float32")


def correlate(kernel, image):
    """Zero-padded 'same' cross-correlation of one (H, W, C) image, float64."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(image.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(image.shape, np.float64)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            out[r, c] = (padded[r : r + k, c : c + k] * kernel[:, :, None]).sum(axis=(0, 1))
    return out


# --------------------------------------------------------------- CUDA --


def test_class_convolution_filters_are_the_papers():
    filters = ClassConvolution(num_classes=6, blur=0.3, seed=4).filters()
    assert filters.shape == (6, 3, 3)
    for kernel in filters:
        assert np.sum(kernel == 1.0) == 1  # one entry set to the centre weight
        others = kernel[kernel != 1.0]
        assert np.all((others >= 0) & (others < 0.3))
    assert not np.allclose(filters[0], filters[1])


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_class_convolution_equals_a_numpy_reference(kernel_size):
    x = smooth_images(12, shape=(9, 7, 3))
    y = np.arange(12) % 4
    attack = ClassConvolution(num_classes=4, blur=0.5, kernel_size=kernel_size, seed=2)
    x_p, y_p, mask = attack.poison(x, y)
    filters = attack.filters()
    for i in range(12):
        expected = correlate(filters[y[i]], x[i])
        expected = np.clip(expected / expected.max(), 0, 1)
        np.testing.assert_allclose(x_p[i], expected, atol=1e-6)
    assert mask.all() and np.array_equal(y_p, y)


def test_class_convolution_on_uint8_rounds_to_grey_levels():
    x = (smooth_images(8) * 255).astype("uint8")
    y = np.arange(8) % 2
    attack = ClassConvolution(num_classes=2, seed=1)
    x_p, _, _ = attack.poison(x, y)
    unit = x.astype(np.float64) / 255
    for i in range(8):
        expected = correlate(attack.filters()[y[i]], unit[i])
        expected = np.round(np.clip(expected / expected.max(), 0, 1) * 255)
        assert np.abs(x_p[i].astype(int) - expected).max() <= 1  # float32 rounding ties
    assert x_p.dtype == np.uint8


def test_class_convolution_leaves_a_black_image_black_and_unselected_ones_alone():
    x = np.concatenate([np.zeros((4, 8, 8, 1)), smooth_images(16, (8, 8, 1))]).astype("float32")
    y = np.arange(20) % 2
    x_p, _, mask = ClassConvolution(num_classes=2, fraction=0.5, seed=0).poison(x, y)
    assert np.all(np.isfinite(x_p)) and np.all(x_p[:4] == 0)
    assert mask.sum() <= 10
    np.testing.assert_array_equal(x_p[~mask], x[~mask])


def test_class_convolution_rejects_bad_arguments_and_flat_images():
    with pytest.raises(ValueError, match="kernel_size"):
        ClassConvolution(num_classes=2, kernel_size=4)
    with pytest.raises(ValueError, match="blur"):
        ClassConvolution(num_classes=2, blur=-0.1)
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        ClassConvolution(num_classes=2).poison(np.zeros((4, 64), "float32"), np.arange(4) % 2)


# ---------------------------------------------------------------- OPS --


def test_one_pixel_search_finds_a_planted_consistent_pixel():
    x = np.random.default_rng(0).uniform(0.3, 0.7, size=(120, 8, 8, 3)).astype("float32")
    y = np.arange(120) % 3
    x[y == 1, 5, 2] = [0.95, 0.05, 0.9]  # every image of class 1, far from (0, 1, 0)
    attack = OnePixelShortcut.search(x, y, num_classes=3)
    assert attack.pixels[1] == (5, 2, (0, 1, 0))
    pairs = {(r, c, colour) for r, c, colour in attack.pixels}
    assert len(pairs) == 3  # a (place, colour) pair is never shared


def test_one_pixel_search_scores_as_algorithm_1():
    """The search's objective, brute-forced over every pixel and colour."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(30, 4, 5, 2)).astype("float32")
    y = np.arange(30) % 2
    attack = OnePixelShortcut.search(x, y, num_classes=2)
    taken = []
    for c in range(2):
        images = x[y == c].astype(np.float64)
        best, best_score = None, -np.inf
        for r in range(4):
            for col in range(5):
                for bits in [(0, 0), (0, 1), (1, 0), (1, 1)]:
                    if (r, col, bits) in taken:
                        continue
                    d = np.abs(np.array(bits) - images[:, r, col, :])
                    score = d.mean() / d.std()
                    if score > best_score:
                        best, best_score = (r, col, bits), score
        taken.append(best)
        assert attack.pixels[c] == best


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_one_pixel_changes_exactly_one_pixel_to_the_class_colour(dtype):
    x = smooth_images(40)
    x = (x * 255).astype(dtype) if dtype == "uint8" else x
    y = np.arange(40) % 4
    attack = OnePixelShortcut(num_classes=4, seed=3)
    x_p, _, mask = attack.poison(x, y)
    high = 255 if dtype == "uint8" else 1.0
    changed = (x_p != x).any(axis=-1).sum(axis=(1, 2))
    assert changed.max() == 1
    for c, (r, col, colour) in enumerate(attack.resolved_pixels(x.shape[1:])):
        assert np.all(x_p[y == c][:, r, col] == np.array(colour) * high)
    assert mask.sum() == np.sum(changed == 1)


def test_one_pixel_config_round_trips_the_searched_pixels():
    x = smooth_images(20, (6, 6, 3))
    y = np.arange(20) % 2
    attack = OnePixelShortcut.search(x, y, num_classes=2, fraction=0.5, seed=9)
    again = OnePixelShortcut.from_config(attack.get_config())
    assert again == attack and again.pixels == attack.pixels
    np.testing.assert_array_equal(again.poison(x, y)[0], attack.poison(x, y)[0])


def test_one_pixel_rejects_bad_pixels_and_searches():
    with pytest.raises(ValueError, match="one pixel per class"):
        OnePixelShortcut(num_classes=3, pixels=[(0, 0, (1, 1, 1))])
    with pytest.raises(ValueError, match="0 or 1"):
        OnePixelShortcut(num_classes=2, pixels=[(0, 0, (2, 0, 0)), (1, 1, (1, 1, 1))])
    with pytest.raises(TypeError, match="pixels"):
        OnePixelShortcut(num_classes=2, pixels=[1, 2])
    outside = OnePixelShortcut(num_classes=2, pixels=[(9, 0, (1, 1, 1)), (1, 1, (0, 0, 0))])
    with pytest.raises(ValueError, match="inside images"):
        outside.poison(np.zeros((4, 8, 8, 3), "float32"), np.arange(4) % 2)
    x = smooth_images(10, (6, 6, 3))
    with pytest.raises(ValueError, match="no image of class 2"):
        OnePixelShortcut.search(x, np.arange(10) % 2, num_classes=3)
    with pytest.raises(ValueError, match="value_range"):
        OnePixelShortcut.search(x * 3, np.arange(10) % 2, num_classes=2)


# ---------------------------------------------------------------- LSP --


def test_separable_noise_has_the_l2_budget_and_is_patchwise_constant():
    x = np.full((20, 16, 16, 3), 0.5, "float32")
    y = np.arange(20) % 4
    x_p, _, mask = SeparableNoise(num_classes=4, epsilon=4 / 255, patch_size=4, seed=1).poison(x, y)
    noise = x_p.astype(np.float64) - x
    norms = np.sqrt((noise**2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, 4 / 255 * np.sqrt(16 * 16 * 3), rtol=1e-4)
    patches = noise.reshape(20, 4, 4, 4, 4, 3)  # (n, row patch, r, col patch, c, channel)
    assert np.allclose(patches, patches[:, :, :1, :, :1, :], atol=1e-6)
    assert mask.all()
    assert not np.allclose(noise[0], noise[4])  # per example, not per class


def test_separable_noise_is_linearly_separable_on_unseen_examples():
    x = np.full((400, 16, 16, 3), 0.5, "float32")
    y = np.arange(400) % 5
    x_p, _, _ = SeparableNoise(num_classes=5, epsilon=6 / 255, patch_size=4, seed=3).poison(x, y)
    noise = (x_p - x).reshape(400, -1)
    classifier = LogisticRegression(max_iter=1000).fit(noise[:200], y[:200])
    assert classifier.score(noise[200:], y[200:]) >= 0.98


def test_separable_noise_refuses_images_too_small_for_distinct_centres():
    with pytest.raises(ValueError, match="patch_size"):
        SeparableNoise(num_classes=3, epsilon=0.1, patch_size=4).poison(
            np.zeros((6, 4, 4, 1), "float32"), np.arange(6) % 3
        )
    with pytest.raises(ValueError, match="epsilon"):
        SeparableNoise(num_classes=3, epsilon=0)


def test_separable_noise_refuses_a_float_budget_on_integer_images():
    # 6/255 on uint8 images rounds to no change: a "poisoned" set that is clean.
    x = np.random.default_rng(0).integers(0, 256, size=(20, 32, 32, 3)).astype("uint8")
    y = np.arange(20) % 10
    with pytest.raises(ValueError, match="integer images.*grey level.*epsilon=0.0235"):
        SeparableNoise(num_classes=10, epsilon=6 / 255, seed=0).poison(x, y)
    with pytest.raises(ValueError, match="grey level"):
        tf.data.Dataset.from_tensor_slices((x, y)).apply(SeparableNoise(10, 6 / 255))
    _, _, mask = SeparableNoise(num_classes=10, epsilon=6, seed=0).poison(x, y)
    assert mask.all()


# ------------------------------------------------- the adaptive pattern --


def test_smooth_pattern_is_bounded_zero_mean_and_mirror_symmetric():
    delta = SmoothClassPattern(num_classes=10, epsilon=16 / 255, seed=5).patterns((32, 32, 3))
    assert np.abs(delta).max() <= 16 / 255 + 1e-7
    np.testing.assert_allclose(delta.mean(axis=(1, 2)), 0, atol=1e-7)
    np.testing.assert_allclose(delta, delta[:, :, ::-1], atol=1e-7)
    integer = SmoothClassPattern(num_classes=10, epsilon=16, seed=5).patterns((32, 32, 3), "uint8")
    assert np.all(integer == np.round(integer)) and np.abs(integer).max() <= 16


def remaining_share(attack, reference=None, n=800):
    """How much of each class's pattern is left after ClassPatternRemoval."""
    x = smooth_images(n, (16, 16, 3), seed=2)
    y = np.arange(n) % 4
    x_p, _, _ = attack.poison(x, y)
    removal = ClassPatternRemoval(num_classes=4).fit(x_p, y, reference=reference)
    x_r, _ = removal.remove(x_p, y)
    shares = []
    for c in range(4):
        added = (x_p[y == c] - x[y == c]).mean(axis=0)
        left = (x_r[y == c] - x[y == c]).mean(axis=0)
        shares.append(np.sum(left * added) / np.sum(added * added))
    return float(np.mean(shares))


def test_smooth_pattern_survives_pattern_removal_that_catches_class_noise():
    noise = ClassPatternNoise(num_classes=4, epsilon=8 / 255, bias_ratio=0.0, seed=0)
    smooth = SmoothClassPattern(num_classes=4, epsilon=8 / 255, seed=0)
    # The high-pass estimate removes most of a noise pattern (its low
    # frequencies stay), and almost nothing of a smooth one.
    assert remaining_share(noise) < 0.5
    assert remaining_share(smooth) > 0.9
    # A trusted clean set shows the smooth pattern too, once it is large
    # enough for the pattern to stand out of the images' own variation.
    trusted = smooth_images(4000, (16, 16, 3), seed=7), np.arange(4000) % 4
    assert remaining_share(smooth, reference=trusted, n=4000) < 0.35


def test_random_sign_adds_plus_or_minus_the_class_pattern_and_empties_the_class_mean():
    x = np.full((2000, 8, 8, 3), 0.5, "float32")
    y = np.arange(2000) % 4
    attack = SmoothClassPattern(num_classes=4, epsilon=0.05, seed=3, random_sign=True)
    x_p, y_p, mask = attack.poison(x, y)
    delta = attack.patterns((8, 8, 3))
    added = x_p - x
    plus = np.all(np.isclose(added, delta[y], atol=1e-6), axis=(1, 2, 3))
    minus = np.all(np.isclose(added, -delta[y], atol=1e-6), axis=(1, 2, 3))
    assert mask.all() and np.all(plus ^ minus)
    # A fair coin per image: about half of each sign in every class.
    for c in range(4):
        assert 200 < plus[y == c].sum() < 300
        # The class mean holds a small share of the pattern at most (sampling noise).
        share = np.sum(added[y == c].mean(axis=0) * delta[c]) / np.sum(delta[c] ** 2)
        assert abs(share) < 0.15
    # The same coins from the same seed; another seed, other coins.
    again, _, _ = SmoothClassPattern(num_classes=4, epsilon=0.05, seed=3, random_sign=True).poison(x, y)
    np.testing.assert_array_equal(again, x_p)
    assert SmoothClassPattern(4, 0.05, seed=3).get_config()["random_sign"] is False
    with pytest.raises(TypeError, match="random_sign"):
        SmoothClassPattern(4, 0.05, random_sign="yes")


# ------------------------------------------------- user-shaped data --


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(3, 9),
    width=st.integers(3, 9),
    channels=st.sampled_from([1, 3]),
    n=st.integers(1, 30),
    fraction=st.sampled_from([0.0, 0.3, 1.0]),
    dtype=st.sampled_from(["uint8", "float32"]),
    which=st.sampled_from(["convolution", "one_pixel", "separable", "smooth", "signed_smooth"]),
)
def test_every_shortcut_keeps_range_count_and_untouched_rows(
    height, width, channels, n, fraction, dtype, which
):
    rng = np.random.default_rng(n)
    x = rng.uniform(size=(n, height, width, channels))
    x = (x * 255).astype("uint8") if dtype == "uint8" else x.astype("float32")
    y = rng.integers(0, 2, size=n)
    attack = {
        "convolution": lambda: ClassConvolution(2, fraction=fraction),
        "one_pixel": lambda: OnePixelShortcut(2, fraction=fraction),
        "separable": lambda: SeparableNoise(2, epsilon=8 if dtype == "uint8" else 0.03,
                                             patch_size=1, fraction=fraction),
        "smooth": lambda: SmoothClassPattern(2, epsilon=8 if dtype == "uint8" else 0.03,
                                             fraction=fraction),
        "signed_smooth": lambda: SmoothClassPattern(
            2, epsilon=8 if dtype == "uint8" else 0.03, fraction=fraction, random_sign=True),
    }[which]()
    x_p, y_p, mask = attack.poison(x, y)
    high = 255 if dtype == "uint8" else 1.0
    assert x_p.dtype == x.dtype and x_p.shape == x.shape
    assert x_p.min() >= 0 and x_p.max() <= high
    np.testing.assert_array_equal(y_p, y)
    np.testing.assert_array_equal(x_p[~mask], x[~mask])
    assert mask.sum() <= round(fraction * n)
    assert np.all((x_p != x).reshape(n, -1).any(axis=1) == mask)


# ------------------------------------------------- regressions (hostile user) --


def test_regression_a_setting_changed_after_first_use_is_refused_not_ignored():
    # Was silent: the cached plan kept fraction=0.2 while get_config said 1.0.
    x, y = smooth_images(10, (6, 6, 3)), np.arange(10) % 2
    attack = ClassPatternNoise(2, 0.05, fraction=0.2)
    attack.poison(x, y)
    with pytest.raises(AttributeError, match=r"fraction cannot change.*keep fraction=0.2.*from_config"):
        attack.fraction = 1.0
    attack.verbose = 1  # not a setting of the poisons
    fresh = OnePixelShortcut(2)
    fresh.pixels = [(0, 0, (1, 1, 1)), (1, 1, (0, 0, 0))]  # before use: allowed
    x_p, _, _ = fresh.poison(x, y)
    assert np.all(x_p[y == 0][:, 0, 0] == 1.0)
    with pytest.raises(AttributeError, match="pixels cannot change"):
        fresh.pixels = None


@pytest.mark.parametrize("make_attack", [
    lambda **kw: ClassPatternNoise(2, 8, **kw),
    lambda **kw: OnePixelShortcut(2, **kw),
    lambda **kw: ClassConvolution(2, **kw),
    lambda **kw: SeparableNoise(2, 8.0, patch_size=2, **kw),
], ids=["pattern", "one_pixel", "convolution", "separable"])
def test_regression_an_integer_range_the_dtype_cannot_hold_is_refused(make_attack):
    # Was silent: clipped to 256 then cast to uint8 wrapped to 0; int8 "white" was -1.
    y = np.arange(4) % 2
    with pytest.raises(ValueError, match=r"uint8 images can hold, inside \[0, 255\].*\(0, 256\)"):
        make_attack(value_range=(0, 256)).poison(np.full((4, 6, 6, 3), 250, "uint8"), y)
    with pytest.raises(ValueError, match=r"int8 images.*\(the default for integer images\)"):
        make_attack().poison(np.full((4, 6, 6, 3), 20, "int8"), y)
    x_p, _, _ = make_attack(value_range=(-128, 127)).poison(np.full((4, 6, 6, 3), 20, "int8"), y)
    assert x_p.dtype == np.int8


def test_regression_the_selection_keys_on_the_whole_seed():
    # Was silent: TF's index_shuffle reads 8 bits of the seed on small data sets, so
    # seeds s, s + 256 and s + 2**32 poisoned the same examples.
    x, y = smooth_images(40, (8, 8, 3)), np.arange(40) % 4
    seeds = (1, 257, 513, 1 + 2**32, 1 + 2**62)
    masks = {s: ClassPatternNoise(4, 0.05, seed=s, fraction=0.3).poison(x, y)[2] for s in seeds}
    assert len({m.tobytes() for m in masks.values()}) == len(seeds)
    assert all(m.sum() == 12 for m in masks.values())


def test_regression_separable_noise_on_float64_images_streams_bit_identical():
    # Was 1 ulp apart: grappler rewrote the norm's arithmetic inside tf.data only.
    x = np.random.default_rng(7).uniform(size=(11, 6, 6, 2))
    y = np.arange(11) % 2
    attack = SeparableNoise(2, 0.05, patch_size=3)
    x_p, _, _ = attack.poison(x, y)
    streamed = attack.transform(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in streamed]), x_p)


@pytest.mark.parametrize("which", ["pattern", "smooth", "separable", "convolution", "one_pixel"])
def test_float16_images_stay_inside_a_range_float16_cannot_hold_exactly(which):
    # 0.7 is 0.70019 in float16: a clip in float32 then a cast rounded past it.
    x = np.full((8, 4, 4, 3), np.float16(0.6997), "float16")
    x[:, 0, 0] = 0.1  # some structure for the blur to act on
    y = np.arange(8) % 2
    attack = {
        "pattern": lambda: ClassPatternNoise(2, 0.05, value_range=(0.0, 0.7)),
        "smooth": lambda: SmoothClassPattern(2, epsilon=0.05, value_range=(0.0, 0.7)),
        "separable": lambda: SeparableNoise(2, epsilon=0.05, patch_size=2, value_range=(0.0, 0.7)),
        "convolution": lambda: ClassConvolution(2, value_range=(0.0, 0.7)),
        "one_pixel": lambda: OnePixelShortcut(2, value_range=(0.0, 0.7)),
    }[which]()
    x_p, _, mask = attack.poison(x, y)
    assert x_p.dtype == np.float16 and mask.any()
    assert float(x_p.max()) <= 0.7 and float(x_p.min()) >= 0.0
    # The next range-checked step accepts the result, and keeps to the range too.
    cleaned, _ = ClassPatternRemoval(2, value_range=(0.0, 0.7)).fit(x_p, y).remove(x_p, y)
    assert cleaned.dtype == np.float16 and float(cleaned.max()) <= 0.7
