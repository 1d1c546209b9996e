"""`keras-poison run --model resnet50 --data DIR`: the ImageNet setting on a tiny image folder.

The folder holds real 8x8 digits written as class folders of PNGs (resized
to 32x32, ResNet-50's smallest input), a few per class, so one epoch of
ResNet-50 stays short on a CPU.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_poison import cli
from keras_poison import datasets
from keras_poison import experiments
from keras_poison.experiments import runner

CLASS_NAMES = [f"{k}_digit" for k in range(10)]


def _few(x, y, per_class):
    keep = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(10)])
    return x[keep], y[keep]


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """10 classes, 6 train / 2 test real digits each, as 32x32 PNGs."""
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    folder = tmp_path_factory.mktemp("digit_folder")
    for split, (x, y), per_class in (
        ("train", (x_train, y_train), 6), ("test", (x_test, y_test), 2)
    ):
        datasets.write_image_folder(
            *_few(x, y, per_class), folder, split=split, image_size=(32, 32),
            class_names=CLASS_NAMES,
        )
    return str(folder)


def test_cli_runs_resnet50_on_an_image_folder_with_top5_beside_top1(capsys, tmp_path, digit_folder):
    status = cli.main(
        ["run", "coeg_set", "--model", "resnet50", "--data", digit_folder, "--epochs", "1",
         "--batch-size", "30", "--no-plots", "--out", str(tmp_path),
         "--param", "set_size=20", "--param", "set_batch=10", "--param", "alphas=0.5",
         "--param", "steps=1"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "on imagefolder (60 train / 20 test), model resnet50" in out
    assert "top-5" in out
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["config"]["dataset"] == "imagefolder"
    assert results["data"]["class_names"] == CLASS_NAMES
    assert results["data"]["image_shape"] == [32, 32, 3]
    record = results["cells"]["coeg_set|0"]["alphas"]["0.5"]
    assert 0 <= record["accuracy"] <= record["top5_accuracy"] <= 1
    assert 0 <= record["base_accuracy"] <= record["base_top5_accuracy"] <= 1
    assert record["poisoned_count"] == 10
    assert "top5_accuracy" in results["summary"]["coeg_set α=0.5"]
    table = (tmp_path / "table.md").read_text()
    assert "test top-5 accuracy" in table and "(top-5:" in table


def test_an_image_folder_with_another_model_names_classes_from_its_folders(digit_folder):
    results = experiments.run(
        "baseline", data=digit_folder, model="vgg_like", epochs=1, batch_size=30,
        plots=False, log=lambda line: None,
    )
    assert results["config"]["dataset"] == "imagefolder"
    assert results["data"]["class_names"] == CLASS_NAMES
    assert results["data"]["num_classes"] == 10
    cell = results["cells"]["baseline|0"]
    assert "top5_accuracy" not in cell  # only models compiled with top-5 report it


def test_a_named_data_set_can_come_from_an_image_folder(digit_folder):
    settings = runner.validate(
        ["baseline"], "cifar10", digit_folder, None, 1, 1, None, 8, 1e-3, None
    )
    assert settings["dataset"] == "cifar10" and settings["model"] == "vgg_like"


def test_image_folder_defaults_to_resnet50():
    assert runner.DEFAULT_MODELS["imagefolder"] == "resnet50"
    assert "resnet50" in runner.MODELS


# ----------------------------------------------------------------------
# Bad input: exit status 2 and a message, before any training.


def run_cli(capsys, *args):
    status = cli.main(["run", *args, "--no-plots"])
    return status, capsys.readouterr().err


def test_unknown_model_lists_resnet50(capsys, tmp_path, digit_folder):
    status, err = run_cli(capsys, "baseline", "--data", digit_folder, "--model", "resnet18",
                          "--out", str(tmp_path))
    assert status == 2 and "model='resnet18'" in err and "resnet50" in err


def test_imagefolder_without_data_is_rejected(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--dataset", "imagefolder", "--out", str(tmp_path))
    assert status == 2 and "image folder" in err and "--data" in err


def test_imagefolder_given_an_npz_is_rejected(capsys, tmp_path, tiny_digits):
    status, err = run_cli(capsys, "baseline", "--dataset", "imagefolder", "--data", tiny_digits,
                          "--out", str(tmp_path / "out"))
    assert status == 2 and "image folder" in err and "tiny_digits.npz" in err


def test_image_folder_without_a_test_split_is_rejected(capsys, tmp_path):
    x = np.zeros((2, 32, 32, 3), np.uint8)
    datasets.write_image_folder(x, [0, 1], tmp_path / "data", split="train")
    status, err = run_cli(capsys, "baseline", "--data", str(tmp_path / "data"), "--model",
                          "vgg_like", "--out", str(tmp_path / "out"))
    assert status == 2 and "split 'test'" in err and "['train']" in err


def test_image_folder_of_mixed_sizes_says_to_write_it_at_one_size(capsys, tmp_path):
    for split, size in (("train", 32), ("test", 32)):
        datasets.write_image_folder(np.zeros((2, size, size, 3), np.uint8), [0, 1],
                                    tmp_path / "data", split=split)
    odd = tmp_path / "data" / "train" / "1" / "odd.png"
    odd.write_bytes(tf.io.encode_png(np.zeros((40, 40, 3), np.uint8)).numpy())
    status, err = run_cli(capsys, "baseline", "--data", str(tmp_path / "data"), "--model",
                          "vgg_like", "--out", str(tmp_path / "out"))
    assert status == 2 and "odd.png" in err and "write_image_folder" in err


def test_class_folders_without_split_level_are_rejected(capsys, tmp_path):
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "data" / name)
        (tmp_path / "data" / name / "1.png").write_bytes(
            tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)).numpy()
        )
    status, err = run_cli(capsys, "baseline", "--data", str(tmp_path / "data"), "--model",
                          "vgg_like", "--out", str(tmp_path / "out"))
    assert status == 2 and "move them under DIR/train/" in err


def test_resnet50_on_images_too_small_names_models_that_fit(capsys, tmp_path):
    for split in ("train", "test"):
        datasets.write_image_folder(np.zeros((2, 8, 8, 3), np.uint8), [0, 1],
                                    tmp_path / "data", split=split)
    status, err = run_cli(capsys, "baseline", "--data", str(tmp_path / "data"), "--model",
                          "resnet50", "--out", str(tmp_path / "out"))
    assert status == 2 and "(8, 8, 3)" in err and "vgg_like" in err
