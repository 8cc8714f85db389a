"""Crash-safe training checkpoints with exact resume (``fit(..., checkpoint=PATH, checkpoint_every=N)``).

A checkpoint is an ordinary fastnn model file (fastnn.io: safetensors, no pickle, written atomically:
temporary file, fsync, rename) whose ``extra`` metadata holds the training state under the key
"checkpoint"::

    {"version": 1,
     "epoch": 7,                       # epochs completed
     "rng": {...},                     # the shuffling generator's state before epoch 8 draws its order
     "partial": null or {              # progress inside epoch 8 (written on Ctrl-C by the per-layer path)
         "batches": 5, "loss_sum": 3.2, "correct": 140},
     "settings": {...},                # what must match to resume (see ``settings``)
     "history_dropped": {"loss": 19000, ...},   # epochs left out at the start of each history list
     "lr": 0.01,                       # the optimizer's rate after the epoch (a callback may have set it)
     "stopped": false,                 # a callback stopped the fit at ``epoch``: a rerun is finished
     "callbacks": [{"type": "EarlyStopping", "config": {...}, "state": {...}}, ...],
                                       # every callback with state_dict() / load_state_dict(state)
     "threads": 2,                     # fastnn threads of the writer (informational)
     "ranks": 2,                       # a distributed run's rank count, or null (informational: fastnn info
                                       # shows ranks x local batch; settings.batch_size is the global batch)
     "start": "9f2c..."}               # state_fingerprint of the network the run STARTED from (null: unknown)

Which state a ``fit(checkpoint=P)`` starts from, when P holds a checkpoint whose settings match (``read``):

(a) the network is in the state P's run started from (``start``; a restarted script): resume, as always —
    a finished run returns its final state at once;
(b) the network is in the state P holds (the same process after Ctrl-C, or a Keras-style loop
    ``for _: net.fit(X, y, epochs=1, checkpoint=P)``), or in the state this process's fit that wrote P
    returned it in (after on_train_end: EarlyStopping may restore its best weights, which its state in P
    holds): an unfinished run resumes; after a finished one (its epochs reached, or stopped by a callback)
    a NEW run starts from the current state and overwrites P — nothing is lost, the state equals P's. (A
    finished run whose fit never returned in this process — an interrupt at its last epoch — is finished
    by the same call instead: it returns at once.)
(c) otherwise (the network was trained since P was written, or holds other weights): ValueError naming P;
    loading would silently replace weights that are not in it. Give a new path, or delete P.

``state_fingerprint`` is a 256-bit BLAKE2b hash of the bytes (with shapes and dtypes) of the parameters,
the optimizer state arrays and the step count. A checkpoint without ``start`` (written before it existed)
resumes as before, over whatever the network holds. ``settings`` holds fingerprints of the training data, the
sample weights and the validation arrays (given, or set apart by validation_split): another one is refused.

Checked before the first epoch, not at the first write (after all the epochs, with the default policy):
the path, by the atomic writer's rules (``_paths.output_target``), and that its directory is writable; the
callbacks' states (serialised in memory). A history key a callback adds is checked as each epoch ends.
The tensors carry a CRC-32 (``io.tensor_checksum``), verified on reading: a damaged file is refused.

The history written holds the loop's keys and any a callback added (numbers or lists of numbers); on
reading, every value is checked (losses finite and >= 0, accuracies in [0, 1], rates finite and > 0,
times and gradient norms finite and >= 0): a hostile or corrupt file is refused naming the entry.

When to write (``Store.due``): every ``checkpoint_every`` epochs when given; by default whenever the time
since the last write is at least ``COST_RATIO`` times what the last write took and at least
``MIN_INTERVAL`` seconds, so that writing costs at most 1 / (1 + COST_RATIO) of the time; always after
the last epoch, when a callback stops the fit and on a signal (the loop asks for those).

The history is bounded: each per-epoch list keeps its last ``HISTORY_EPOCHS`` (1000) entries, so a
checkpoint's size does not grow with the number of epochs (a 20,000-epoch run once made a 4,482-parameter
checkpoint 2.8 MB). The list a learning-rate schedule replays (ReduceLROnPlateau's ``monitor``) is kept
whole, since the rate of the next epoch depends on all of it; nothing else in training reads past
entries, so a resumed run stays bit-identical — only its returned history starts later (a function schedule
or a callback of your own that reads old history entries sees the bounded lists after a resume).

The parameters, the optimizer state (momentum / Adam moments, step count) and the history are the model
file's own tensors and metadata. Because the weights, the optimizer state, the generator state and the
partial-epoch accumulators are all stored exactly (float64 values as shortest round-trip JSON), a resumed
run performs the same floating-point operations as an uninterrupted one: the same seed and thread count
give bit-identical weights.
"""
import glob
import hashlib
import numbers
import json
import math
import os
import stat
import tempfile
import time
import warnings

