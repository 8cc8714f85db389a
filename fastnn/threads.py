"""Thread counts: what ``fnn.set_num_threads`` and ``fnn.num_threads`` mean, and how many threads a fit uses.

* One count for the process: ``set_num_threads(n)`` holds for every Python thread's fits, predicts and
  evaluates (a web server's workers, a thread pool); ``with num_threads(n):`` overrides it for one block
  of one thread (of one asyncio task: the blocks are a context variable). Without either, the default is
  the cores this process may use (its affinity mask and cgroup quota; shared by the processes an MPI
  launcher started on the node unless it bound them), bounded by the usual thread variables where they are
  set (``default_threads``).
* The count is read when a call starts and passed down: the fused kernel's workers (``batch_parallel_threads``)
  and the BLAS thread count of each GEMM (``blas_threads``, passed with the call) come from it, never from
  Numba's per-thread setting.
* The fused epoch kernel splits every mini-batch over ``batch_parallel_threads`` threads of its own
  (kernels/epoch_parallel.py), each running single-threaded GEMMs: one thread pool at a time, never BLAS's
  spinning threads beside fastnn's. Networks too small for the split to pay (``MIN_ROWS_PER_THREAD``,
  ``MIN_MACS_PER_THREAD``) run the serial kernel, whose GEMMs get ``n`` BLAS threads when large enough to
  pay for waking them (kernels/_blas.py, ``MIN_THREADED_MACS``).
* No Numba ``parallel=True`` region runs (``parallel_pays``): its OpenMP runtime would make a later
  ``fork()`` unsafe. fastnn's own workers are joined before a call returns, and OpenBLAS re-creates its
  pool in a forked child, so a child forked after any fastnn call works.
* Results are deterministic for a given thread count; a different count can change the last bits.
* A busy core: the batch-parallel kernel's threads yield instead of spinning, and when its first thread
  has waited for the others longer than it worked, it finishes the epoch alone (same numbers).
"""
import contextlib
import contextvars
import os
import threading
import time

import numba

#: environment variables that bound fastnn's default thread count, first match wins for FASTNN_NUM_THREADS;
#: the others (set by process-pool workers such as loky's, job schedulers and users) are all honoured:
#: the smallest count wins.
_ENV_VARIABLES = ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMBA_NUM_THREADS")

_process_threads = None          # set_num_threads' n, for every thread of the process (None: the default)
#: the open ``num_threads`` blocks: a tuple of (thread ident, block object, n), innermost last. A context
#: variable, not a thread-local: asyncio tasks that share a thread each see their own blocks (every task runs
#: in its own copy of the context); the thread ident keeps a block to the thread that opened it where a new
#: thread starts from a copy of its parent's context (Python >= 3.14's thread_inherit_context).
_blocks = contextvars.ContextVar("fastnn_num_threads_blocks", default=())
_lock = threading.Lock()
_warned_env = set()              # FASTNN_NUM_THREADS values already warned about


