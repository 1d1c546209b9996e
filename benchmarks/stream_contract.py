"""The stream-contract matrix: every pipeline shape, every stream transform, counted.

Runs `tests/stream_contract.run_case` over the whole product of image
dtypes, image shapes, label formats, element structures, batch sizes (with
and without `drop_remainder`), upstream ops and transforms, and counts the
outcomes: exact, clear error, unclear error, silent. The goal (issue 16):
0 silent, 0 unclear, every case without an order-changing op upstream
exact, every position-keyed transform after one a clear error.

    python benchmarks/stream_contract.py --out benchmarks/results/stream_contract
"""

import argparse
import collections
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import stream_contract as contract  # noqa: E402

BATCHING = [(None, False)] + [
    (size, drop) for size in contract.BATCH_SIZES if size for drop in (False, True)
    if not (size == 1 and drop)
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/stream_contract")
    parser.add_argument("--n", type=int, default=11, help="examples per case")
    args = parser.parse_args()
    counts = collections.Counter()
    by_transform = collections.defaultdict(collections.Counter)
    by_upstream = collections.defaultdict(collections.Counter)
    failures = []
    start = time.perf_counter()
    product = itertools.product(
        contract.TRANSFORMS, contract.IMAGE_DTYPES, contract.IMAGE_SHAPES,
        contract.LABEL_FORMATS, contract.STRUCTURES, BATCHING, contract.UPSTREAM,
    )
    for transform, dtype, shape, labels, structure, (size, drop), upstream in product:
        case = contract.PipelineCase(
            transform, dtype, shape, labels, structure, size, drop, upstream, n=args.n
        )
        outcome, detail = contract.run_case(case)
        required = "exact" if contract.must_be_exact(case) else "error"
        counts[outcome] += 1
        counts["as_required" if outcome == required else "not_as_required"] += 1
        by_transform[transform][outcome] += 1
        by_upstream[str(upstream)][outcome] += 1
        if outcome != required:
            failures.append({"case": repr(case), "outcome": outcome, "detail": detail})
    seconds = time.perf_counter() - start
    result = {
        "command": "python benchmarks/stream_contract.py",
        "cases": sum(counts[k] for k in ("exact", "error", "unclear", "silent")),
        "counts": dict(counts),
        "by_transform": {k: dict(v) for k, v in by_transform.items()},
        "by_upstream": {k: dict(v) for k, v in by_upstream.items()},
        "failures": failures[:200],
        "seconds": round(seconds, 1),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as file:
        json.dump(result, file, indent=1)
    lines = [
        f"Cases: {result['cases']} in {seconds:.0f} s. "
        + ", ".join(f"{k}: {counts[k]}" for k in ("exact", "error", "unclear", "silent"))
        + f"; as required: {counts['as_required']}, not: {counts['not_as_required']}.",
        "",
        "| | exact | clear error | unclear | silent |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, table in [*by_transform.items(), *(("upstream " + k, v) for k, v in by_upstream.items())]:
        lines.append(
            f"| {name} | {table['exact']} | {table['error']} | {table['unclear']} | {table['silent']} |"
        )
    with open(args.out + ".md", "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
