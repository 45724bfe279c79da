"""Intra-op threads follow the cores a process may use, its cluster's share, or the setting."""

from __future__ import annotations

import os
import subprocess
import sys

from etlnorm.threads import available_cores, resolve_threads, worker_share

PROBE = ("from etlnorm.cascade.encoder import load_encoder; import torch; "
         "e = load_encoder(None, device='cpu'); print(torch.get_num_threads(), e.encode(['seizure']).shape)")  # fmt: skip


def probe(env: dict[str, str], *prefix: str) -> str:
    """Load the real encoder in a fresh process; its torch threads and one vector's shape."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ETLNORM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([*prefix, sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_auto_is_the_affinity_mask_and_a_setting_or_variable_wins(monkeypatch) -> None:
    monkeypatch.delenv("ETLNORM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads(0) == available_cores() == len(os.sched_getaffinity(0))
    assert resolve_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(0) == 2
    monkeypatch.setenv("ETLNORM_THREADS", "1")
    assert resolve_threads(0) == 1 and resolve_threads(4) == 4


def test_workers_split_the_cores_never_below_one() -> None:
    cores = available_cores()
    for workers in (1, 2, 3, 8, 64):
        share = worker_share(workers)
        assert share >= 1 and (share * workers <= cores or share == 1)
    assert worker_share(1) == cores


def test_the_encoder_runs_on_the_cores_it_is_given() -> None:
    assert probe({}, "taskset", "-c", "0") == "1 (1, 384)"  # one core allowed: one thread, not the host's count
    assert probe({"ETLNORM_THREADS": "1"}) == "1 (1, 384)"  # a cluster worker's share
    assert probe({}) == f"{available_cores()} (1, 384)"
