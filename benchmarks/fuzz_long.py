"""The fuzz tier's properties (tests/fuzz) with many more examples than CI runs, on a fresh seed.

    nice python benchmarks/fuzz_long.py [--examples 2000] [--seed N] [--no-shrink] [-k EXPR]

CI runs each property on 50 derandomized examples (the ``ci`` Hypothesis profile); this runs the
``long`` profile: ``--examples`` per property from a random seed (printed, so a run can be
repeated with ``--seed``). It prints, per property, how many examples passed, failed and were
rejected as not applicable (invalid), the time, and the ratio to CI's count; then every failure
with Hypothesis's minimal failing example. ``--no-shrink`` reports failures as found instead of
minimising them (shrinking a failing zip can take minutes). Exit status 1 when any property failed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI_EXAMPLES = 50  # tests/fuzz/fuzzing.py, profile "ci"

_TEST = re.compile(r"^(tests/fuzz/\S+::\S+):$")
_PHASE = re.compile(r"- during (\w+) phase \(([\d.]+) seconds\)")
# "60 passing, 0 failing, and 0 invalid test cases" (older Hypothesis: "... passing examples, ...")
_COUNTS = re.compile(r"- (\d+) passing[^,]*, (\d+) failing[^,]*, (?:and )?(\d+) invalid")
_STOPPED = re.compile(r"- Stopped because (.+)")


def parse_statistics(text: str) -> dict[str, dict]:
    """Per test: passing, failing, invalid examples and seconds, summed over Hypothesis's phases."""
    stats: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if m := _TEST.match(line):
            current = stats.setdefault(m.group(1), {"passing": 0, "failing": 0, "invalid": 0, "seconds": 0.0,
                                                    "stopped": ""})
        elif current is None:
            continue
        elif m := _PHASE.search(line):
            current["seconds"] += float(m.group(2))
        elif m := _COUNTS.search(line):
            for key, value in zip(("passing", "failing", "invalid"), m.groups(), strict=True):
                current[key] += int(value)
        elif m := _STOPPED.search(line):
            current["stopped"] = m.group(1)
    return stats


def failures(text: str) -> list[str]:
    """The pytest failure headers, error lines and Hypothesis's failing examples, as printed."""
    keep, out = False, []
    for line in text.splitlines():
        if line.startswith("FAILED ") or re.match(r"^_{3,} \S+ _{3,}$", line):
            out.append(line)
        if "Failing test case" in line or "Falsifying example" in line:
            keep = True
        if keep or re.match(r"^E\s+\w*(Error|Exception)\b", line):
            out.append(line)
        if keep and ("reproduce_failure" in line or not line.strip()):
            keep = False
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="examples per property (CI: 50)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: a random one)")
    parser.add_argument("--no-shrink", action="store_true", help="report failures unminimised (faster)")
    parser.add_argument("-k", default="", help="only the properties pytest -k selects")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    env = {**os.environ, "IMGPIPE_FUZZ_PROFILE": "long", "IMGPIPE_FUZZ_EXAMPLES": str(args.examples),
           "PYTHONPATH": str(ROOT)}
    if args.no_shrink:
        env["IMGPIPE_FUZZ_SHRINK"] = "0"
    cmd = [sys.executable, "-m", "pytest", "tests/fuzz", "-n", "0", "-p", "no:cacheprovider", "-q",
           "--hypothesis-show-statistics", f"--hypothesis-seed={seed}", "-W", "ignore::Warning"]
    if args.k:
        cmd += ["-k", args.k]
    print(f"fuzz_long: {args.examples} examples per property, seed {seed}, shrink {not args.no_shrink}")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    stats = parse_statistics(text)
    if not stats:
        print(text[-4000:])
        print("fuzz_long: no Hypothesis statistics in pytest's output (see above)")
        return 1
    width = max(len(name) for name in stats)
    print(f"{'property':<{width}}  {'passing':>8} {'failing':>8} {'invalid':>8} {'seconds':>8} {'x CI':>6}")
    total = 0
    for name, s in sorted(stats.items()):
        ran = s["passing"] + s["failing"]
        total += ran
        print(f"{name:<{width}}  {s['passing']:>8} {s['failing']:>8} {s['invalid']:>8} {s['seconds']:>8.1f} "
              f"{ran / CI_EXAMPLES:>6.1f}")
    failed = [name for name, s in stats.items() if s["failing"]]
    print(f"fuzz_long: {len(stats)} properties, {total} examples run in {wall:.0f} s "
          f"({total / max(wall, 1e-9):.0f} examples/s); CI runs {CI_EXAMPLES * len(stats)}; "
          f"{len(failed)} properties failed; pytest exit {proc.returncode}")
    if proc.returncode:
        print("\n".join(failures(text)) or text[-4000:])
        print(f"fuzz_long: repeat with --seed {seed}")
    return 1 if proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