def cpu_count():
    """Cores this process may run on: its affinity mask (taskset, cpusets) and its cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _recent_cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else max(1, cores)


#: how long a read of the cgroup quota is reused: the read costs ~25 µs, and every fit, predict and
#: GEMM-calling layer asks for the thread count; a quota changed at run time is seen within this time
_QUOTA_REUSE_SECONDS = 1.0
_quota_read = (-float("inf"), None)      # (time.monotonic() of the read, its value)


def _recent_cgroup_cpu_quota():
    global _quota_read
    read_at, quota = _quota_read
    now = time.monotonic()
    if now - read_at > _QUOTA_REUSE_SECONDS:
        quota = _cgroup_cpu_quota()
        _quota_read = (now, quota)
    return quota


def _cgroup_cpu_quota():
    """The CPU quota of this process's cgroup and of every cgroup above it, the smallest, rounded up to whole
    cores (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or None when there is none
    (or none can be read). The cgroup is found in /proc/self/cgroup: in a container with its own cgroup
    namespace it is the root of /sys/fs/cgroup, but ``systemd-run -p CPUQuota=``, a Kubernetes or Slurm job
    without one, and docker on the host's namespace put the quota in a cgroup below the root."""
    quotas = [q for q in map(_quota_in, _cgroup_quota_files()) if q is not None]
    return min(quotas) if quotas else None


#: where cgroup v1 mounts the cpu controller (one of these, by distribution)
_V1_MOUNTS = ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu")


def _cgroup_quota_files():
    """(quota file, period file or None) of this process's cgroup and its ancestors, v2 then v1, most
    specific first; the mount roots always (a namespaced container's own cgroup is the root)."""
    v2, v1 = ["/"], ["/"]
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3 or not parts[2].startswith("/"):
                    continue
                if parts[0] == "0" and parts[1] == "":
                    v2 = _ancestors(parts[2])
                elif "cpu" in parts[1].split(","):
                    v1 = _ancestors(parts[2])
    except (OSError, ValueError):
        pass
    files = [("/sys/fs/cgroup" + path.rstrip("/") + "/cpu.max", None) for path in v2]
    for mount in _V1_MOUNTS:
        files += [(mount + path.rstrip("/") + "/cpu.cfs_quota_us", mount + path.rstrip("/") + "/cpu.cfs_period_us")
                  for path in v1]
    return files


def _ancestors(path):
    """'/a/b' -> ['/a/b', '/a', '/'] (a path with '..' in it: the root only)."""
    parts = [p for p in path.split("/") if p]
    if ".." in parts or "." in parts:
        return ["/"]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _quota_in(files):
    """Whole cores of one cgroup's quota ``files`` (quota file, period file or None), or None when it has no
    quota or cannot be read."""
    quota_path, period_path = files
    try:
        with open(quota_path) as f:
            fields = f.read().split()
        if period_path is not None:
            with open(period_path) as f:
                fields.append(f.read().strip())
        if not fields or fields[0] in ("max", "-1"):
            return None
        quota, period = int(fields[0]), int(fields[1])
        return max(1, -(-quota // period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError, IndexError):
        return None


def _env_threads(name):
    """A positive int from the environment variable ``name`` (its first comma-separated field, as OpenMP
    reads OMP_NUM_THREADS), or None when unset or not a positive number. FASTNN_NUM_THREADS, fastnn's own,
    set to something else (0, -1, 1.5, "all") is ignored with one RuntimeWarning naming it."""
    raw = os.environ.get(name, "")
    value = raw.split(",")[0].strip()
    if value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    if name == "FASTNN_NUM_THREADS" and raw.strip() and raw not in _warned_env:
        _warned_env.add(raw)
        from ._checks import warn_at_caller
        warn_at_caller(f"FASTNN_NUM_THREADS must be a positive integer, got {raw!r}: ignored (fastnn uses the "
                       f"default thread count)", RuntimeWarning)
    return None


def max_threads():
    """The most threads ``set_num_threads`` accepts: the cores Numba was started with."""
    return numba.config.NUMBA_NUM_THREADS


def default_threads():
    """The thread count fastnn uses when ``set_num_threads`` was not called: FASTNN_NUM_THREADS if set,
    else the cores this process may use (affinity mask, cgroup quota; divided by the processes an MPI
    launcher started on this node, MPI_LOCALNRANKS / OMPI_COMM_WORLD_LOCAL_SIZE, unless it bound each to its
    cores) bounded by OMP_NUM_THREADS, OMP_THREAD_LIMIT, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and
    NUMBA_NUM_THREADS where they are set (loky's pool workers set them to their share of the machine)."""
    explicit = _env_threads("FASTNN_NUM_THREADS")
    if explicit is not None:
        return max(1, min(explicit, max_threads()))
    cores = cpu_count()
    local = _launcher_local_ranks()
    if local > 1 and not _bound():      # K processes of an MPI launch on this node share its cores
        cores = max(1, cores // local)
    counts = [cores, max_threads()] + [c for c in map(_env_threads, _ENV_VARIABLES) if c is not None]
    return max(1, min(counts))


#: variables in which MPI launchers say how many of their processes run on this node (MPICH's and Intel MPI's
#: Hydra, Open MPI)
_LOCAL_RANKS_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def _launcher_local_ranks():
    """The processes an MPI launcher started on this node (1 outside a launch): ``mpiexec -n K python
    script.py`` on one node runs K processes whose default thread counts must share its cores, as the CLI's
    ``--threads`` default does (fastnn.distributed.threads_per_rank)."""
    for name in _LOCAL_RANKS_VARIABLES:
        n = _env_threads(name)
        if n is not None:
            return n
    return 1


def _bound():
    """Whether this process is bound to fewer cores than the machine has (a launcher's --bind-to, taskset):
    its affinity mask is then already its share, not to be divided again."""
    if not hasattr(os, "sched_getaffinity"):
        return False
    return len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)


def _checked_count(n):
    from ._checks import positive_int
    n = positive_int(n, "n")
    limit = max_threads()
    if n > limit:
        raise ValueError(f"n must be at most {limit} (the cores Numba was started with), got {n}")
    return n


def set_num_threads(n):
    """Use ``n`` threads for every fit, predict and evaluate of this process, whichever Python thread runs
    them (a web server's workers, a thread pool): fastnn's own workers and the BLAS calls of its kernels,
    whose count is passed with each call. Other BLAS libraries loaded in the process (NumPy's, SciPy's) are
    limited to ``n`` too, through threadpoolctl. ``with num_threads(n):`` sets a count for one block of
    one thread instead."""
    global _process_threads
    from .kernels import _blas
    n = _checked_count(n)
    with _lock:
        _process_threads = n
        numba.set_num_threads(n)      # Numba's own count (per Python thread; no fastnn kernel reads it)
    _blas.set_blas_threads(n)         # the kernels' library: between two of fastnn's GEMMs
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().lib_controllers:      # the others (NumPy's, SciPy's)
        if lib.user_api == "blas" and not _blas.is_kernels_library(lib.filepath):
            lib.set_num_threads(n)


def get_num_threads():
    """The number of threads fastnn uses in the calling thread: the innermost ``num_threads`` block's,
    else ``set_num_threads``' (for the whole process), else ``default_threads()``."""
    blocks = _blocks.get()
    if blocks:
        me = threading.get_ident()
        for ident, _, n in reversed(blocks):
            if ident == me:
                return n
    n = _process_threads
    return default_threads() if n is None else n


class num_threads(contextlib.ContextDecorator):
    """``with fnn.num_threads(n): ...`` (or ``@fnn.num_threads(n)`` on a function): fits, predicts and
    evaluates that this thread (this asyncio task)
    runs inside the block use ``n`` threads; other threads and tasks, and this one after the block, keep
    theirs. Blocks nest, in any order of exit; one object may be entered by several threads or tasks at once.
    ``n`` is checked when the object is made (``num_threads(0)`` raises at once, as ``set_num_threads(0)``
    does). As with ``decimal.localcontext``, a generator suspended inside a block (a ``yield`` in the
    ``with``) leaves the block open for its caller until it resumes and leaves it."""

    def __init__(self, n):
        self.n = _checked_count(n)

    def __enter__(self):
        _blocks.set(_blocks.get() + ((threading.get_ident(), self, self.n),))
        return self.n

    def __exit__(self, *exc):
        blocks, me = _blocks.get(), threading.get_ident()
        for i in range(len(blocks) - 1, -1, -1):
            if blocks[i][1] is self and blocks[i][0] == me:
                _blocks.set(blocks[:i] + blocks[i + 1:])
                return False
        raise RuntimeError("num_threads: __exit__ without a matching __enter__ in this thread (and asyncio "
                           "task): a num_threads block must be left where it was entered")


def _hold_numba_compiler_lock_across_fork():
    """A fork waits for a kernel that another thread is compiling or loading from the cache (Numba's
    compiler lock, held meanwhile): a child forked in the middle would inherit the lock held by a thread
    it does not have, and its first kernel call would wait for it forever. Taken before ``fork``, released
    after it in the parent and the child (the same thread, its owner in both)."""
    try:
        from numba.core.compiler_lock import global_compiler_lock
        acquire, release = global_compiler_lock.acquire, global_compiler_lock.release
    except (ImportError, AttributeError):       # another Numba layout: nothing to hold
        return
    os.register_at_fork(before=acquire, after_in_parent=release, after_in_child=release)


if hasattr(os, "register_at_fork"):
    _hold_numba_compiler_lock_across_fork()


def parallel_pays(size):
    """Whether an elementwise pass over ``size`` elements should use a ``parallel=True`` kernel: never.

    Numba's parallel kernels run on its threading layer (GNU OpenMP here), which makes every later fork()
    unsafe ("fork() called from a process already using GNU OpenMP"; multiprocessing forks by default on
    Linux) and whose thread count is per Python thread; DESIGN §4 wants fastnn's own workers instead. The
    elementwise passes of the per-layer path are cheap beside their GEMMs, which BLAS threads."""
    return False


#: batch-parallel epochs need at least this many rows per thread, this many multiply-adds per step and
#: thread (below, splitting the batch costs more than it saves: 64-128-10 at batch 64, 0.9M per thread,
#: ran 0.89-1.07x as fast on 2 threads as on one, 100-100-5 at batch 200, 3.1M, 1.2-1.35x), and this many
#: per epoch and thread (the other threads start at every epoch, ~0.1-0.2 ms: scikit-learn's digits example,
#: 26M per epoch and thread, fitted in 0.27 s on 2 threads against 0.19 s on one). benchmarks/README.md,
#: "The batch-parallel kernel".
MIN_ROWS_PER_THREAD = 8
MIN_MACS_PER_THREAD = 1 << 20
MIN_EPOCH_MACS_PER_THREAD = 1 << 27


def batch_parallel_threads(widths, batch_rows, samples):
    """How many threads the fused kernel splits each mini-batch over (1: the serial kernel around
    multi-threaded BLAS) for a network of layer ``widths`` (input first), mini-batches of ``batch_rows``
    rows and epochs of ``samples`` samples, at the current thread count. Always 1 when one-thread GEMMs
    cannot run concurrently (kernels._blas.concurrent_one_thread_gemms() is False)."""
    n = get_num_threads()
    per_sample = 3 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    while n > 1 and (batch_rows < n * MIN_ROWS_PER_THREAD or batch_rows * per_sample < n * MIN_MACS_PER_THREAD
                     or samples * per_sample < n * MIN_EPOCH_MACS_PER_THREAD):
        n -= 1
    if n > 1:
        from .kernels import _blas
        if not _blas.concurrent_one_thread_gemms():
            return 1
    return n


def off_main_thread():
    """Called as a fit or predict starts: outside the main thread, other threads may run fastnn at the
    same time, so their one-thread GEMMs should not take turns (kernels._blas.concurrent_one_thread_gemms)."""
    if threading.current_thread() is not threading.main_thread():
        from .kernels import _blas
        _blas.concurrent_one_thread_gemms()


def blas_threads():
    """The most BLAS threads one GEMM of fastnn may use in the calling thread (``get_num_threads``); the
    kernels pass it with every GEMM."""
    return get_num_threads()
