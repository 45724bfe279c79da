"""How many intra-op threads torch and ONNX Runtime use: the cores this process may run on, or a setting.

Oversubscription is the costly mistake on a small machine: two workers that each start one thread
per core spin on each other's cores (bench/RESULTS-llm.md measured 0.06 against 0.52 terms/s). So
the default follows the CPU affinity mask (a container's or ``taskset``'s share, not the host's
count), and a local Dask cluster gives each of its workers an equal share (``worker_share``).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV = "ETLNORM_THREADS"  # what a cluster sets for its workers (the ``threads`` setting's variable)


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(configured: int) -> int:
    """``configured`` when above 0; else what this process was given (``ETLNORM_THREADS``, as a
    cluster sets it for a worker whose settings were made elsewhere, then ``OMP_NUM_THREADS``);
    else every available core."""
    if configured > 0:
        return configured
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return available_cores()


def apply_threads(configured: int) -> int:
    """Set torch's intra-op threads to ``resolve_threads(configured)`` once per process and return it
    (ONNX Runtime sessions are given the same number when they are made)."""
    import torch

    n = resolve_threads(configured)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.debug("torch intra-op threads: %d", n)
    return n


def worker_share(workers: int, threads_per_worker: int = 1) -> int:
    """Intra-op threads for each of ``workers`` local processes running ``threads_per_worker`` tasks
    at once: the available cores split between them, at least one."""
    return max(1, available_cores() // max(1, workers * threads_per_worker))
