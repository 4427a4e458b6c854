"""Outputs written atomically, and the run of a stage's main.

A stage is `python -m pipeline.stages.NAME`: read params.yaml, load inputs, call the library,
write outputs. Outputs are written next to their final place and renamed into it at the end, so
a failed stage leaves nothing half-written; what a killed stage leaves beside them (a folder
`.NAME.tmp-PID-*`, ignored by git and DVC) the next stage run removes.
"""
from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.errors import ConfigError

# Folders below the root (params.yaml) whose children may be atomic_path's temporaries: data/,
# data/<stage>/, data/<stage>/seed<N>/ (the per-model stages; data/cache_l0/seed<N> is written
# into data/cache_l0/), data/scrub/seed<N>/<key>/, reports/, reports/<folder>/ and
# reports/<folder>/seed<N>/ (the head views); not a recursive walk, which would read all of
# data/external/.
TEMP_PARENTS = ("data", "data/*", "data/*/*", "data/scrub/*/*", "reports", "reports/*", "reports/*/*")
_TEMP = re.compile(r"^\..+\.tmp-(\d+)-[^/]*$")


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final` (file or folder); rename it into place only if the
    block succeeds, replacing what was there. The temporary folder's name carries this process's
    id, so that clean_stale_temporaries can tell a killed stage's leftovers from a running one's."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent)) / final.name
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


# How many significant digits a float keeps in the text files of numbers that go into git (a
# scrub's metrics.json, the whitelist's summary.json, the sweep's and breakdown's CSVs;
# docs/reproducibility.md). Finer than what the rebuild check (pipeline.report.compare) tolerates,
# rtol 1e-5, so that a rounding in the last digit never fails it; coarser than what the float32
# engine changes between CPUs (~5e-8 relative in a scrub's metrics), so that a rerun on another CPU
# rewrites most numbers byte for byte.
SIGNIFICANT_DIGITS = 6
CSV_FLOAT_FORMAT = f"%.{SIGNIFICANT_DIGITS}g"


def rounded(obj: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """`obj` with every finite float (also inside dicts, lists and tuples) rounded to `digits`
    significant digits, as `%.{digits}g` prints it: decimal rounding of the float's exact value,
    the same on every machine. Integers, booleans, strings, NaN and infinities are left as they are."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(rounded(v, digits) for v in obj)
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral) and math.isfinite(obj):
        return float(f"{float(obj):.{digits}g}")
    return obj


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def clean_stale_temporaries(root: Path | str = ".") -> list[Path]:
    """Remove atomic_path's temporary folders under `root` (see TEMP_PARENTS) whose process is
    gone: a killed stage's half-written output (the layer-0 cache's is hundreds of MB). Returns
    what it removed."""
    removed = []
    parents = [Path(root)] + [p for pattern in TEMP_PARENTS for p in Path(root).glob(pattern)]
    for parent in parents:
        if parent.is_dir():
            for child in parent.iterdir():
                match = _TEMP.match(child.name)
                if match and child.is_dir() and not process_alive(int(match.group(1))):
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
    return removed


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Stopped(BaseException):
    """SIGTERM (a killed `dvc repro`, a CI timeout) raised where the stage is, like Ctrl-C's
    KeyboardInterrupt, so that atomic_path's cleanup runs before the process ends."""


def _stop(signum: int, frame) -> None:
    raise Stopped(signal.Signals(signum).name)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a ConfigError or a missing input becomes one line on stderr and
    exit status 2; Ctrl-C or SIGTERM one line and 128 + the signal's number, the temporaries of
    the output being written removed. Leftovers of killed stages are removed first."""
    stage = Path(sys.argv[0]).stem
    signal.signal(signal.SIGTERM, _stop)
    try:
        for path in clean_stale_temporaries():
            print(f"removed {path}, left by a stage that was stopped")
        main()
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Stopped) as err:
        name = str(err) if isinstance(err, Stopped) else "SIGINT"
        print(f"error: stage {stage} interrupted ({name}): the output it was writing was not written, "
              f"and DVC reruns the stage", file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
