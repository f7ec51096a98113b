"""What every benchmark prints about the machine it ran on (STYLE.md: a speed claim names its CPU)."""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """CPU model name and its widest x86 vector extension (or the machine type elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith(("model name", "Model", "CPU part"))), platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else platform.machine()
    return f"{name} ({simd}, {len([ln for ln in info.splitlines() if ln.startswith('processor')])} logical CPUs)"


def blas_kernels() -> str:
    """The BLAS libraries numpy/scipy use and the kernels they run (``OPENBLAS_CORETYPE=Haswell``
    runs OpenBLAS's AVX2 kernels on an AVX-512 CPU, the closest thing to an AVX2-only machine)."""
    from threadpoolctl import threadpool_info

    libs = {f"{lib['internal_api']} {lib.get('architecture') or ''}".strip()
            for lib in threadpool_info() if lib.get("user_api") == "blas"}
    return ", ".join(sorted(libs)) or "unknown"
