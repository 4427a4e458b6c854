"""Compare the numbers a rebuild wrote with the committed ones, within a stated tolerance.

    dvc repro && python -m pipeline.report.compare            # against HEAD
    python -m pipeline.report.compare --against d300bda       # against another commit

Every JSON and CSV file under data/ and reports/ that git tracks at the commit compared against
(metrics, head scores, the sweep, the results tables, train logs) is read twice, as committed and
as in the workspace. Numbers match when |rebuilt − committed| ≤ atol + rtol·|committed|; booleans,
keys and shapes must be equal, and so must strings but for the numbers generated sentences print
(a claim's reason: "refined2.k − refined1.k = −0.6 (−2.4 to 1.2)"), each allowed one unit of its
last printed decimal besides the tolerance (integers, from the configuration, must be equal).
The CPU's matrix-multiply kernels change float32 sums in their last bits: between an AMD AVX2
and an AMD AVX-512 CPU the largest difference was 2.2e-4 % points, in a bootstrap interval's
bound. The default tolerance, rtol 1e-5 and atol 1e-4 (a ten-thousandth of a nat or of a %
point, far below the one decimal reports show), lets that through and nothing a reader could see. Prints the largest difference and every number beyond the
tolerance; exit status 1 if there is one, 2 if a file cannot be compared.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RTOL, ATOL = 1e-5, 1e-4
FOLDERS = ("data", "reports")


@dataclass(frozen=True)
class Difference:
    file: str
    key: str
    committed: object
    rebuilt: object
    size: float  # |rebuilt − committed| / (atol + rtol·|committed|): above 1 is beyond the tolerance

    def __str__(self) -> str:
        return f"{self.file} {self.key}: committed {self.committed!r}, rebuilt {self.rebuilt!r}"


def compare_values(committed, rebuilt, key: str, file: str, rtol: float, atol: float) -> Iterator[Difference]:
    """Every leaf of two JSON values, paired by key path (`a/0/b`)."""
    if isinstance(committed, dict) and isinstance(rebuilt, dict):
        for k in sorted(set(committed) | set(rebuilt)):
            sub = f"{key}/{k}" if key else str(k)
            if k not in committed or k not in rebuilt:
                yield Difference(file, sub, committed.get(k), rebuilt.get(k), math.inf)
            else:
                yield from compare_values(committed[k], rebuilt[k], sub, file, rtol, atol)
    elif isinstance(committed, list) and isinstance(rebuilt, list):
        if len(committed) != len(rebuilt):
            yield Difference(file, f"{key} (length)", len(committed), len(rebuilt), math.inf)
        for i, (a, b) in enumerate(zip(committed, rebuilt)):
            yield from compare_values(a, b, f"{key}/{i}" if key else str(i), file, rtol, atol)
    elif _number(committed) and _number(rebuilt):
        if math.isnan(committed) or math.isnan(rebuilt):
            size = 0.0 if math.isnan(committed) and math.isnan(rebuilt) else math.inf
        else:
            size = abs(rebuilt - committed) / (atol + rtol * abs(committed))
        yield Difference(file, key, committed, rebuilt, size)
    elif isinstance(committed, str) and isinstance(rebuilt, str) and committed != rebuilt:
        yield Difference(file, key, committed, rebuilt, sentence_size(committed, rebuilt, rtol, atol))
    else:
        yield Difference(file, key, committed, rebuilt, 0.0 if committed == rebuilt else math.inf)


# A number as generated sentences print it ("−0.6", "97.2%"): the claims' reasons quote measured
# values at one decimal (pipeline.scrub.claims).
_PRINTED = re.compile(r"[−-]?\d+(?:\.(\d+))?")


def sentence_size(committed: str, rebuilt: str, rtol: float, atol: float) -> float:
    """Two generated sentences that differ only in the numbers they print: the largest difference
    as a share of what it may be. A number printed at d decimals from two values within the
    tolerance can differ by one unit of its last decimal (a rounding edge crossed), so that much is
    allowed besides the tolerance. Different words are an infinite difference."""
    if _PRINTED.sub("#", committed) != _PRINTED.sub("#", rebuilt):
        return math.inf
    size = 0.0
    for a, b in zip(_PRINTED.finditer(committed), _PRINTED.finditer(rebuilt)):
        x, y = (float(m.group().replace("−", "-")) for m in (a, b))
        # measured values are printed with decimals; integers (thresholds, offsets) are the config's
        unit = max(10.0 ** -len(m.group(1)) if m.group(1) else 0.0 for m in (a, b))
        size = max(size, abs(x - y) / (atol + rtol * abs(x) + unit))
    return size


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(text: str) -> list[dict]:
    # an empty field is missing; labels such as "NA" stay text (as the review page reads them)
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    return json.loads(frame.to_json(orient="records"))


def compare_file(path: str, committed: str, rebuilt: str, rtol: float = RTOL, atol: float = ATOL) -> list[Difference]:
    read = json.loads if path.endswith(".json") else table
    return list(compare_values(read(committed), read(rebuilt), "", path, rtol, atol))


def committed_files(rev: str, root: Path) -> list[str]:
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", *FOLDERS], cwd=root,
                             capture_output=True, text=True, check=True).stdout.split()
    return [name for name in listing if name.endswith((".json", ".csv"))]


def compare(rev: str = "HEAD", root: Path = Path("."), rtol: float = RTOL, atol: float = ATOL) -> list[Difference]:
    """Every number of every committed file against the workspace's; a missing file is a difference."""
    out = []
    for name in committed_files(rev, root):
        committed = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=root, capture_output=True, text=True,
                                   check=True).stdout
        path = root / name
        if not path.exists():
            out.append(Difference(name, "(file)", "present", "missing", math.inf))
            continue
        out.extend(compare_file(name, committed, path.read_text(), rtol, atol))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="HEAD", help="the commit whose numbers count as committed")
    parser.add_argument("--rtol", type=float, default=RTOL)
    parser.add_argument("--atol", type=float, default=ATOL)
    args = parser.parse_args(argv)
    try:
        differences = compare(args.against, Path("."), args.rtol, args.atol)
    except (subprocess.CalledProcessError, ValueError) as err:
        print(f"error: cannot compare with {args.against}: {err}", file=sys.stderr)
        return 2
    numeric = [d for d in differences if _number(d.committed) and _number(d.rebuilt)]
    beyond = [d for d in differences if d.size > 1]
    files = len({d.file for d in differences})
    print(f"{len(differences)} values in {files} files compared with {args.against} "
          f"(|rebuilt − committed| ≤ {args.atol:g} + {args.rtol:g}·|committed|)")
    if numeric:
        largest = max(numeric, key=lambda d: abs(d.rebuilt - d.committed))
        print(f"largest difference: {abs(largest.rebuilt - largest.committed):.3g} at {largest}")
        closest = max(numeric, key=lambda d: d.size)
        print(f"nearest the tolerance: {closest.size:.0%} of it at {closest}")
    for d in beyond:
        print(f"beyond the tolerance: {d}", file=sys.stderr)
    return 1 if beyond else 0


if __name__ == "__main__":
    sys.exit(main())
