"""Bad input to `run` / `keras-poison run`: a clear message, exit status 2, no training."""

import pytest

from keras_poison import cli
from keras_poison import experiments
from keras_poison.experiments import runner
from keras_poison.experiments import scenarios


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained despite bad input")

    monkeypatch.setattr(scenarios, "train_and_score", fail)
    monkeypatch.setattr(scenarios, "base_model", fail)


def run_cli(capsys, *argv):
    status = cli.main(["run", *argv])
    return status, capsys.readouterr().err


def test_unknown_scenario_lists_the_valid_ones(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "nonsense", "--out", str(tmp_path))
    assert status == 2
    assert "'nonsense'" in err and "class_pattern_removal" in err and "coes_fl2" in err


def test_unknown_dataset_lists_the_valid_ones(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--dataset", "imagenet", "--out", str(tmp_path))
    assert status == 2 and "dataset='imagenet'" in err and "mnist5k" in err


def test_unknown_model_lists_the_valid_ones(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--model", "resnet", "--out", str(tmp_path))
    assert status == 2 and "model='resnet'" in err and "vgg9" in err


def test_model_too_big_for_the_images_names_the_models_that_fit(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--model", "lenet5", "--out", str(tmp_path))
    assert status == 2 and "(8, 8, 1)" in err and "vgg_like" in err


def test_missing_data_path(capsys, tmp_path):
    missing = str(tmp_path / "nowhere.npz")
    status, err = run_cli(capsys, "baseline", "--data", missing, "--out", str(tmp_path / "o"))
    assert status == 2 and "does not exist" in err and "nowhere.npz" in err


def test_data_that_is_not_an_npz(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not numpy")
    status, err = run_cli(capsys, "baseline", "--data", str(bad), "--out", str(tmp_path / "o"))
    assert status == 2 and "bad.npz" in err and ".npz" in err


def test_out_folder_that_cannot_be_written(capsys, tmp_path):
    # A folder inside a regular file can never be created, even by root.
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, err = run_cli(capsys, "baseline", "--out", str(blocker / "results"))
    assert status == 2 and "`out`" in err and "written" in err


def test_zero_epochs(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--epochs", "0", "--out", str(tmp_path))
    assert status == 2 and "epochs=0" in err


def test_zero_seeds(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--seeds", "0", "--out", str(tmp_path))
    assert status == 2 and "seeds=0" in err


def test_missing_out(capsys):
    status, err = run_cli(capsys, "baseline")
    assert status == 2 and "--out" in err


def test_no_scenario(capsys, tmp_path):
    status, err = run_cli(capsys, "--out", str(tmp_path))
    assert status == 2 and "--list" in err


def test_unknown_param_lists_the_known_ones(capsys, tmp_path):
    status, err = run_cli(capsys, "baseline", "--param", "epsilom=0.1", "--out", str(tmp_path))
    assert status == 2 and "'epsilom'" in err and "epsilon" in err


def test_param_of_a_scenario_not_chosen(tmp_path):
    with pytest.raises(experiments.ExperimentError, match="Received: alphas"):
        experiments.run(["baseline"], params={"alphas": [0.5]}, out=str(tmp_path))


def test_param_out_of_range(capsys, tmp_path):
    status, err = run_cli(capsys, "random_flip", "--param", "rate=1.5", "--out", str(tmp_path))
    assert status == 2 and "rate=1.5" in err


def test_class_param_beyond_the_classes(tmp_path, tiny_digits):
    with pytest.raises(experiments.ExperimentError, match="victim=12"):
        experiments.run(["coes"], data=tiny_digits, params={"victim": 12}, out=str(tmp_path))


def test_results_of_other_settings_are_not_resumed(tmp_path, tiny_digits):
    (tmp_path / "results.json").write_text(
        '{"cells": {"baseline|0": {"config": {"epochs": 7}}}, "invocations": []}'
    )
    with pytest.raises(experiments.ExperimentError, match="epochs: 7 then, 1 now"):
        experiments.run(["baseline"], data=tiny_digits, epochs=1, out=str(tmp_path))


def test_parse_params_reads_each_type():
    params = runner.parse_params(
        ["epsilon=8/255", "alphas=0.1,0.5", "freeze_bn=false", "steps=3", "monitor=val_accuracy",
         "finetune_epochs=none"]
    )
    assert params == {
        "epsilon": pytest.approx(8 / 255), "alphas": [0.1, 0.5], "freeze_bn": False, "steps": 3,
        "monitor": "val_accuracy", "finetune_epochs": None,
    }
    with pytest.raises(experiments.ExperimentError, match="steps"):
        runner.parse_params(["steps=2.5"])
