"""How much of the class pattern `ClassPatternRemoval` leaves in the images.

For each seed, `ClassPatternNoise` (the harness's ε = 16/255, bias ratio 0.5)
poisons the CIFAR-10 subset's training split, and each estimate of the
patterns is subtracted. What a model can still use as a shortcut is the
per-class mean of what is left, `cleaned - clean`, after each image's mean
colour is removed (the `ColourCentering` layer that goes with the removal).
The script prints its energy, summed over pixels and averaged over classes,
for the poisoned images, for `ClassPatternRemoval` (high-pass of the class
means) and for a Wiener filter on the class means' spectra (white pattern
against the natural class means' falling spectrum), which docs/benchmarks.md
§8 compares. No training: numbers only.

Usage:

    python benchmarks/pattern_residual.py --data ../shared/data/cifar10_subset.npz
"""

import argparse

import numpy as np

import keras_poison as kp
from keras_poison.experiments.scenarios import PATTERN_PARAMS

# The colour centering the removal is paired with, applied as the model sees it.
centre_colour = kp.ColourCentering()


def centre(images):
    return np.asarray(centre_colour(images))


def wiener_patterns(x, y, num_classes):
    """Class-mean deviations, Wiener-filtered against a white noise floor."""
    means = np.stack([x[y == c].mean(0) for c in range(num_classes)])
    deviation = means - means.mean(0)
    spectrum = np.fft.fft2(deviation, axes=(1, 2))
    power = (np.abs(spectrum) ** 2).mean(axis=(0, 3))
    fy = np.abs(np.fft.fftfreq(power.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(power.shape[1]))[None, :]
    # The highest frequencies hold almost nothing of the smooth class means:
    # their power is the white pattern's, the same at every frequency.
    floor = np.median(power[np.maximum(fy, fx) >= 0.375])
    gain = np.clip(floor / np.maximum(power, 1e-30), 0, 1)
    return np.real(np.fft.ifft2(spectrum * gain[None, :, :, None], axes=(1, 2)))


def residual_energy(cleaned, clean, y, num_classes):
    left = centre(cleaned) - centre(clean)
    per_class = np.stack([left[y == c].mean(0) for c in range(num_classes)])
    per_class -= per_class.mean(0)
    return float((per_class**2).sum(axis=(1, 2, 3)).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    data = np.load(args.data)
    x = data["x_train"].astype("float32") / 255
    y = data["y_train"].reshape(-1)
    k = 10
    print("| seed | poisoned | ClassPatternRemoval | Wiener filter |")
    print("|---|---|---|---|")
    for seed in map(int, args.seeds.split(",")):
        attack = kp.ClassPatternNoise(num_classes=k, seed=seed, **PATTERN_PARAMS)
        x_poisoned, _, _ = attack.poison(x, y)
        removal = kp.ClassPatternRemoval(num_classes=k).fit(x_poisoned, y)
        x_removed, _ = removal.remove(x_poisoned, y)
        x_wiener = np.clip(x_poisoned - wiener_patterns(x_poisoned, y, k)[y], 0, 1)
        poisoned = residual_energy(x_poisoned, x, y, k)
        row = [poisoned, residual_energy(x_removed, x, y, k), residual_energy(x_wiener, x, y, k)]
        print(f"| {seed} | {row[0]:.3f} | {row[1]:.3f} ({row[1] / poisoned:.0%}) "
              f"| {row[2]:.3f} ({row[2] / poisoned:.0%}) |")


if __name__ == "__main__":
    main()
