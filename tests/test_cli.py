import pytest

from keras_poison import cli


def test_demo_prints_a_row_per_attack(capsys):
    cli.main(["demo", "--dataset", "digits", "--epochs", "1", "--batch-size", "128"])
    out = capsys.readouterr().out
    for row in ["| none (clean) |", "| random flip 20% |", "| targeted flip 20% |", "| class pattern"]:
        assert row in out
    assert "| 20.0% |" in out and "| 100.0% |" in out


def test_demo_rejects_zero_epochs_before_any_work():
    with pytest.raises(SystemExit, match="--epochs must be >= 1"):
        cli.main(["demo", "--epochs", "0"])


def test_demo_on_cifar10_asks_for_a_local_file():
    with pytest.raises(SystemExit, match="--data"):
        cli.main(["demo", "--dataset", "cifar10"])


def test_unknown_dataset_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--dataset", "imagenet"])
    assert "mnist5k" in capsys.readouterr().err
