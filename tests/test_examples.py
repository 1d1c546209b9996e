"""The example scripts run end to end on tiny settings and print what they promise.

Each script is loaded with `runpy` and its `main(argv)` called in this
process, so TensorFlow is imported once for all of them; the settings are
the smallest that still exercise every step (scikit-learn's 8x8 digits, one
or two epochs, few poisons).
"""

import os
import runpy

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, argv, capsys):
    namespace = runpy.run_path(os.path.join(EXAMPLES, name), run_name="example")
    status = namespace["main"](argv)
    return status, capsys.readouterr().out


def test_class_oriented_example_prints_ctt_and_cft_and_saves_poisons(tmp_path, capsys):
    from keras_poison import PoisonSet

    path = tmp_path / "poisons.npz"
    status, out = run_example(
        "class_oriented_attacks.py",
        ["--dataset", "digits", "--epochs", "2", "--finetune-epochs", "1",
         "--finetune-size", "200", "--steps", "1", "--save-poisons", str(path)],
        capsys,
    )
    assert status == 0
    assert "COEG, supplanter '0': 100 poisons" in out
    for line in ("clean set", "label flips (same seeds)", "COEG poisons", "COES poisons"):
        assert line in out
    assert "CTT" in out and "CFT per class" in out
    assert "COES, victim '9'" in out
    poisons = PoisonSet.load(path)
    assert len(poisons) == 100 and set(poisons.labels.tolist()) == {0}


def test_harden_example_prints_clean_attacked_and_defended_accuracy(capsys):
    status, out = run_example(
        "harden_training_script.py", ["--dataset", "digits", "--epochs", "2"], capsys
    )
    assert status == 0
    for label in ("clean data, user's script", "poisoned data, user's script",
                  "poisoned data, hardened script"):
        assert f"{label}" in out
    assert out.count("test accuracy") == 3
    assert "ClassPatternRemoval:" in out and "PoisonMonitor:" in out
    assert "Accuracy recovered by the defences:" in out


def test_harden_example_rejects_unknown_runs(capsys):
    with pytest.raises(SystemExit):
        run_example("harden_training_script.py", ["--runs", "clean,typo"], capsys)


def test_audit_example_scores_detectors_and_writes_pngs(tmp_path, capsys):
    status, out = run_example(
        "audit_dataset.py",
        ["--dataset", "digits", "--rate", "0.2", "--epochs", "1", "--folds", "2",
         "--fold-epochs", "1", "--out", str(tmp_path)],
        capsys,
    )
    assert status == 0
    assert "287 relabelled" in out  # RandomFlip(0.2) of 1,437 digits
    assert out.count("precision") == 4 and out.count("recall") == 4
    for detector in ("LabelIssueDetector", "KNNDetector", "AUMDetector", "rank_average(AUM, k-NN)"):
        assert detector in out
    assert "Sanitize(action='relabel')" in out
    assert "test accuracy: trained on poisoned data" in out
    for png in ("suspicious.png", "suggested_labels.png"):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


# One epoch on random images: the early-stopping check rightly says "near chance".
@pytest.mark.filterwarnings("ignore:EarlyStopping restored")
def test_harden_example_reads_a_cifar_npz(tmp_path, capsys):
    # A CIFAR-shaped stand-in: 8x8 RGB uint8 images (the VGG-like CNN's minimum).
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny_cifar.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(200) % 10,
        x_test=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )
    status, out = run_example(
        "harden_training_script.py",
        ["--data", str(path), "--epochs", "1", "--trusted", "0.5", "--runs", "defended"],
        capsys,
    )
    assert status == 0
    assert out.startswith("cifar10: 100 train / 100 trusted / 20 test images")
    assert "poisoned data, hardened script" in out
    assert "Accuracy recovered" not in out  # only one run was asked for
