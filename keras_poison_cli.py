"""The `keras-poison` command's launcher: answers at once, loads TensorFlow only for work.

`import keras_poison` loads TensorFlow and Keras, and it must: importing the
package registers its serializable classes with Keras before a `.keras` file
is loaded. Python runs a package's `__init__` before any of its modules, so
the command's entry point lives outside the package, in this module, which
imports nothing but the standard library. Here the arguments are parsed and
checked, `--help`, `run --list` and argument errors are answered (well under
a second), and only then is `keras_poison.cli` (and with it TensorFlow)
imported to run the command.

TensorFlow's native start-up log (oneDNN, CUDA probes and CPU-feature
notices, written to the process's stderr by C++ code before the Python
logging level applies) is kept out of the terminal: `TF_CPP_MIN_LOG_LEVEL`
defaults to 3, and what the import writes to file descriptor 2 is held back
and shown only with `--verbose 2`, or when the import fails. A
`TF_CPP_MIN_LOG_LEVEL` set by the user is kept.
"""

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile

# The datasets `keras-poison demo` runs on (keras_poison.demo.DATASET_MODELS;
# a test keeps the two equal).
DEMO_DATASETS = ("cifar10", "digits", "mnist5k")


def build_parser():
    """The command's `argparse` parser (subcommands demo, run, merge, manifest)."""
    parser = argparse.ArgumentParser(
        prog="keras-poison",
        description="Data-poisoning attacks and defences for Keras image classifiers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="attacks, detectors and defences on packaged data: damage, detection, recovery",
        description=(
            "Trains a small model clean and under three attacks (random flips, targeted "
            "flips, COEG crafted poisons), scores a detector against each attack's "
            "ground truth, and measures what a defence wins back. Prints one table; "
            "writes results.json and demo.png to --out."
        ),
    )
    demo.add_argument("--dataset", choices=DEMO_DATASETS, default="mnist5k")
    demo.add_argument("--data", default=None, help="a local .npz (needed for cifar10)")
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="keras-poison-demo", help="directory for results.json and demo.png")
    demo.add_argument("--no-plot", action="store_true", help="do not write demo.png")
    demo.add_argument(
        "--verbose", type=int, default=1, choices=[0, 1, 2],
        help="0: the table only; 1: a progress bar per phase (default); 2: also Keras' "
        "epoch lines and TensorFlow's start-up log",
    )
    add_run_parser(commands)
    add_merge_parser(commands)
    add_manifest_parser(commands)
    return parser


def add_run_parser(commands):
    run = commands.add_parser(
        "run",
        help="run scenarios x seeds; write results.json, table.md and plots (resumable)",
        description=(
            "Runs each SCENARIO once per seed and writes results.json (after every "
            "finished cell, so a run can be stopped and started again: finished cells "
            "are skipped), table.md and PNG plots into --out. Bad input exits with "
            "status 2 before any training."
        ),
    )
    run.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="scenario names (see --list), or all"
    )
    run.add_argument("--list", action="store_true", help="list the scenarios and exit")
    run.add_argument(
        "--dataset",
        default=None,
        help="cifar10, mnist, digits, mnist5k or imagefolder (default: imagefolder when "
        "--data is an image folder, else digits)",
    )
    run.add_argument(
        "--data",
        default=None,
        help="a local .npz (or a folder holding one; cifar10/mnist offline), or an image "
        "folder DIR/{train,test}/<class>/<image> of one image size",
    )
    run.add_argument(
        "--model",
        default=None,
        help="vgg_like, lenet5, vgg9 or resnet50 (default: lenet5 for mnist/mnist5k, "
        "resnet50 for an image folder, else vgg_like); resnet50 reports top-5 accuracy",
    )
    run.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    run.add_argument(
        "--seeds",
        default="1",
        help="K for seeds 0..K-1, or a comma-separated list of seeds: 1,2 (one seed: 2,) "
        "(default 1)",
    )
    run.add_argument("--out", default=None, help="output folder (created if needed)")
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--learning-rate", type=float, default=1e-3)
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario parameter, e.g. epsilon=8/255 or alphas=0.1,0.5 "
        "(repeatable; --list shows them)",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument(
        "--verbose", type=int, default=0, choices=[0, 1, 2],
        help="Keras fit verbosity; 2 also shows TensorFlow's start-up log",
    )


def add_merge_parser(commands):
    merge = commands.add_parser(
        "merge",
        help="merge runs made in parallel (split by seed or scenario) into one table",
        description=(
            "Merges the results.json of several `keras-poison run` folders of the same "
            "settings into --out (with any results.json already there) and writes "
            "table.md and the plots. Exit status 2 on bad input."
        ),
    )
    merge.add_argument("sources", nargs="+", metavar="RUN_DIR", help="folders written by run")
    merge.add_argument("--out", required=True, help="output folder (created if needed)")
    merge.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_quiet_verbose(merge)


