"""Thread counts as a user means them (issue 18 item 3), variants beside test_threads.py's: the CPU quota of a
cgroup below the root of /sys/fs/cgroup (systemd-run -p CPUQuota=, a Kubernetes pod or Slurm job without its
own cgroup namespace: only the root's file was read, so the quota was missed and every core used), in cgroup
v2 and v1 layouts, the smallest of a cgroup and its ancestors; and a count that is no integer refused as a
TypeError (it is a ValueError too, as before)."""
import builtins

import numpy as np
import pytest

import fastnn as fnn
from fastnn import threads


@pytest.fixture
def cgroup_files(monkeypatch):
    """Fake /proc/self/cgroup and /sys/fs/cgroup: fill the returned dict (path -> text); other files under
    them do not exist."""
    import io
    files = {}
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        path = str(path)
        if path in files:
            return io.StringIO(files[path])
        if path.startswith(("/sys/fs/cgroup", "/proc/self/cgroup")):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)
    return files


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_a_quota_below_the_cgroup_root_is_read(cgroup_files, layout):
    if layout == "v2":
        cgroup_files["/proc/self/cgroup"] = "0::/system.slice/run-u7.scope\n"
        cgroup_files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
        cgroup_files["/sys/fs/cgroup/system.slice/run-u7.scope/cpu.max"] = "100000 100000\n"
    else:
        cgroup_files["/proc/self/cgroup"] = "5:memory:/other\n4:cpu,cpuacct:/slurm/uid_0/job_7\n0::/\n"
        base = "/sys/fs/cgroup/cpu,cpuacct/slurm/uid_0/job_7/"
        cgroup_files[base + "cpu.cfs_quota_us"] = "50000\n"
        cgroup_files[base + "cpu.cfs_period_us"] = "100000\n"
    assert threads._cgroup_cpu_quota() == 1


def test_the_smallest_quota_of_a_cgroup_and_its_ancestors_counts(cgroup_files):
    cgroup_files["/proc/self/cgroup"] = "0::/kubepods/pod1/c1\n"
    cgroup_files["/sys/fs/cgroup/kubepods/pod1/c1/cpu.max"] = "400000 100000\n"
    cgroup_files["/sys/fs/cgroup/kubepods/pod1/cpu.max"] = "150000 100000\n"      # 1.5 cores: 2
    cgroup_files["/sys/fs/cgroup/kubepods/cpu.max"] = "max 100000\n"
    assert threads._cgroup_cpu_quota() == 2
    cgroup_files["/proc/self/cgroup"] = "0::/\n"         # a container's own namespace: the root's file
    assert threads._cgroup_cpu_quota() is None
    cgroup_files["/sys/fs/cgroup/cpu.max"] = "100000 100000\n"
    assert threads._cgroup_cpu_quota() == 1


def test_an_unreadable_cgroup_list_falls_back_to_the_root(cgroup_files):
    cgroup_files["/sys/fs/cgroup/cpu.max"] = "200000 100000\n"       # no /proc/self/cgroup at all
    assert threads._cgroup_cpu_quota() == 2
    cgroup_files["/proc/self/cgroup"] = "garbage\n0::relative/path\n"
    assert threads._cgroup_cpu_quota() == 2


@pytest.mark.parametrize("bad", ["2", 1.5, 2.0, np.float64(2.0), True, np.bool_(True), None, b"2", [2]])
def test_a_count_that_is_no_integer_is_a_type_error(bad):
    before = fnn.get_num_threads()
    for call in (fnn.set_num_threads, fnn.num_threads):
        with pytest.raises(TypeError, match="n must be a positive integer") as info:
            call(bad)
        assert isinstance(info.value, ValueError)          # as before: both kinds catch it
        assert type(bad).__name__ in str(info.value)
    assert fnn.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, np.int32(0), 10 ** 30])
def test_an_integer_out_of_range_is_a_value_error(bad):
    for call in (fnn.set_num_threads, fnn.num_threads):
        with pytest.raises(ValueError, match="n must be") as info:
            call(bad)
        assert not isinstance(info.value, TypeError)


def _default_in_child(env, preexec=None):
    import os
    import subprocess
    import sys
    environ = {k: v for k, v in os.environ.items() if k not in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS", "OMP_THREAD_LIMIT",
        "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", "import fastnn; print(fastnn.get_num_threads())"], env=environ,
                         capture_output=True, text=True, timeout=120, preexec_fn=preexec)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(threads.max_threads() < 2 or threads.cpu_count() < 2, reason="needs 2 cores for Numba")
@pytest.mark.parametrize("variable", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"])
def test_processes_of_an_mpi_launch_on_one_node_share_its_cores(variable):
    """`mpiexec -n 2 python script.py`: each process's default was every core (the CLI's --threads default
    already divided them): two ranks ran 2 x cores threads. A count given explicitly is kept."""
    cores = min(threads.cpu_count(), threads.max_threads())
    assert _default_in_child({variable: "2"}) == max(1, cores // 2)
    assert _default_in_child({variable: "1"}) == cores
    assert _default_in_child({variable: "2", "FASTNN_NUM_THREADS": str(cores)}) == cores


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or threads.cpu_count() < 2,
                    reason="needs sched_setaffinity and 2 cores")
def test_a_rank_the_launcher_bound_to_its_cores_is_not_divided_again():
    import os
    one = {min(os.sched_getaffinity(0))}
    assert _default_in_child({"MPI_LOCALNRANKS": "2"}, preexec=lambda: os.sched_setaffinity(0, one)) == 1
