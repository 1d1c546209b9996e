"""`experiments.merge` / `keras-poison merge`: runs split by seed become one table."""

import json
import os

import pytest

from keras_poison import cli
from keras_poison import experiments
from keras_poison.experiments import scenarios

TINY = dict(dataset="digits", epochs=1, batch_size=128, verbose=0, plots=False)


def quiet(line):
    pass


@pytest.fixture(scope="module")
def seed_split_runs(tiny_digits, tmp_path_factory):
    """random_flip with seed 0 in one folder and seed 1 in another, as two processes would."""
    root = tmp_path_factory.mktemp("split")
    folders = [str(root / "seed0"), str(root / "seed1")]
    runs = [
        experiments.run(["random_flip"], data=tiny_digits, seeds=[seed], out=folder, log=quiet, **TINY)
        for seed, folder in zip((0, 1), folders)
    ]
    return folders, runs


def read(folder, name="results.json"):
    with open(os.path.join(folder, name)) as f:
        return json.load(f) if name.endswith(".json") else f.read()


def test_merged_run_holds_every_cell_unchanged_with_mean_and_std(seed_split_runs, tmp_path):
    folders, runs = seed_split_runs
    merged = experiments.merge(folders, out=str(tmp_path), log=quiet)

    assert sorted(merged["cells"]) == ["random_flip|0", "random_flip|1"]
    assert merged["cells"]["random_flip|0"] == runs[0]["cells"]["random_flip|0"]
    assert merged["cells"]["random_flip|1"] == runs[1]["cells"]["random_flip|1"]
    assert merged["config"]["seeds"] == [0, 1]
    accuracy = merged["summary"]["random_flip"]["accuracy"]
    expected = [run["cells"][f"random_flip|{seed}"]["accuracy"] for seed, run in enumerate(runs)]
    assert accuracy["n"] == 2 and accuracy["mean"] == pytest.approx(sum(expected) / 2)
    assert read(str(tmp_path)) == json.loads(json.dumps(merged))
    row = [line for line in read(str(tmp_path), "table.md").splitlines() if line.startswith("| random_flip |")]
    assert len(row) == 1 and "±" in row[0]
    assert "confusion_random_flip_seed1.png" in os.listdir(tmp_path / "plots")


def test_run_into_the_merged_folder_resumes_without_training(seed_split_runs, tiny_digits, tmp_path, monkeypatch):
    folders, _ = seed_split_runs
    experiments.merge(folders, out=str(tmp_path), plots=False, log=quiet)

    def no_training(*args, **kwargs):
        raise AssertionError("a merged cell was trained again")

    monkeypatch.setattr(scenarios, "train_and_score", no_training)
    lines = []
    experiments.run(["random_flip"], data=tiny_digits, seeds=2, out=str(tmp_path), log=lines.append, **TINY)
    assert sum("finished earlier, skipped" in line for line in lines) == 2


def test_runs_are_added_to_a_merged_folder_one_at_a_time(seed_split_runs, tmp_path):
    folders, _ = seed_split_runs
    experiments.merge(folders[0], out=str(tmp_path), plots=False, log=quiet)
    merged = experiments.merge(folders[1], out=str(tmp_path), plots=False, log=quiet)
    assert sorted(merged["cells"]) == ["random_flip|0", "random_flip|1"]


def test_a_cell_with_two_different_settings_is_refused(seed_split_runs, tmp_path):
    folders, _ = seed_split_runs
    altered = read(folders[0])
    altered["cells"]["random_flip|0"]["config"]["params"]["rate"] = 0.4
    other = tmp_path / "altered"
    other.mkdir()
    (other / "results.json").write_text(json.dumps(altered))
    out = tmp_path / "merged"
    with pytest.raises(experiments.ExperimentError, match="cell 'random_flip\\|0'"):
        experiments.merge([folders[0], str(other)], out=str(out), log=quiet)
    assert not (out / "results.json").exists()


def test_runs_of_other_settings_are_refused(seed_split_runs, tiny_digits, tmp_path):
    folders, _ = seed_split_runs
    longer = str(tmp_path / "two_epochs")
    settings = dict(TINY, epochs=2)
    experiments.run(["baseline"], data=tiny_digits, out=longer, log=quiet, **settings)
    with pytest.raises(experiments.ExperimentError, match="epochs=1 in .* and epochs=2 in"):
        experiments.merge([folders[0], longer], out=str(tmp_path / "merged"), log=quiet)


def test_a_folder_without_results_is_named(tmp_path):
    with pytest.raises(experiments.ExperimentError, match="nowhere"):
        experiments.merge([str(tmp_path / "nowhere")], out=str(tmp_path / "merged"), log=quiet)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(experiments.ExperimentError, match="broken.json"):
        experiments.merge([str(tmp_path / "broken.json")], out=str(tmp_path / "merged"), log=quiet)
    with pytest.raises(experiments.ExperimentError, match="non-empty list"):
        experiments.merge([], out=str(tmp_path / "merged"), log=quiet)


def test_cli_runs_one_named_seed_and_merges(seed_split_runs, tiny_digits, tmp_path, capsys):
    folders, runs = seed_split_runs
    single = str(tmp_path / "seed1")
    status = cli.main(
        ["run", "random_flip", "--data", tiny_digits, "--epochs", "1", "--batch-size", "128",
         "--seeds", "1,", "--no-plots", "--out", single]
    )
    assert status == 0
    assert list(read(single)["cells"]) == ["random_flip|1"]

    status = cli.main(["merge", folders[0], single, "--out", str(tmp_path / "merged"), "--no-plots"])
    assert status == 0
    assert "Merged 2 cells from 2 runs" in capsys.readouterr().out
    assert cli.main(["merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m2")]) == 2
    assert "keras-poison merge: error" in capsys.readouterr().err


def test_cli_rejects_seeds_that_are_not_numbers(tiny_digits, tmp_path, capsys):
    status = cli.main(["run", "baseline", "--data", tiny_digits, "--seeds", "two", "--out", str(tmp_path)])
    assert status == 2
    assert "--seeds" in capsys.readouterr().err
    assert experiments.runner.parse_seeds("3") == 3
    assert experiments.runner.parse_seeds("1, 2") == [1, 2]
