"""The layout is the architecture (DESIGN §1): imports point one way and kernels know nothing of fastnn.

The test reads every import statement of the package — function-level ones included, since a lazy import
is still a dependency — and checks that the module graph has no cycle.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastnn"
KERNELS = ROOT / "kernels"
ENGINES = PACKAGE / "engines"


def _module_name(path):
    if path.parent == KERNELS:
        return "kernels." + path.stem
    if path.parent == ENGINES:
        return "engines" if path.stem == "__init__" else "engines." + path.stem
    return path.stem if path.parent == PACKAGE else None


def _imports(path):
    """The fastnn modules ``path`` imports (relative imports resolved; ``from . import x`` counts as x)."""
    tree = ast.parse(path.read_text(), str(path))
    in_kernels = path.parent == KERNELS
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1 and (
                (path.parent == ENGINES and node.level == 1) or (node.module or "").split(".")[0] == "engines"):
            # fastnn/engines: ``from .x`` (inside engines) or ``from .engines.x`` is engines.x
            parts = [p for p in (node.module or "").split(".") if p]
            if path.parent == ENGINES and node.level == 1:
                parts = ["engines"] + parts
            if parts and parts[0] == "engines":
                found.add(".".join(parts[:2]) if len(parts) > 1 else "engines")
                if len(parts) == 1:
                    found.update("engines." + alias.name for alias in node.names)
            elif parts:
                found.add(parts[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level >= 1:
            base = (node.module or "").split(".")
            if in_kernels:
                base = ["kernels"] + [b for b in base if b] if node.level == 1 else [b for b in base if b]
            if base == ["kernels"]:
                found.update("kernels." + alias.name for alias in node.names)
            elif base and base[0] == "kernels":
                found.add("kernels." + base[1])
            elif base and base != [""]:
                found.add(base[0])
            else:
                for alias in node.names:
                    found.add(("kernels." if in_kernels else "") + alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastnn."):
            found.add(node.module.split(".")[1])
    return found


def _graph():
    files = sorted(PACKAGE.glob("*.py")) + sorted(KERNELS.glob("*.py"))
    nodes = {_module_name(f): f for f in files if f.stem != "__init__" and f.stem != "__main__"}
    nodes.update({_module_name(f): f for f in sorted(ENGINES.glob("*.py"))})
    return {name: {m for m in _imports(path) if m in nodes and m != name} for name, path in nodes.items()}


def _cycle(graph, within=None):
    """One import cycle (a list of modules) or None; depth-first search over ``within`` (all by default)."""
    nodes = set(graph) if within is None else set(within)
    state = {}

    def visit(n, stack):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n] & nodes):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m, stack)
                if found:
                    return found
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(nodes):
        if n not in state:
            found = visit(n, [])
            if found:
                return found
    return None


def test_the_graph_is_read():
    graph = _graph()
    assert "network" in graph["training"] and "layers" in graph["network"] and "kernels.epoch" in graph["engines.fused"]


@pytest.mark.parametrize("group", [("network", "training", "checkpoint", "io", "distributed"), None])
def test_no_import_cycle(group):
    cycle = _cycle(_graph(), group)
    assert cycle is None, " -> ".join(cycle)


def test_kernels_know_nothing_of_the_python_api():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith("kernels."):
            assert all(d.startswith("kernels.") for d in deps), (name, deps)


def test_lower_modules_do_not_import_upper_ones():
    graph = _graph()
    below_training = ("network", "plan", "layers", "losses", "optimizers", "engines.fused")
    for name in below_training:
        assert not graph[name] & {"training", "estimators", "cli", "distributed"}, (name, graph[name])
    for name in [n for n in graph if n.startswith("engines")]:     # the loop calls its engines, not back
        assert not graph[name] & {"training", "estimators", "cli", "distributed"}, (name, graph[name])
    assert {"engines", "engines.distributed"} <= graph["training"]
    assert "engines.per_layer" in graph["engines.distributed"]


def test_importing_fastnn_starts_no_mpi_and_loads_no_peer():
    """``import fastnn`` (and its CLI, engines and loop) must not initialise MPI — importing mpi4py.MPI runs
    MPI_Init, which attaches the process to a launcher's job and costs ~0.1 s — nor load scikit-learn, torch
    or onnx; those come with the first call that needs them."""
    import subprocess
    import sys
    code = ("import sys, fastnn, fastnn.cli, fastnn.training, fastnn.engines.fused, fastnn.engines.local\n"
            "heavy = [m for m in ('mpi4py.MPI', 'sklearn', 'torch', 'onnx') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


#: what neither ``import fastnn`` nor a fit of the CLI's default network imports: each costs start-up time
#: (scipy.linalg ~0.1-0.2 s, scikit-learn ~0.6 s, matplotlib, torch, onnx more) and comes with the first call
#: that needs it (numba.np.arraymath's BLAS probe no longer imports scipy.linalg: kernels/_jit.py)
NOT_AT_START = ("scipy.linalg", "sklearn", "matplotlib", "torch", "onnx", "onnxruntime", "tqdm", "mpi4py",
                "fastnn.estimators", "fastnn.plotting", "fastnn.checkpoint", "fastnn.distributed",
                "fastnn.engines.distributed")


def test_import_and_a_default_fit_load_only_what_they_use(tmp_path):
    """``import fastnn`` and then ``fastnn train -q`` in the same process leave every module of NOT_AT_START
    unimported: with an empty Numba cache, where the compile loads Numba's registries (which then did not
    pull in scipy.linalg), and again on the cache it filled, where the kernels load without the registries
    (kernels/_jit.py, ``_KernelCache.load_overload``)."""
    import os
    import subprocess
    import sys
    code = ("import sys\n"
            f"names = {NOT_AT_START!r}\n"
            "loaded = lambda: [m for m in names if m in sys.modules]\n"
            "import fastnn, fastnn.cli\n"
            "at_import = loaded()\n"
            "assert fastnn.cli.main(['train', '-q', '--epochs', '2']) == 0\n"
            "print([at_import, loaded(), 'numba.np.arraymath' in sys.modules])\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    for registries in (True, False):      # cold: compiled (registries loaded); warm: loaded from the cache
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                             cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == f"[[], [], {registries}]", out.stdout