def add_manifest_parser(commands):
    manifest = commands.add_parser(
        "manifest",
        help="fingerprint a data set, or check it against its fingerprints",
    )
    actions = manifest.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="write a manifest of a .npz data set")
    verify = actions.add_parser(
        "verify",
        help="check a .npz data set against a manifest (exit 0 clean, 1 changed, 2 error)",
    )
    for action in (create, verify):
        action.add_argument(
            "--data", required=True, help="a .npz with x_train, y_train[, x_test, y_test]"
        )
        action.add_argument(
            "--split",
            choices=["train", "test", "all"],
            default="train",
            help="which arrays to fingerprint; all = train then test (default train)",
        )
        add_quiet_verbose(action)
    create.add_argument("--out", required=True, help="the manifest to write (.json or .npz)")
    verify.add_argument("--manifest", required=True, help="a manifest written by create")


def add_quiet_verbose(parser):
    """`--verbose` of the commands that print nothing more at 1 than at 0."""
    parser.add_argument(
        "--verbose", type=int, default=0, choices=[0, 1, 2],
        help="2: also show TensorFlow's start-up log (default 0)",
    )


def main(argv=None):
    """Runs the command; returns its exit status (2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1 (received {args.epochs})")
        if args.dataset == "cifar10" and args.data is None:
            raise SystemExit("--dataset cifar10 needs --data PATH to a local .npz (no download here)")
    if args.command == "manifest":
        problem = manifest_argument_problem(args)
        if problem:
            print(f"keras-poison manifest {args.action}: error: {problem}", file=sys.stderr)
            return 2
    if args.command == "run":
        registry = scenario_registry()
        if args.list:
            print_scenarios(registry)
            return 0
        problem = run_argument_problem(args, registry)
        if problem:
            print(f"keras-poison run: error: {problem}", file=sys.stderr)
            return 2
    commands = import_commands(show_native_log=args.verbose == 2)
    return commands.dispatch(args)


def scenario_registry():
    """The module `keras_poison.experiments.scenarios`, loaded without the package.

    The registry module imports only the standard library and NumPy at its
    top (its scenario functions import the library when they run), so it is
    executed from its file, under a private name, when the package is not
    loaded yet; in a process that has imported the package, the package's
    own module is returned.
    """
    if "keras_poison" in sys.modules:
        from keras_poison.experiments import scenarios

        return scenarios
    package = importlib.util.find_spec("keras_poison")  # locates; runs nothing
    path = os.path.join(package.submodule_search_locations[0], "experiments", "scenarios.py")
    name = "_keras_poison_cli_scenarios"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def print_scenarios(registry):
    """`keras-poison run --list`: names, descriptions and parameter defaults."""
    entries = registry.list_scenarios()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        print(f"{name:<{width}}  {description}")
    print("\nParameters (--param KEY=VALUE) and their defaults:")
    for name, scenario in registry.SCENARIOS.items():
        shown = ", ".join(f"{k}={shown_value(v)}" for k, v in scenario.params.items()) or "none"
        print(f"  {name}: {shown}")


def shown_value(value):
    """A parameter's default as one would type it after `--param KEY=`."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(shown_value(v) for v in value)
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def run_argument_problem(args, registry):
    """The first error in `run`'s arguments that needs no TensorFlow, or None.

    The runner checks everything again (and the rest: `--seeds`, `--param`,
    the data) when it starts; these are the common slips, answered at once.
    """
    if not args.scenarios:
        return "Expected at least one SCENARIO (see --list, or 'all'). Received: none"
    unknown = [n for n in args.scenarios if n != "all" and n not in registry.SCENARIOS]
    if unknown:
        return (
            f"Expected scenario names from {list(registry.SCENARIOS)} (or 'all'). "
            f"Received: unknown scenario {unknown[0]!r}"
        )
    if args.out is None:
        return (
            "Expected `--out DIR`, the folder for results.json, table.md and the plots. "
            "Received: none"
        )
    return None


def manifest_argument_problem(args):
    """A `manifest` input file that does not exist, or None."""
    paths = [("--data", args.data)]
    if args.action == "verify":
        paths.append(("--manifest", args.manifest))
    for option, path in paths:
        if not os.path.isfile(path):
            return f"{option} {path!r} is not a file"
    return None


def import_commands(show_native_log=False):
    """Imports `keras_poison.cli` (so TensorFlow) with its native start-up log held back."""
    if "keras_poison" in sys.modules or show_native_log:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if show_native_log else "3")
        from keras_poison import cli

        return cli
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_held_back():
        from keras_poison import cli
    return cli


@contextlib.contextmanager
def native_stderr_held_back():
    """Sends what is written to file descriptor 2 to a temporary file meanwhile.

    C++ libraries write to the descriptor, not to `sys.stderr`, so the
    descriptor itself is redirected. If the block raises, what was held back
    is written out before the error propagates: the user sees why an import
    failed.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


if __name__ == "__main__":
    sys.exit(main())
