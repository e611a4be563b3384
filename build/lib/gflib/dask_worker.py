"""One GPU per Dask worker process: a preload for ``dask worker``.

    CUDA_VISIBLE_DEVICES=0,1,2,3 dask worker tcp://host:8786 --nthreads 1 --nworkers 4 \\
        --name $(hostname) --preload gflib.dask_worker

``dask worker --nworkers G --name NAME`` names its processes ``NAME-0`` ... ``NAME-(G-1)``; this
preload runs in each of them before it takes a task and narrows ``CUDA_VISIBLE_DEVICES`` to the
process's own GPU (the i-th of the listed devices, or device i when none is listed), so each
worker's ``cuda`` is one GPU of its own. It must run before the process first touches CUDA, as a
preload does.
"""
from __future__ import annotations

import os

ENV = "CUDA_VISIBLE_DEVICES"


def gpu_for(name, visible: str | None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of the worker called ``name`` (``NAME-i`` or ``i``) among the
    ``visible`` devices (a comma-separated list, or None for all)."""
    index = str(name).rsplit("-", 1)[-1]
    if not index.isdigit():
        raise ValueError(f"worker name {name!r} has no index: start workers with --nworkers G "
                         "--name NAME (they are named NAME-0 ... NAME-(G-1))")
    if not visible:
        return index
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if int(index) >= len(devices):
        raise ValueError(f"worker {name!r} is worker {index}, but {ENV}={visible!r} lists "
                         f"{len(devices)} GPUs: give --nworkers at most {len(devices)}")
    return devices[int(index)]


def dask_setup(worker) -> None:
    """Dask's preload hook: pin this worker process to its GPU (see the module doc)."""
    os.environ[ENV] = gpu_for(worker.name, os.environ.get(ENV))
