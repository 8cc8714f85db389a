"""Data-parallel training on MPI: ``DistributedTrainer`` and its helpers (the implementation lives in
fastnn.engines.distributed; this module is the public import path). Importing it without mpi4py raises
ImportError with the install hint."""
from .engines.distributed import MPI_ERROR as _MPI_ERROR

if _MPI_ERROR is not None:  # pragma: no cover - exercised only where mpi4py is missing
    raise ImportError(_MPI_ERROR)

from .engines.distributed import (DistributedError, DistributedTrainer, MPIRun, open_array,  # noqa: E402
                                  shard_range, threads_per_rank, world)

__all__ = ["DistributedTrainer", "DistributedError", "shard_range", "open_array", "threads_per_rank", "world",
           "MPIRun"]