try:
    import fcntl
except ImportError:      # Windows: stale temporaries are then never removed
    fcntl = None

import numpy as np

from . import _paths, io, threads

VERSION = 1
KEY = "checkpoint"
HISTORY_EPOCHS = 1000
COST_RATIO = 19          # default policy: writes take at most 1/20 of the time
MIN_INTERVAL = 0.5       # default policy: seconds between writes at least


# What this process knows of the checkpoints its fits wrote or resumed, by real path: {"saved": the
# state_fingerprint of the state the file holds, "returned": whether that fit returned, "ended": the network's
# state_fingerprint when it returned (after on_train_end, which may change the weights: EarlyStopping's
# restore_best_weights)}. A finished run whose fit never returned (an interrupt at its last epoch) is finished
# by the same call again (it returns at once); a network in the state a returned fit left it is case (b).
_SEEN = {}


def _key(path):
    return os.path.realpath(os.fspath(path))


class Resume:
    """What ``read`` restores besides the network itself (JSON-able values: MPI broadcasts it)."""

    def __init__(self, epoch, rng_state, partial, history, dropped=None, lr=None, stopped=False, callbacks=(),
                 start=None):
        self.epoch, self.rng_state, self.partial, self.history = epoch, rng_state, partial, history
        self.dropped, self.lr, self.stopped, self.callbacks = dropped or {}, lr, stopped, list(callbacks)
        self.start = start       # the fingerprint of the state the run started from (None: an older file)


def state_fingerprint(net):
    """A 256-bit BLAKE2b hash (64 hex digits) of the training state a checkpoint replaces: the bytes (with
    shapes and dtypes) of every parameter, of the optimizer's state arrays, and its step count. Neither the
    rate nor the history. O(parameters), like the write it goes with."""
    h = hashlib.blake2b(digest_size=32)
    opt = net.optimizer
    for group, arrays in (("params", net.params),
                          ("state", [a for slots in (opt.state or ()) for a in slots])):
        h.update(f"{group}:{len(arrays)};".encode())
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(memoryview(a).cast("B") if a.size else b"")
    h.update(f"steps:{int(opt.steps)}".encode())
    return h.hexdigest()


def stateful(callbacks):
    """The callbacks whose state a checkpoint holds: those with state_dict() and load_state_dict()."""
    return [cb for cb in callbacks if callable(getattr(cb, "state_dict", None))
            and callable(getattr(cb, "load_state_dict", None))]


