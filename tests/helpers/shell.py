"""Running the project's commands from tests: a failure shows the command's last output."""
from __future__ import annotations

import os
import subprocess


def one_thread(**extra: str) -> dict:
    """The test process's environment with one OpenMP thread (the tests share two cores), plus
    `extra` (e.g. PYTHONPATH, HF_HOME)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def sh(*cmd, cwd, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd` (one thread unless `env` says otherwise); with `check`, a non-zero exit
    fails the test with the end of stdout and stderr."""
    env = env if env is not None else one_thread()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


# Another CPU, emulated on this one (docs/reproducibility.md): torch's own kernels (ATen: softmax,
# layer norm, exp, …) and numpy's loops (log, exp) limited to AVX2, oneMKL and oneDNN too. On a
# machine with AVX-512 their results differ from the default ones in the last bits, as an AVX2-only
# CPU's do: on this project's AMD EPYC, the old code under it rebuilt the AVX2 machine's whitelist
# and layer-0 cache byte for byte. On a machine without AVX-512 it is that machine itself. numpy
# names its AVX-512 groups X86_V4 and AVX512_ICL from 2.4, the rest before; each ignores the others.
EMULATED_AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_SPR",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def emulated_avx2(**extra: str) -> dict:
    """one_thread's environment on the emulated AVX2 CPU (EMULATED_AVX2), plus `extra`."""
    return one_thread(**EMULATED_AVX2, **extra)
