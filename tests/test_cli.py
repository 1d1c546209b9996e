import json
import pytest

from keras_poison import cli


def test_demo_shows_damage_detection_and_recovery_in_one_table_and_a_png(capsys, tmp_path):
    cli.main(["demo", "--epochs", "1", "--batch-size", "128",
              "--out", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    for text in ["| RandomFlip 40% | 40.0% |", "| TargetedFlip 30% | 30.0% |",
                 "| SupplanterPoison (COEG) 30%", "KNNDetector P", "PoisonMonitor",
                 "Recovery = ", "keras-poison run --list"]:
        assert text in out
    result = json.loads((tmp_path / "results.json").read_text())
    assert [row["poisoned"] for row in result["rows"]] == pytest.approx([0.4, 0.3, 0.3], abs=1e-3)
    for row in result["rows"]:
        assert row["damage"] == pytest.approx(row["clean_accuracy"] - row["attacked_accuracy"])
        if row["recovery"] is not None:
            assert row["recovery"] == pytest.approx(
                (row["defended_accuracy"] - row["attacked_accuracy"]) / row["damage"]
            )
    flips = result["rows"][0]["detection"]["KNNDetector"]
    assert 0.0 <= flips["f1"] <= 1.0 and flips["num_flagged"] > 0
    assert (tmp_path / "demo.png").stat().st_size > 10_000


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