def callback_states(callbacks):
    """[{"type", "config", "state"}] of the stateful callbacks; ValueError when a state is not JSON."""
    out = []
    for cb in stateful(callbacks):
        config = cb.config() if callable(getattr(cb, "config", None)) else None
        entry = {"type": type(cb).__name__, "config": config, "state": cb.state_dict()}
        try:
            out.append(json.loads(json.dumps(entry, default=io.json_default, allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint: the callback {type(cb).__name__}'s state_dict() or config() is not "
                             f"JSON-serialisable ({exc}); a checkpoint holds JSON values, finite numbers "
                             f"(checked before the first epoch and at every write)") from None
    return out


def load_callback_states(saved, callbacks, path):
    """Give each stateful callback its saved state; ValueError (before the first epoch) when the callbacks
    differ from the checkpoint's or a state is refused by its load_state_dict."""
    mine = stateful(callbacks)
    have = [(type(cb).__name__, cb.config() if callable(getattr(cb, "config", None)) else None) for cb in mine]
    if not isinstance(saved, list) or not all(isinstance(e, dict) for e in saved):
        raise ValueError(f"checkpoint {path} has a corrupt training state: callbacks must be a list of objects")
    had = [(e.get("type"), e.get("config")) for e in saved]
    if have != had:
        raise ValueError(f"checkpoint {path} was written with the callbacks {had!r:.300}, this fit has {have!r:.300} "
                         f"(those with a state); resuming would not reproduce that run. Use the same callbacks, "
                         f"or delete or move the file to start afresh.")
    for cb, entry in zip(mine, saved):
        try:
            cb.load_state_dict(entry.get("state"))
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"checkpoint {path} has a corrupt state for the callback {type(cb).__name__}: "
                             f"{exc}") from None


def _schedule_setting(schedule):
    """What a resume must share of the schedule: its config; for a user's function (not saved) its type and
    name, so that resuming without it, or with another, is refused instead of changing the rates."""
    from . import schedules
    config = schedules.to_config(schedule)
    if config is None and schedule is not None:
        fn = getattr(schedule, "fn", schedule)
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__     # no address: stable across runs
        config = {"type": type(schedule).__name__, "fn": f"{getattr(fn, '__module__', '?')}.{name}"}
    return config


class Store:
    """A fit's checkpoint: its settings, when to write (``due``), ``write`` and ``resume``; ``seconds`` the
    time spent writing. Built by the loop (fastnn.training) when ``checkpoint`` is given."""

    def __init__(self, trainer, run, X, y, val, weights, seed, batch_size, base_lr, path_name):
        self.path, self.every, self.run, self.net = trainer.checkpoint, trainer.checkpoint_every, run, trainer.net
        size = getattr(run, "size", None)     # a distributed run's rank count (informational: info, messages)
        self.ranks = size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None
        self.settings = settings(trainer, X, y, val, path_name)
        self.current = self.start = state_fingerprint(trainer.net)    # start: of this run (resume: the file's)
        self.saved = None          # the fingerprint of the state the file holds, once written or resumed
        self.settings.update(batch_size=batch_size, base_lr=base_lr, seed=seed, data=run.fingerprint(X, y),
                             lr_schedule=_schedule_setting(trainer.lr_schedule),
                             weights=None if weights is None else fingerprint(weights))
        self.base_lr, self.seconds, self.last_cost, self.dropped = base_lr, 0.0, 0.0, {}
        self.last_end = time.perf_counter()

    def resume(self, n_batches, keys, epochs, callbacks):
        """The Resume state (the network restored, the callbacks given their states), or None without a file;
        ValueError, the same on every rank, for a checkpoint that cannot be resumed."""
        def work():
            remove_stale_temporaries(self.path)
            check_writable(self.path)
            return read(self.path, self.net, self.settings, n_batches, keys, epochs, callbacks, self.current,
                        ranks=self.ranks)
        found = self.run.on_root(work)
        if found is not None:
            self.start = found.start
            if self.run.is_root:         # (read restored rank 0's network; the others get it from run.start)
                self.saved = state_fingerprint(self.net)
            if self.run.is_root:         # read() gave rank 0's callbacks their states; now the others'
                self.run.call(lambda: None, "resume")
            else:
                self.run.call(lambda: load_callback_states(found.callbacks, callbacks, self.path), "resume")
            self.dropped = found.dropped
        # what a checkpoint cannot hold is refused before the epochs (a resumed run: the states just loaded)
        self.run.call(lambda: self.check_writable_state(callbacks), "the checkpoint's callback states")
        return found

    def check_writable_state(self, callbacks):
        """ValueError now, not at the first write after the epochs, when a callback's state_dict() cannot be
        written (not JSON, NaN): the callbacks' states at the start are serialised, in memory only."""
        callback_states(callbacks)

    def returned(self):
        """The fit returned normally (after on_train_end): its checkpoint holds a run its caller saw end, and the
        network is in the state the run left it."""
        if self.saved is not None:
            _SEEN[_key(self.path)] = {"saved": self.saved, "returned": True, "ended": state_fingerprint(self.net)}

    def check_history(self, history, loop_keys, epoch):
        """ValueError at the epoch a callback added to the history an entry a checkpoint cannot hold (text, an
        object), not at the first write — after all the epochs with the default policy. The newest entry of
        each key the loop does not fill is checked (the loop's own are numbers)."""
        for key, values in history.items():
            if key in loop_keys or not isinstance(values, list) or not values:
                continue
            v = values[-1]
            if not (_number(v) or (isinstance(v, (list, tuple)) and all(map(_number, v)))):
                raise ValueError(f"checkpoint: a callback added history[{key!r}] = {v!r:.60} at epoch {epoch}; a "
                                 f"checkpointed history holds numbers or lists of numbers (give the callback "
                                 f"numbers, or fit without checkpoint=)")

    def due(self, epoch):
        """Whether the policy writes after ``epoch`` (the same answer on every rank: rank 0's)."""
        if self.every is not None:
            return epoch % self.every == 0
        now = time.perf_counter()
        mine = now - self.last_end >= max(MIN_INTERVAL, COST_RATIO * self.last_cost)
        return self.run.any(mine and self.run.is_root)

    def write(self, epoch, rng_state, partial, lr, callbacks, stopped=False):
        """Write the checkpoint after ``epoch`` epochs (rank 0; agreed on every rank)."""
        began = time.perf_counter()
        net, opt = self.net, self.net.optimizer

        def work():
            states = callback_states(callbacks)
            rate, opt.lr = opt.lr, self.base_lr     # the file records the network as fit found it
            try:
                write(self.path, net, epoch, rng_state, self.settings, partial, lr=lr, stopped=stopped,
                      callbacks=states, start=self.start, ranks=self.ranks)
            finally:
                opt.lr = rate
        if self.run.is_root:            # the rank that reads and writes the file keeps what it knows of it
            self.saved = state_fingerprint(net)
            _SEEN[_key(self.path)] = {"saved": self.saved, "returned": False, "ended": None}
        self.run.on_root(work, where=f"the checkpoint after epoch {epoch}")
        self.last_end = time.perf_counter()
        self.last_cost = self.last_end - began
        self.seconds += self.last_cost


def check_path(path):
    """``path`` as a str; TypeError unless it is a str / os.PathLike, ValueError for a directory."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError("checkpoint must be a file path, got an empty string")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a directory; give a file path")
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"checkpoint {path!r} is {_paths.kind(os.stat(path).st_mode)}, not a regular file")
    # the atomic writer's rules (io.atomic_write), now rather than at the first write after epochs of work: a
    # path ending in '/', a dangling symlink, a missing directory (as given: the system resolves "missing/.."
    # only through a directory that exists), a name too long for the file system
    _paths.output_target(path, "checkpoint")
    return path


def check_writable(path):
    """ValueError naming the directory when a checkpoint cannot be written next to ``path``: the directory
    is missing, or creating, writing and syncing a file in it fails (read-only, no permission, full).

    Called before the first epoch, so an unwritable checkpoint location costs no training time. The
    probe is an unnamed temporary file (O_TMPFILE where the system has it): nothing is left behind.
    """
    _paths.output_target(path, "checkpoint")     # the rules of io.atomic_write, checked again at the fit
    directory = os.path.dirname(os.fspath(path)) or os.curdir
    try:
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise ValueError(f"checkpoint {path}: cannot write to the directory {directory} "
                         f"({exc.strerror or exc})") from None


def fingerprint(*arrays):
    """A hash of the training data (shape, dtype and bytes of each array): resuming on other data is refused."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def check_savable(net):
    """ValueError unless a model file can rebuild every part of the network (``io.check_savable``: custom
    layers registered and rebuildable, built-in loss and optimizer), so that no checkpoint is written that
    could never be read."""
    io.check_savable(net, "checkpoint=")


def settings(trainer, X, y, validation, path):
    """The trainer settings a checkpoint must share with the run resuming from it (JSON-able).

    ``epochs`` is not among them: a finished run can be extended by asking for more epochs.
    """
    check_savable(trainer.net)
    return {"batch_size": trainer.batch_size, "shuffle": trainer.shuffle,
            "seed": None if trainer.seed is None else _json_seed(trainer.seed),
            "path": path, "n_samples": int(X.shape[0]), "data": fingerprint(X, y),
            "validation": validation is not None,
            # the validation arrays themselves (validation_data, or what validation_split set apart): the
            # history, a ReduceLROnPlateau or an EarlyStopping reads them, so other ones change the run
            "validation_data": None if validation is None else fingerprint(*validation)}


def _json_seed(seed):
    try:
        return json.loads(json.dumps(seed, default=io.json_default))
    except (TypeError, ValueError):
        return repr(seed)


def _pid_alive(pid):
    """False only when no process ``pid`` exists (on this machine); True when it does or cannot be told."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):     # PermissionError: alive, someone else's
        return True
    return True


def _remove_if_abandoned(tmp):
    """Unlink the temporary ``tmp`` if no process holds its writer's flock; the lock is taken first, so a
    writer cannot be between creating and locking it while we decide. Returns True if removed."""
    if fcntl is None:
        return False
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:                  # held: its writer is still writing
            return False
        os.unlink(tmp)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_temporaries(path):
    """Delete temporary files left next to ``path`` by an atomic write that was killed (SIGKILL, power loss).

    Only temporaries named by ``io.temporary_name`` (``.{name}.{pid}.{16 hex}.tmp``) whose writer is
    provably gone are removed: no process has that pid here, and nobody holds the flock the writer holds
    while writing. A second process starting ``fit(checkpoint=P)`` therefore never deletes the first's
    in-flight temporary.
    """
    directory, base = os.path.split(os.fspath(path))
    directory = directory or os.curdir
    for tmp in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(base)}.*.tmp")):
        pid, _, token = os.path.basename(tmp)[len(base) + 2:-4].partition(".")
        if not (pid.isdigit() and len(pid) <= 10 and len(token) == 16
                and all(c in "0123456789abcdef" for c in token)):
            continue
        if not _pid_alive(int(pid)):
            _remove_if_abandoned(tmp)


def _replayed_keys(settings):
    """History keys the run's learning-rate schedule replays from the start (kept whole)."""
    schedule = settings.get("lr_schedule") if isinstance(settings, dict) else None
    config = schedule.get("config") if isinstance(schedule, dict) else None
    monitor = config.get("monitor") if isinstance(config, dict) else None
    return {monitor} if isinstance(monitor, str) else set()


def bounded_history(history, epoch, settings):
    """(history with each list cut to its last HISTORY_EPOCHS entries, except the replayed ones; {key: number
    of epochs left out at the start}) for a checkpoint after ``epoch`` epochs."""
    keep = _replayed_keys(settings)
    out, dropped = {}, {}
    for key, values in (history or {}).items():
        values = list(values) if key in keep else list(values)[-HISTORY_EPOCHS:]
        out[key] = values
        if epoch - len(values):
            dropped[key] = int(epoch - len(values))
    return out, dropped


def write(path, net, epoch, rng_state, settings, partial=None, lr=None, stopped=False, callbacks=(), start=None,
          ranks=None):
    """Atomically write the checkpoint: ``net`` (weights, optimizer state, the bounded ``net.history``) +
    training state (``lr`` the rate in force, ``stopped`` a callback ended the fit, ``callbacks`` their
    states from ``callback_states``; ``ranks`` a distributed run's rank count, informational: ``fastnn info``
    shows ranks x local batch, a resume with another global batch names both)."""
    history, dropped = bounded_history(net.history, int(epoch), settings)
    for key, values in history.items():
        for v in values:
            if not (_number(v) or (isinstance(v, (list, tuple)) and all(map(_number, v)))):
                raise ValueError(f"checkpoint: history[{key!r}] holds {v!r:.60}; a checkpointed history holds "
                                 f"numbers or lists of numbers (a callback added this key?)")
    extra = {KEY: {"version": VERSION, "epoch": int(epoch), "rng": rng_state, "partial": partial,
                   "settings": settings, "history_dropped": dropped, "lr": None if lr is None else float(lr),
                   "stopped": bool(stopped), "callbacks": list(callbacks), "threads": threads.get_num_threads(),
                   "start": start, "ranks": ranks}}
    full, net.history = net.history, history
    try:
        io.write_model(net, path, extra, "checkpoint")
    finally:
        net.history = full


def _global_batch(batch, ranks):
    """'global batch 2 ranks x 16 = 32' for a distributed run (``batch``: the global batch), else 'batch 32'."""
    if isinstance(ranks, int) and not isinstance(ranks, bool) and ranks >= 1 and isinstance(batch, int) \
            and not isinstance(batch, bool) and batch % ranks == 0:
        return f"global batch {ranks} rank{'s' if ranks > 1 else ''} x {batch // ranks} = {batch}"
    return f"batch {batch!r:.20}"


def _number(v):
    return isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


# the value check of a history read from a file lives in io, shared with ``fastnn.load``
check_history_values = io.check_history_values


def _describe_difference(a, b, where="architecture"):
    """A short text naming the first place where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b or a[key] != b[key]:
                return _describe_difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            if u != v:
                return _describe_difference(u, v, f"{where}[{i}]")
    return f"{where} is {b!r:.200} in the checkpoint but {a!r:.200} now"


def _int(value, what, low=0):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r:.100}")
    return value


def _check_partial(partial, n_batches, batch_size, n_samples):
    """The mid-epoch position, checked against the epoch it belongs to: 1 <= batches < n_batches, a finite
    loss_sum >= 0, 0 <= correct <= the samples of those batches."""
    if partial is None:
        return None
    if not isinstance(partial, dict):
        raise ValueError("'partial' must be an object or null")
    batches = _int(partial.get("batches"), "partial.batches", 1)
    if batches >= n_batches:
        raise ValueError(f"partial.batches is {batches}, but an epoch has only {n_batches} batches")
    loss_sum = partial.get("loss_sum")
    if not isinstance(loss_sum, (int, float)) or isinstance(loss_sum, bool) or not math.isfinite(loss_sum) \
            or loss_sum < 0:
        raise ValueError(f"partial.loss_sum must be a finite number >= 0, got {loss_sum!r:.100}")
    correct = _int(partial.get("correct"), "partial.correct")
    seen = min(batches * batch_size, n_samples)
    if correct > seen:
        raise ValueError(f"partial.correct is {correct}, more than the {seen} samples of the "
                         f"{batches} batches done")
    return {"batches": batches, "loss_sum": float(loss_sum), "correct": correct}


def _check_rng(value):
    """The generator state: a PCG64 state dict with every integer in range (NumPy would raise
    OverflowError or TypeError on the wrong ones); ValueError naming the field otherwise."""
    if not isinstance(value, dict) or value.get("bit_generator") != "PCG64":
        raise ValueError("rng must be the state of a PCG64 bit generator")
    inner = value.get("state")
    if not isinstance(inner, dict):
        raise ValueError("rng.state must be an object")
    for name, limit, where in (("state", 128, inner), ("inc", 128, inner),
                               ("has_uint32", 1, value), ("uinteger", 32, value)):
        v = where.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2 ** limit:
            field = f"rng.state.{name}" if where is inner else f"rng.{name}"
            raise ValueError(f"{field} must be an integer in [0, 2**{limit}), got {v!r:.100}")
    rng = np.random.default_rng()
    rng.bit_generator.state = value
    return rng.bit_generator.state


def read(path, net, settings, n_batches, history_keys, epochs, callbacks=(), now=None, ranks=None):
    """Restore ``net`` from the checkpoint at ``path``; the Resume state, or None if there is no file or the
    file holds a finished run that ended in ``net``'s current state (``now``, its ``state_fingerprint``):
    a new run then starts from that state (see the module docstring).

    Raises ValueError naming the file when it is not a fastnn checkpoint, is corrupt, was written for
    another architecture, other data or other trainer settings, or is further than ``epochs``, or when
    ``net`` is neither in the state the checkpoint's run started from nor in the state it holds (trained
    since: loading would silently replace that training); ``net`` is unchanged then.
    """
    if not os.path.exists(path):
        return None
    try:
        saved, meta = io.load_with_metadata(path)
    except ValueError as exc:
        raise ValueError(f"cannot resume from checkpoint {path}: {exc}. Delete or move the file to start "
                         f"training afresh.") from None
    state = (meta.get("extra") or {}).get(KEY)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is a fastnn model file but not a training checkpoint (it has no training "
                         f"state); give another checkpoint path, or delete the file to start afresh")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has version {state.get('version')!r:.50}; this fastnn reads "
                         f"version {VERSION}")
    current = json.loads(json.dumps(net.config(), default=io.json_default))
    if meta.get("architecture") != current:
        raise ValueError(f"checkpoint {path} was written for a different network: "
                         f"{_describe_difference(current, meta.get('architecture'))}. Delete or move the "
                         f"file to train this network afresh.")
    old = state.get("settings")
    if isinstance(old, dict) and "validation_data" not in old:     # a file from before that setting
        settings = {k: v for k, v in settings.items() if k != "validation_data"}
    if old != settings:
        names = {"data": "the training data (X, y)", "n_samples": "the number of training samples",
                 "path": "the training path (fit's fused= argument)", "validation": "validation data given",
                 "validation_data": "the validation data (validation_data, or the rows validation_split "
                                    "sets apart)", "weights": "the sample weights (sample_weight, class_weight)"}
        diff = [k for k in sorted(set(settings) | set(old if isinstance(old, dict) else {}))
                if not isinstance(old, dict) or old.get(k) != settings.get(k)]
        what = ", ".join(names.get(k, k) for k in diff) + " differ"
        if "batch_size" in diff and isinstance(old, dict):     # the global batch, with the ranks that made it
            what += (f": the checkpoint's {_global_batch(old.get('batch_size'), state.get('ranks'))}, this "
                     f"run's {_global_batch(settings.get('batch_size'), ranks)}")
        raise ValueError(f"checkpoint {path} was written by a run with other settings ({what}); "
                         f"resuming would not reproduce that run. Use the same arguments, or delete or "
                         f"move the file to start afresh.")
    try:
        epoch = _int(state.get("epoch"), "epoch")
        partial = _check_partial(state.get("partial"), n_batches, settings["batch_size"],
                                 settings["n_samples"])
        if partial is not None and settings.get("path") == "fused":
            raise ValueError("a mid-epoch position, but the fused path runs whole epochs only")
        rng_state = _check_rng(state.get("rng"))
        missing = set(history_keys) - {"grad_norm"} - set(saved.history)
        if missing and saved.history:
            raise ValueError(f"history keys {sorted(saved.history)} lack {sorted(missing)}")
        check_history_values(saved.history)
        lr = state.get("lr")
        if lr is not None and not (_number(lr) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r:.100}")
        stopped = state.get("stopped", False)
        if not isinstance(stopped, bool):
            raise ValueError(f"stopped must be true or false, got {stopped!r:.100}")
        start = state.get("start")
        if start is not None and not (isinstance(start, str) and len(start) == 64
                                      and all(c in "0123456789abcdef" for c in start)):
            raise ValueError(f"start must be null or 64 hex digits (a state fingerprint), got {start!r:.100}")
        dropped = state.get("history_dropped", {})
        if not isinstance(dropped, dict) or set(dropped) - set(saved.history):
            raise ValueError("history_dropped must map history keys to numbers of epochs")
        replayed = _replayed_keys(settings)
        for key, values in saved.history.items():
            gone = _int(dropped.get(key, 0), f"history_dropped[{key!r}]")
            if gone and key in replayed:
                raise ValueError(f"history[{key!r}] is cut short, but the learning-rate schedule replays it")
            if key not in history_keys and saved.history and len(values) + gone <= epoch:
                continue                # a key a callback added (perhaps after the first epoch)
            if len(values) + gone != epoch:
                raise ValueError(f"history[{key!r}] has {len(values)} entries after {gone} left out, but the "
                                 f"epoch counter is {epoch}")
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"checkpoint {path} has a corrupt training state: {exc}") from None
    if start is not None and now is not None and now != start:     # (older files: no start, no check)
        held = state_fingerprint(saved)
        seen = _SEEN.get(_key(path))
        seen = seen if seen is not None and seen["saved"] == held else None    # the file is the one we knew
        if now != held and not (seen is not None and seen["ended"] == now):
            raise ValueError(
                f"checkpoint {path} does not hold this network's training: the network was trained since that "
                f"checkpoint was written (or its weights or optimizer state were changed) — it is not the state "
                f"the run started from, nor the state the checkpoint holds (epoch {epoch}). Resuming would "
                f"replace the network's weights with the checkpoint's, so it is refused. To go on from the "
                f"network as it is, give a new checkpoint path, or delete or move {path}; to resume that run, "
                f"fit a network in the state it started from (the same script, restarted).")
        if partial is None and (stopped or epoch >= epochs) and not (seen is not None and not seen["returned"]):
            return None     # the network is where that finished run ended: a new run from here (writes path)
    if epoch + (partial is not None) > epochs:
        raise ValueError(f"checkpoint {path} is at epoch {epoch}{' (and part of the next)' if partial else ''}, "
                         f"beyond epochs={epochs}; ask for at least {epoch + (partial is not None)} epochs, or "
                         f"delete or move the file to start afresh")
    written = state.get("threads")
    if not isinstance(written, int) or isinstance(written, bool) or written < 1:
        written = "an unknown number of"           # informational only: a bad value is not an error
    if written != threads.get_num_threads():
        warnings.warn(f"checkpoint {path} was written with {written} threads, this run uses "
                      f"{threads.get_num_threads()}: the resumed weights may differ from an uninterrupted "
                      f"run in the last bits (BLAS sums in another order)", RuntimeWarning, stacklevel=3)
    states = state.get("callbacks", [])
    load_callback_states(states, callbacks, path)
    # everything checked: restore in place (the network's flat buffers stay the same objects)
    for p, q in zip(net.params, saved.params):
        p[...] = q
    net.optimizer.state = saved.optimizer.state
    net.optimizer.steps = saved.optimizer.steps
    history = {k: list(saved.history.get(k, [])) if saved.history else [] for k in history_keys}
    for k, values in (saved.history or {}).items():
        history.setdefault(k, list(values))
    dropped = {k: int(v) for k, v in state.get("history_dropped", {}).items()}
    return Resume(epoch, rng_state, partial, history, dropped, lr, stopped, states, start)
