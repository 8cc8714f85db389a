"""THE training loop: epochs, sample order, batching, validation, history, progress, callbacks, learning-rate
schedules, checkpoints and resume, Ctrl-C / SIGTERM / SIGHUP, divergence and gradient health — written once.

This module keeps the settings (``Trainer``) and the loop; the rest has modules of its own:
* fastnn.engines   the engines that run one epoch (fused, per-layer, distributed) behind one protocol, and
                   the run strategies (one process, MPI ranks);
* fastnn.signals   what Ctrl-C, SIGTERM and SIGHUP do while a fit runs;
* fastnn.health    per-layer gradient norms and the vanishing / exploding warnings;
* fastnn.callbacks the callback protocol (``CallbackList``), fastnn.checkpoint the checkpoint file.
``NeuralNetwork.fit``, ``DistributedTrainer``, the scikit-learn estimators and the CLI are clients of this loop.
"""
import contextlib
import math
import numbers
import sys
import threading
import time

import numpy as np
from numba.core import event

from . import _checks, callbacks as callback_protocol, network, signals, threads
from .engines import Progress, Stop
from .engines.local import LocalRun
from .errors import NonFiniteStateError, TrainingDivergedError, TrainingInterrupted
from .health import GradientHealth
from .kernels._jit import numba_prepared, prepare_numba
from .layers import draws_epoch_keys, dropout_epoch_key
from .network import NeuralNetwork

__all__ = ["Trainer", "new_history"]

class Trainer:
    """Fits ``net`` to (X, y) with mini-batch gradient descent; ``fit`` returns the per-epoch history.

    Settings (checked here for every client — by the constructor and again on every assignment, with the same
    check, so ``trainer.epochs = -1`` raises like ``Trainer(net, epochs=-1)``; the settings that involve two
    attributes, validation_data with validation_split and sample_order with checkpoint, are checked again by
    ``fit``):
    ``batch_size`` (clipped to the number of samples; the last batch of an epoch may be smaller), ``epochs``,
    ``shuffle`` (a new permutation every epoch), ``seed`` (the shuffling stream: repeated fits with the same
    seed continue one stream, like repeated Keras ``fit`` calls; a new seed starts a new one), ``validation_data``
    ((X_val, y_val) or None) or ``validation_split`` (a fraction in [0, 1): the last rows of X, y, before any
    shuffling, as in Keras), ``verbose`` (0 silent, 1 a progress bar over epochs), ``fused`` ("auto": the fused
    whole-epoch kernel when the network allows it; False: the per-layer path; True: require the fused path),
    ``class_weight`` (dict class id -> weight, or "balanced"; multiplies the sample weights of labelled
    classifiers), ``lr_schedule`` (a fastnn.schedules object or a callable epoch -> lr: the optimizer's rate
    for each epoch, from the rate it had when fit started), ``callbacks`` (objects with
    ``on_epoch_end(epoch, history) -> bool`` (True stops), optional ``on_train_begin(net)`` /
    ``on_train_end(net)``; see fastnn.callbacks), ``checkpoint`` / ``checkpoint_every``, ``distributed`` (True, or an mpi4py communicator: data-parallel
    over MPI ranks, see fastnn.distributed; ``batch_size`` is then each rank's local batch).
    ``fit(X, y, sample_weight=None)``: per-sample weights (n,), non-negative, finite, not all zero.
    ``stop_flag`` (Trainer only; advanced, distributed only): the fastnn.signals.StopFlag a distributed fit's
    Ctrl-C / SIGTERM handling sets, when a caller already holds signals with its own (the CLI, from its start).
    ``sample_order`` (Trainer only; advanced): a callable n -> the next epoch's order, a permutation of
    range(n), replacing ``shuffle`` and ``seed`` (the scikit-learn drop-ins use it to draw scikit-learn's
    orders); it cannot be combined with ``checkpoint``.

    History: per-epoch lists "loss" and, for classifiers, "accuracy" (over the epoch's batches, each measured
    before its update), "val_loss" / "val_accuracy" with validation data, "lr" (the rate the epoch used),
    "grad_norm" (the L2 norm of each parameterised layer's gradient on the epoch's last mini-batch) and "time".
    A GradientHealthWarning is issued (once per kind per fit, one line, through the progress bar's writer)
    when a layer has stopped learning although the loss has not (vanishing: gradient norm x weights' norm
    below 1e-6 x the loss for 5 epochs in a row; never on a model that has simply converged) or when its
    gradient norm is above 1e3 times its weights' norm (exploding); see ``_GradientHealth``.

    ``checkpoint`` (a file path or None) and ``checkpoint_every`` (N, or None: the default policy): the
    network, its optimizer state and rate, the shuffling generator's state, the epoch counter, the history
    (with keys callbacks added) and the state of every callback that has ``state_dict()`` /
    ``load_state_dict(state)`` (EarlyStopping has) are written to ``checkpoint`` atomically (a fastnn
    model file, see fastnn.checkpoint) after every N epochs — by default (None) whenever the time trained
    since the last write is at least ``checkpoint.COST_RATIO`` times what that write took and at least
    ``checkpoint.MIN_INTERVAL`` seconds (so writing costs under a tenth of the training time) — and always
    after the last epoch, when a callback stops the fit and on Ctrl-C / SIGTERM. If the file exists when
    ``fit`` starts, training resumes from it and runs the remaining epochs: the result is bit-identical
    to an uninterrupted run (same seed and thread count). A checkpoint of another architecture, other
    data (validation data included) or other settings is refused with a ValueError before the first
    epoch; ``epochs`` may grow. A checkpoint never replaces training done in memory: it resumes only into
    the state its run started from (a restarted script) or the state it holds (after Ctrl-C; a finished
    run then starts a new one from there: a Keras-style loop of fit(epochs=1) calls), and is refused
    otherwise (fastnn.checkpoint says which, and why). ``checkpoint_every`` without ``checkpoint`` is
    refused. ``checkpoint_seconds`` (after a fit): the time spent writing checkpoints.

    Callbacks may change what the loop uses: after each epoch's callbacks the loop checks the network
    again — a replaced optimizer is trained from then on (the schedule drives it, from its rate when it was
    installed), a replaced loss or changed layers get a new engine (the data checked again), a rate a
    callback sets is used next epoch (and recorded in history["lr"]) unless a schedule drives the rate (then
    ValueError); a history list of the loop removed or cut short raises ValueError naming it.

    Ctrl-C (SIGINT), SIGTERM and SIGHUP (main thread only) stop training cleanly: the per-layer path after the
    current mini-batch, the fused path after the current epoch. The network keeps the weights of the last
    completed step, the history the completed epochs, the checkpoint (if any) is written — mid-epoch ones
    resume exactly too — and ``TrainingInterrupted``, a KeyboardInterrupt saying where it stopped (and its
    ``signal``), is raised. A second signal aborts at once, but never inside an optimizer step, the
    end-of-epoch bookkeeping or a checkpoint write (fastnn.signals): weights, moments, ``optimizer.steps``
    and history always agree. A scheduled rate is not left in the optimizer when a fit ends (in any way):
    the same call again resumes from the checkpoint.

    A non-finite loss, gradient or update raises TrainingDivergedError (epoch, batch, layer, history); the
    network, the optimizer state and the history stay those of the last finite step.
    """

    net = _checks.Checked(lambda v, name: _check_net(v), doc="the NeuralNetwork this trainer fits")
    batch_size = _checks.Checked(_checks.positive_int)
    epochs = _checks.Checked(_checks.positive_int)
    shuffle = _checks.Checked(lambda v, name: _flag_value(v, name))
    seed = _checks.Checked(_checks.seed)
    validation_data = _checks.Checked(lambda v, name: _check_validation_data(v))
    validation_split = _checks.Checked(lambda v, name: _check_split(v))
    verbose = _checks.Checked(lambda v, name: _check_verbose(v))
    fused = _checks.Checked(lambda v, name: _check_fused(v))
    checkpoint = _checks.Checked(lambda v, name: _check_checkpoint(v))
    checkpoint_every = _checks.Checked(lambda v, name: None if v is None else _checks.positive_int(v, name))
    checkpoint_seconds = _checks.Checked(lambda v, name: _checks.positive_float(v, name, allow_zero=True),
                                         default=0.0, doc="the time the last fit spent writing checkpoints")
    class_weight = _checks.Checked(lambda v, name: _check_class_weight(v))
    lr_schedule = _checks.Checked(lambda v, name: _check_schedule(v))
    callbacks = _checks.Checked(lambda v, name: tuple(callback_protocol.get(v)))
    distributed = _checks.Checked(lambda v, name: _check_distributed(v))
    sample_order = _checks.Checked(lambda v, name: _check_sample_order(v))

    def __init__(self, net, batch_size=64, epochs=10, shuffle=True, seed=0, validation_data=None,
                 verbose=1, fused="auto", checkpoint=None, checkpoint_every=None, *, validation_split=0.0,
                 class_weight=None, lr_schedule=None, callbacks=(), distributed=False, sample_order=None):
        error, agree_on = None, None
        try:
            self.distributed = distributed
            agree_on = self.distributed or None      # True or a communicator (np.bool_ made a bool)
        except (TypeError, ValueError) as exc:      # refused (on this rank only, perhaps): every rank of the
            from .engines.distributed import agreement_comm   # launch must learn of it, or the others wait
            self.distributed, error = False, exc
            agree_on = agreement_comm(distributed)
        try:
            self.net = net
            self.batch_size, self.epochs, self.shuffle, self.seed = batch_size, epochs, shuffle, seed
            self.validation_data, self.validation_split = validation_data, validation_split
            self.verbose, self.fused = verbose, fused
            self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
            self.class_weight, self.lr_schedule, self.callbacks = class_weight, lr_schedule, callbacks
            self.sample_order = sample_order
            self.check_settings()
        except (TypeError, ValueError) as exc:
            error = error or exc
        if agree_on is not None:        # every rank learns whether any rank's settings were refused
            from .engines.distributed import agree_start
            agree_start(agree_on, error)
        if error is not None:
            raise error
        # fused=True with distributed is refused by MPIRun after every rank agreed on it (no rank may raise
        # alone: the others would wait for it in a collective)

    def check_settings(self):
        """The checks that involve two settings (each setting is checked when assigned): run by the
        constructor and again by ``fit``, since either setting may be assigned later."""
        if self.validation_split and self.validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        if self.checkpoint_every is not None and self.checkpoint is None:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} is given without checkpoint= (no file to "
                             f"write): give checkpoint=PATH too, or leave checkpoint_every out")
        if self.sample_order is not None and self.checkpoint is not None:
            raise ValueError("sample_order cannot be combined with checkpoint= (its state is not saved)")

    def wants_fused(self):
        """Whether this fit runs the fused engine (``fused`` and what the network allows); ValueError for
        fused=True on a network the fused path cannot run."""
        from .engines import fused
        ok, reason = fused.supports(self.net)
        if self.fused is True and not ok:
            raise ValueError(f"fused=True but the fused path cannot run this network: {reason}")
        return ok and self.fused is not False

    def order(self, rng, n):
        """This epoch's sample order: the user's ``sample_order``, a permutation from the shuffling stream, or
        0..n-1."""
        if self.sample_order is not None:
            return _checked_order(self.sample_order(n), n)
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def fit(self, X, y, sample_weight=None):
        """Train; returns the history. See the class docstring."""
        if not self.distributed:
            self.check_settings()      # (distributed: in MPIRun.prepare, where every rank learns the outcome)
        threads.off_main_thread()
        run, stop = LocalRun(), signals.StopFlag()
        held = contextlib.nullcontext()
        if self.distributed:
            # (the CLI holds signals from its start: its flag, set by a signal since, stops this fit too)
            stop = getattr(self, "stop_flag", None) or stop
            from .engines.distributed import MPIRun
            run = MPIRun(None if self.distributed is True else self.distributed)
            # Ctrl-C / SIGTERM from the start: a signal during the set-up (a rank alone raising
            # KeyboardInterrupt would leave the others waiting) stops every rank before the first batch
            held = signals.deferred(stop)
        # the thread count in effect when the fit starts holds for all of it, whatever other threads set
        with held, self.net.training_session("fit"), run.guard(), threads.num_threads(threads.get_num_threads()):
            return _Loop(self, run, stop).fit(X, y, sample_weight)

    def input_checked_by_engine(self):
        """Whether this fit's engine checks X's rows itself as its kernel gathers them (finite; their |x|
        bound), so that the set-up makes no pass over X: asked of the engine class that runs
        (``checks_input``: the fused engine's kernels do), one process only."""
        if self.distributed:
            return False
        try:
            use_fused = self.wants_fused()
        except ValueError:
            return False
        return bool(getattr(LocalRun.engine_class(use_fused), "checks_input", False))

    def checked_data(self, X, y, sample_weight):
        """Checked (X, y, weights or None, validation pair or None)."""
        net, given = self.net, X
        unchecked = self.input_checked_by_engine()
        X = net.check_input(X, "X", check_finite=not unchecked)
        y = net.check_target(y, X.shape[0], "y")
        if y.dtype.kind in "iu":    # class ids index the kernels' arrays: a private copy (a callback, another
            y = y.copy()            # thread writing the caller's y mid-fit cannot send them out of bounds)
        weights = None
        if sample_weight is not None:
            weights = _checks.sample_weights(sample_weight, "sample_weight", X.shape[0], net.dtype)
        if self.class_weight is not None:
            weights = _class_weights(self.class_weight, y, net, weights)
        val = None
        if self.validation_split:
            n_val = int(math.ceil(self.validation_split * len(X)))
            if n_val >= len(X):
                raise ValueError(f"validation_split={self.validation_split} leaves no training samples")
            val = (X[len(X) - n_val:], y[len(X) - n_val:])
            if unchecked and not math.isfinite(_checks.scan(val[0])):    # the engine reads the training rows only
                raise _checks.nonfinite_error(X, "X", np.asarray(given))      # (converted once already)
            X, y = X[:len(X) - n_val], y[:len(y) - n_val]
            weights = None if weights is None else weights[:len(X)]
        elif self.validation_data is not None:
            val = self.checked_validation()
        if weights is not None and not weights.any():
            raise ValueError("sample_weight is zero for every training sample" if self.class_weight is None else
                             "the sample weights (sample_weight times class_weight) are zero for every training "
                             "sample")
        return X, y, weights, val

    def checked_validation(self):
        """The checked validation pair from ``validation_data``."""
        try:
            X_val, y_val = self.validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        X_val = self.net.check_input(X_val, "validation_data X")
        return X_val, self.net.check_target(y_val, X_val.shape[0], "validation_data y")


class _Loop:
    """One fit of ``trainer`` where ``run`` says (engines.local.LocalRun / engines.distributed.MPIRun): the loop itself.

    What it captured from the network (plan, optimizer, loss, layers) is checked again at every epoch, after
    the callbacks, by ``_follow``; the plan is built once per epoch and handed to the engine."""

    def __init__(self, trainer, run, stop=None):
        self.trainer, self.run, self.net = trainer, run, trainer.net
        self.stop = signals.StopFlag() if stop is None else stop
        self.callbacks = callback_protocol.CallbackList(trainer.callbacks)
        self.schedule = trainer.lr_schedule
        fn = getattr(self.schedule, "fn", None)        # a user's schedule object may keep state, like a callback
        self.stateful = list(self.callbacks.callbacks) + ([fn] if callable(getattr(fn, "state_dict", None)) else [])
        self.store = None
        self.lr_set = None       # the rate the loop set for the last epoch

    def fit(self, X, y, sample_weight):
        # The set-up checks X (and the weights) in one pass each, whose findings (finite, max |x|) the engine
        # reuses (fastnn._checks.bound_scope) unless code the loop does not control ran in between: then
        # forget_bounds(). The epochs, which run callbacks, reuse nothing (bounds_suspended).
        # X's finiteness, left to the engine's kernel, is still named before any other problem the set-up finds
        # (y, the weights, validation data, the checkpoint, a callback's on_train_begin), as when the set-up
        # scanned X first: a scan on that error path only
        self.epochs_began = False
        with contextlib.ExitStack() as setup:
            setup.enter_context(_checks.bound_scope())
            try:
                return self._fit(X, y, sample_weight, setup)
            except (TypeError, ValueError):
                if not self.epochs_began:
                    self._refuse_nonfinite_X(X)
                raise

    def _refuse_nonfinite_X(self, given):
        """Raise the boundary's ValueError for ``given`` (the caller's X) when it holds NaN or Inf and the
        engine was to check it (``Trainer.input_checked_by_engine``); else return."""
        if not self.trainer.input_checked_by_engine():
            return          # (the set-up scanned X itself, first)
        try:
            X, arr = _checks.converted_matrix(given, "X", self.net.dtype, self.net.n_features)
        except (TypeError, ValueError):
            return          # X's own shape or type problem was raised already
        if not math.isfinite(_checks.scan(X)):
            error = _checks.nonfinite_error(X, "X", arr)
            if error is not None:
                raise error from None

    def _fit(self, X, y, sample_weight, setup):
        if not numba_prepared():
            with signals.held():     # (a Ctrl-C inside llvmlite's set-up is held until it is done)
                prepare_numba()      # Numba's one-time set-up, cheaper now than inside the first kernel call
        tr, run, net = self.trainer, self.run, self.net
        self.given = X            # for the message when the engine finds NaN/Inf in it (_bad_input)
        X, y, weights, val = run.prepare(tr, X, y, sample_weight)
        self.X, self.y, self.weights, self.val = X, y, weights, val
        seed = run.seed(tr.seed)
        state = net.optimizer.state          # (the plan makes zeroed state on a first fit)
        plan = net.plan()
        # an engine that checks X as it reads it may find bad rows after some steps: the fit then puts back
        # what the user owns, as it was here (O(parameters) to take, and taken only then)
        self.snapshot = _Snapshot(net, plan, state) if tr.input_checked_by_engine() else None
        self.opt = plan.optimizer
        self.base_lr = self.opt.lr
        self.batch_size = run.batch_size(tr.batch_size, len(X))      # the global batch
        history = self.history = new_history(net.classification, val is not None)
        self.keys = list(history)           # the loop's own keys; callbacks may add others
        self.use_fused = run.use_fused(tr)
        n_batches = -(-len(X) // self.batch_size)
        rng = self.rng = _shuffle_stream(net, seed)
        start_epoch, partial, resumed = 1, None, None
        if tr.checkpoint is not None:
            from .checkpoint import Store
            self.store = Store(tr, run, X, y, val, weights, seed, self.batch_size, self.base_lr,
                               run.path_name(self.use_fused))
            run.call(lambda: self.callbacks.on_train_begin(net), "on_train_begin")
            resumed = self.store.resume(n_batches, list(history), tr.epochs, self.stateful)
            if resumed is not None:
                start_epoch, partial = resumed.epoch + 1, resumed.partial
                rng.bit_generator.state = resumed.rng_state
                history = self.history = resumed.history
                if self.schedule is None and resumed.lr is not None:
                    self.opt.lr = resumed.lr       # a rate a callback set before the checkpoint
        else:
            run.call(lambda: self.callbacks.on_train_begin(net), "on_train_begin")
        run.start(net)
        run.share_stream(rng)     # distributed: rank 0's shuffling stream, as its weights and optimizer state
        net.history = history
        if start_epoch > tr.epochs or (resumed is not None and resumed.stopped):
            run.call(lambda: self.callbacks.on_train_end(net), "on_train_end")   # a finished run's checkpoint
            self._agree_end("the end of training (after on_train_end)")
            if self.store is not None:
                self.store.returned()
            return history
        run.call(lambda: self.opt.check_for(net.dtype), "the optimizer's rate")
        if self.schedule is not None:     # a rate refused at epoch k would waste k - 1 epochs: check ahead
            run.call(lambda: self.schedule.check_fit(start_epoch, tr.epochs, self.base_lr, len(X), net.dtype),
                     "lr_schedule")
        if self.store is not None or self.schedule is not None or \
                any(getattr(cb, "on_train_begin", None) is not None for cb in self.callbacks.callbacks):
            _checks.forget_bounds()       # user code ran since X was checked
        self.engine = run.engine(tr, X, y, self.batch_size, weights, self.use_fused)
        self.epochs_began = True       # (from here on the engine finds a bad row of X itself)
        setup.close()
        self.captured = self._structure(plan)
        self.health = GradientHealth(net, plan, warn=run.is_root)
        stop = self.stop
        compiling = self._say_compiling(run)
        bar = _progress(tr.epochs, tr.verbose, start_epoch - 1, compiling) if run.is_root else None
        samples_seen = (start_epoch - 1) * len(X)
        keyed = draws_epoch_keys(net)      # Dropout: each epoch draws its key from the shuffling stream
        first_epoch = contextlib.ExitStack()      # closed after the first epoch
        if bar is not None and not compiling:     # the engine could not tell ahead: say it when it starts
            compiling = first_epoch.enter_context(CompileNotice(bar))
        with signals.deferred(stop), self._ending(bar), _checks.bounds_suspended(), first_epoch:
            for epoch in range(start_epoch, tr.epochs + 1):
                began = time.perf_counter()
                rng_state = rng.bit_generator.state

                def begin(epoch=epoch, samples_seen=samples_seen):
                    plan = net.plan()      # once per epoch: whatever a callback or another thread changed
                    rebuild = self._follow(plan)
                    if self.schedule is not None:
                        self.opt.lr = self.schedule.lr(epoch, self.base_lr, history, samples_seen, dtype=net.dtype)
                    self.opt.check_for(net.dtype)       # a callback's rate too
                    return plan, rebuild, tr.order(rng, len(X))
                # distributed: ONE agreement of what the epoch starts from (anything that failed, the rate, the
                # optimizer, the weights, the network) on every rank
                plan, rebuild, order = self._begin_epoch(begin, epoch)
                if rebuild:           # a callback changed the loss or the layers (alike on every rank: agreed)
                    self.engine = run.engine(tr, self.X, self.y, self.batch_size, self.weights, self.use_fused)
                lr = self.lr_set = self.opt.lr
                if tr.sample_order is not None:
                    run.same_everywhere(order, f"sample_order({len(X)}) results")
                dkey = dropout_epoch_key(rng) if keyed else 0     # (drawn after the order: see layers)
                progress = Progress(stop, partial, run.any, dkey, plan)
                partial = bad_input = None
                try:
                    loss, correct = self.engine(order, epoch, progress)
                except TrainingDivergedError as exc:
                    exc.history = history
                    where = _checks.nonfinite_parameters(net.layers, net.optimizer) if exc.batch == 1 else None
                    if where is not None:        # not a divergence: the epoch began from NaN/Inf
                        raise NonFiniteStateError(exc.epoch, exc.batch, where, history) from None
                    raise
                except _checks.NonFiniteInput as exc:
                    bad_input = exc
                except Stop:
                    path = self._save(epoch - 1, rng_state, progress)
                    raise TrainingInterrupted(epoch, progress.batches, n_batches, history, path,
                                              signal_name=stop.signal_name) from None
                finally:
                    net.shuffle_state = (seed, rng.bit_generator.state)
                if bad_input is not None:
                    raise self._bad_input(bad_input)
                samples_seen += len(X)
                with signals.critical():       # the epoch's row, whole or not at all
                    self._record(epoch, loss, correct, lr, plan, began)
                stop_asked = run.any(run.call(lambda: self._epoch_end(epoch), "on_epoch_end"))
                interrupted = run.any(stop.requested)
                last = epoch == tr.epochs or stop_asked or interrupted
                if self.store is not None and (last or self.store.due(epoch)):
                    self._save(epoch, rng.bit_generator.state, stopped=stop_asked)
                if bar is not None:
                    bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items()
                                     if k not in ("time", "grad_norm") and v and isinstance(v[-1], float)})
                    bar.update(1)
                    if compiling is not False:      # said (True), or a notice that may have set "compiling" on
                        bar.set_description("training")      # the bar for a compile too short to speak of
                        compiling = False
                first_epoch.close()
                if interrupted:
                    self._agree_end(f"the end of epoch {epoch}")
                    raise TrainingInterrupted(epoch, n_batches, n_batches, history, tr.checkpoint,
                                              signal_name=stop.signal_name)
                if stop_asked:
                    break
        self._agree_end("the end of training (after the last epoch's callbacks)")
        run.call(lambda: self.callbacks.on_train_end(net), "on_train_end")
        self._agree_end("the end of training (after on_train_end)")
        if self.store is not None:
            self.store.returned()
        return history

    def _agree_end(self, where):
        """Distributed: the per-epoch agreement once more where no epoch follows (after the last epoch's
        callbacks, after on_train_end: a callback, EarlyStopping's restore of the best weights), so that
        no fit returns different weights on different ranks; nothing on one process."""
        def state():
            plan = self.net.plan()
            return self._shared_state(_epoch_state(self.net, plan, plan.optimizer, False))
        self.run.agree_epoch(lambda: None, state, where)

    def _shared_state(self, state):
        """``state`` (_epoch_state) with the shuffling stream's position (the next orders and Dropout keys)."""
        state["shuffling stream"] = _stream_digest(self.rng)
        return state

    def _begin_epoch(self, begin, epoch):
        """``begin()`` -> (plan, rebuild, order), through the run's per-epoch agreement (distributed: the
        state every rank must share, ``_epoch_state``, is compared after it)."""
        done = []

        def work():
            done.append(begin())
            return done[0]

        def state():
            plan, rebuild, _ = done[0]
            return self._shared_state(_epoch_state(self.net, plan, self.opt, rebuild))
        return self.run.agree_epoch(work, state, epoch)

    def _epoch_end(self, epoch):
        """The callbacks' on_epoch_end (True: stop), then the check of what they did to the history."""
        stop = self.callbacks.on_epoch_end(epoch, self.history)
        self._check_history(epoch)
        return stop

    def _say_compiling(self, run):
        """Before a verbose fit's first epoch: one line on stderr when the engine's kernel must be compiled
        first (seconds of silence otherwise look like a hang); True when it was said."""
        pending = getattr(self.engine, "compile_pending", None)
        if not (self.trainer.verbose and run.is_root and pending is not None):
            return False
        note = pending()
        if note:
            print(note, file=sys.stderr, flush=True)
        return bool(note)

    def _bad_input(self, exc):
        """The ValueError for NaN/Inf that the engine found in X (``exc`` a _checks.NonFiniteInput), after
        the network, its optimizer and its history are put back as they were before the fit: the same
        message as the check at the boundary gives."""
        with signals.critical():
            if self.snapshot is not None:
                self.snapshot.restore()
        given = self.given
        if not isinstance(given, np.ndarray):
            try:
                given = np.asarray(given)
            except (TypeError, ValueError):
                given = None
        full = self.X if given is None or len(self.X) == len(given) else self.net.check_input(given, "X", False)
        return _checks.nonfinite_error(full, "X", given) or ValueError(f"X: {exc}")

    @contextlib.contextmanager
    def _ending(self, bar):
        """However the epochs end: close the bar, take the scheduled rate out of the optimizer (the same
        call then resumes), report the checkpoint time — with a second signal held until done."""
        try:
            yield
        finally:
            with signals.critical():
                if bar is not None:
                    bar.close()
                if self.schedule is not None:
                    self.opt.lr = self.base_lr
                if self.store is not None:
                    self.trainer.checkpoint_seconds = self.store.seconds

    def _record(self, epoch, loss, correct, lr, plan, began):
        """Append the epoch's row to every list of the loop's history (validation included)."""
        net, history = self.net, self.history
        row = {"loss": loss, "lr": lr, "grad_norm": self.health.record(epoch, loss, plan)}
        if net.classification:
            row["accuracy"] = correct / len(self.X)
        if self.val is not None:
            scores = self.run.evaluate(net, *self.val)
            row["val_loss"] = scores["loss"]
            if net.classification:
                row["val_accuracy"] = scores["accuracy"]
        row["time"] = time.perf_counter() - began
        for key, value in row.items():
            history[key].append(value)

    def _check_history(self, epoch):
        """ValueError when a callback removed, replaced or cut a history list the loop fills."""
        history, dropped = self.history, self.store.dropped if self.store is not None else {}
        for key in self.keys:
            values = history.get(key)
            if not isinstance(values, list) or len(values) + dropped.get(key, 0) != epoch:
                raise ValueError(f"a callback changed history[{key!r}] at epoch {epoch} (it is "
                                 f"{type(values).__name__}{'' if not isinstance(values, list) else ' of ' + str(len(values))}"
                                 f"; the loop needs a list of one entry per epoch): callbacks may add history "
                                 f"keys, not remove or rewrite the loop's own")
        if self.store is not None:
            self.store.check_history(history, self.keys, epoch)
        if self.net.history is not history:     # a callback assigned another: the fit's history again (checked
            self.net.history = history          # only then: re-validating it every epoch costs O(epochs^2))

    @staticmethod
    def _structure(plan):
        return plan.layers, plan.loss, plan.optimizer

    def _follow(self, plan):
        """Take in what callbacks changed since the last epoch (see Trainer): the optimizer, the loss, the
        layers, the rate. True when the engine must be built again (the loss or the layers changed): the loop
        does it, after the ranks agreed (it is collective in a distributed fit)."""
        layers, loss, opt = self.captured
        rebuild = False
        if self.store is not None and (plan.optimizer is not opt or plan.loss is not loss):
            what = "net.optimizer" if plan.optimizer is not opt else "net.loss"
            raise ValueError(f"a callback replaced {what} in a fit with checkpoint=: the checkpoint would hold a "
                             f"network this fit's call cannot rebuild, so it could never be resumed; change "
                             f"{what} between fits instead")
        if plan.optimizer is not opt:
            self.opt = plan.optimizer                # the schedule drives the new optimizer, from its rate
            self.base_lr = self.opt.lr
        elif self.schedule is not None and self.lr_set is not None and self.opt.lr != self.lr_set:
            raise ValueError(f"a callback set the learning rate to {self.opt.lr!r} while lr_schedule drives it; "
                             f"change the rate with one of them, not both")
        if len(plan.layers) != len(layers) or any(a is not b for a, b in zip(plan.layers, layers)) \
                or plan.loss is not loss:
            tr, net = self.trainer, self.net
            what = "net.loss" if plan.loss is not loss else "the network's layers"
            try:
                self.X = net.check_input(self.X, "X")      # (a rebuild: checked here, where the message names it)
                self.y = net.check_target(self.y, self.X.shape[0], "y")
                if self.val is not None:
                    X_val = net.check_input(self.val[0], "validation X")
                    self.val = (X_val, net.check_target(self.val[1], X_val.shape[0], "validation y"))
                use_fused = self.run.use_fused(tr)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"a callback changed {what}, and the fit cannot go on with it: {exc}") from None
            if (self.val is not None) != ("val_loss" in self.history) or \
                    net.classification != ("accuracy" in self.history):
                raise ValueError(f"a callback changed {what} from a classifier to a regressor or back; the "
                                 f"history's keys would change: start a new fit instead")
            if self.store is not None and use_fused != self.use_fused:
                raise ValueError(f"a callback changed {what}, which moves a checkpointed fit to another "
                                 f"engine; its checkpoint could not be resumed")
            self.use_fused, rebuild = use_fused, True
        self.captured = self._structure(plan)
        return rebuild

    def _save(self, epoch, rng_state, progress=None, stopped=False):
        """Write the checkpoint (if any) after ``epoch`` epochs (and ``progress`` into the next); its path."""
        if self.store is None:
            return None
        partial = None if progress is None or progress.batches == 0 else progress.state()
        with signals.critical():
            self.store.write(epoch, rng_state, partial, self.opt.lr, self.stateful, stopped)
        return self.trainer.checkpoint


class _Snapshot:
    """What a fit may change and the user owns — the parameters and gradients, the optimizer's state, step
    count and rate, the network's history and shuffling state — copied (O(parameters)) so that ``restore``
    puts them back when the fit is refused after its engine started (bad input found by the kernel)."""

    def __init__(self, net, plan, state):
        opt = plan.optimizer
        self.net, self.plan, self.opt = net, plan, opt
        self.params = [p.copy() for p in plan.opt_params]
        self.grads = [g.copy() for g in plan.opt_grads]
        self.state_object = state         # the optimizer's state before the plan checked it (None on a first fit)
        self.state = None if state is None else [[s.copy() for s in slots] for slots in state]
        self.steps, self.lr = opt.steps, opt.lr
        self.history, self.shuffle_state = net.history, net.shuffle_state

    def restore(self):
        net, opt = self.net, self.opt
        with net.weights_changing():
            for live, saved in zip(self.plan.opt_params + self.plan.opt_grads, self.params + self.grads):
                live[...] = saved
        if self.state is not None:
            for live, saved in zip(self.state_object, self.state):
                for a, b in zip(live, saved):
                    a[...] = b
        opt.state = self.state_object
        opt.steps, opt.lr = self.steps, self.lr
        net.history, net.shuffle_state = self.history, self.shuffle_state


def _epoch_state(net, plan, opt, rebuild):
    """What every rank of a distributed fit must share when an epoch starts (name -> text), compared by the
    per-epoch agreement: the rate, the optimizer's other hyperparameters and step count, a checksum of the
    weights and the optimizer's state, the network's structure — whatever a callback or schedule could have
    changed on one rank only. O(parameters) to checksum."""
    import json
    import zlib
    digest = 0           # CRC-32 (~5 GB/s: 0.5 ms for Adam on 235k parameters) — it finds accidents, not attacks
    arrays = list(plan.opt_params) + [a for slots in (opt.state or ()) for a in slots]
    for a in arrays:
        digest = zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"), digest)
    try:
        hyper = {k: v for k, v in opt.config().items() if k != "lr"}
    except NotImplementedError:           # a user's optimizer without config(): its type and rate only
        hyper = {}
    return {
        "learning rate": repr(opt.lr),
        "optimizer": f"{type(opt).__name__}({json.dumps(hyper, sort_keys=True, default=repr)}), step {opt.steps}",
        "weights and optimizer state (checksum)": f"{digest:08x}",
        "network": " -> ".join(type(layer).__name__ for layer in plan.layers) + f", loss {type(plan.loss).__name__}"
                   + (" (changed by a callback)" if rebuild else ""),
    }


def _check_net(net):
    if not isinstance(net, NeuralNetwork):
        raise TypeError(f"net must be a fastnn NeuralNetwork, got {type(net).__name__}")
    return net


def _flag_value(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r:.80}")
    return bool(value)


def _check_validation_data(value):
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"validation_data must be None or a pair (X_val, y_val), got {type(value).__name__}")
    return tuple(value)


def _check_split(split):
    if isinstance(split, (bool, np.bool_)) or not isinstance(split, numbers.Real) or not 0 <= split < 1:
        raise ValueError(f"validation_split must be a number in [0, 1), got {split!r:.80}")
    return float(split)


def _check_verbose(verbose):
    if isinstance(verbose, (str, bytes)) or not isinstance(verbose, (numbers.Integral, np.bool_)) \
            or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r:.80}")
    return int(verbose)


def _check_fused(fused):
    if isinstance(fused, (bool, np.bool_)):
        return bool(fused)
    if not (isinstance(fused, str) and fused == "auto"):      # 1, 0, 1.0 are not booleans here
        raise ValueError(f"fused must be 'auto', True or False, got {fused!r:.80}")
    return fused


def _check_checkpoint(path):
    if path is None:
        return None
    from .checkpoint import check_path
    return check_path(path)


def _check_schedule(schedule):
    if schedule is None:
        return None
    from . import schedules
    return schedules.get(schedule)


def _check_distributed(distributed):
    if isinstance(distributed, (bool, np.bool_)) or distributed is None:
        return bool(distributed)
    if not hasattr(distributed, "Allreduce"):
        raise TypeError(f"distributed must be True, False or an MPI communicator, got {distributed!r:.80}")
    return distributed


def _check_sample_order(sample_order):
    if sample_order is not None and not callable(sample_order):
        raise TypeError(f"sample_order must be None or a callable n -> order, got {type(sample_order).__name__}")
    return sample_order


def _checked_order(order, n):
    """A sample order from a user's ``sample_order``: a permutation of range(n) as C-contiguous int64 (the
    kernels index X with it)."""
    what = f"sample_order must return a permutation of range({n}) as integers (each sample once)"
    if not isinstance(order, (np.ndarray, list, tuple, range)):
        raise TypeError(f"{what}, got {type(order).__name__}")
    try:
        arr = np.asarray(order)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}, got {type(order).__name__} ({exc})") from None
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise TypeError(f"{what}, got dtype {arr.dtype} (positions are not rounded or truncated)")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(what)
    order = np.ascontiguousarray(arr, dtype=np.int64)
    if order.shape != (n,) or (n and (order.min() < 0 or order.max() >= n)) or \
            not np.all(np.bincount(order, minlength=n) == 1):
        raise ValueError(f"sample_order must return a permutation of range({n}) (each sample once)")
    return order


def _stream_digest(rng):
    """A short digest of the shuffling stream's state (compared between the ranks of a distributed fit)."""
    import hashlib
    text = repr(rng.bit_generator.state).encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _shuffle_stream(net, seed):
    """The generator of sample orders: the network's stream when it was made from the same seed (repeated
    fits continue it), else a new one from ``seed``."""
    rng = np.random.default_rng(seed)
    saved = net.shuffle_state
    if saved is not None and seed is not None and saved[0] == seed:
        rng.bit_generator.state = saved[1]
    return rng


def _check_class_weight(class_weight):
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return class_weight
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict class id -> weight, got "
                        f"{type(class_weight).__name__}")
    checked = {}
    for k, w in class_weight.items():
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"class_weight keys must be class ids (integers >= 0), got {k!r}")
        checked[int(k)] = _checks.positive_float(w, f"class_weight[{k}]", allow_zero=True)
    return checked


def _class_weights(class_weight, y, net, weights):
    """Sample weights times the weight of each sample's class (labelled classification only)."""
    if not net.classification or y.ndim != 1:
        raise ValueError("class_weight needs class-id targets (batch,) of a classifier")
    n_classes = net.n_outputs
    if class_weight == "balanced":     # scikit-learn's: n_samples / (n_classes_present * count)
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        table = np.zeros(n_classes)
        present = counts > 0
        table[present] = len(y) / (present.sum() * counts[present])
    else:
        unknown = [k for k in class_weight if k >= n_classes]
        if unknown:
            raise ValueError(f"class_weight has class ids {unknown} but the network has {n_classes} outputs")
        table = np.ones(n_classes)
        for k, w in class_weight.items():
            table[k] = w
    limit = np.finfo(net.dtype).max
    if table.max(initial=0) > limit:
        raise ValueError(f"class_weight has a weight of {table.max():.3g}, beyond the network's "
                         f"{np.dtype(net.dtype).name} range (max {limit:.3g})")
    per_sample = table[y].astype(net.dtype)
    if not per_sample.any():
        raise ValueError("class_weight gives weight 0 to every class present in y (no sample would train)")
    with np.errstate(over="ignore"):
        combined = per_sample if weights is None else weights * per_sample
    if not np.isfinite(combined).all():
        raise ValueError(f"sample_weight times class_weight exceeds the network's {np.dtype(net.dtype).name} range")
    return combined


def new_history(classification, validation):
    """The empty per-epoch history of a fit: the keys it will fill, in the order they are reported."""
    keys = ["loss"] + (["accuracy"] if classification else [])
    if validation:
        keys += ["val_loss"] + (["val_accuracy"] if classification else [])
    return {key: [] for key in keys + ["lr", "grad_norm", "time"]}


COMPILE_LINE = "fastnn: compiling kernels (first run only, a few seconds)"
#: seconds of compiling after which CompileNotice speaks (the issue's "when compiling will take over a second")
COMPILE_NOTICE_AFTER = 1.0


class CompileNotice(event.Listener):
    """While it is entered: once Numba has spent ``COMPILE_NOTICE_AFTER`` seconds compiling (not loading from
    its cache) in this thread and is still at it, one line (``COMPILE_LINE``) on stderr says so, once; a
    progress bar ``bar`` reads "compiling" from the first compile on. For a fit whose engine cannot tell ahead
    what it will compile (the per-layer engine; a validation pass's kernels), the estimators' verbose fits and
    the CLI without a terminal: seconds of silence look like a hang, a short compile needs no word.
    True (as a value) once it has spoken."""

    def __init__(self, bar=None):
        self.bar, self.said, self.thread = bar, False, threading.get_ident()
        self._listening = self._timer = None
        self._depth, self._spent, self._since = 0, 0.0, 0.0
        self._lock = threading.Lock()

    def __bool__(self):
        return self.said

    def _started(self):
        self._depth += 1
        if self._depth > 1 or self.said:
            return
        if self.bar is not None:
            self.bar.set_description("compiling")
        self._since = time.perf_counter()
        remaining = COMPILE_NOTICE_AFTER - self._spent
        if remaining <= 0:
            self._say(armed=False)
            return
        self._timer = threading.Timer(remaining, self._say)
        self._timer.daemon = True
        self._timer.start()

    def _ended(self):
        self._depth -= 1
        if self._depth == 0 and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._spent += time.perf_counter() - self._since

    def _say(self, armed=True):
        with self._lock:
            if self.said or (armed and self._timer is None):      # (cancelled: the compile ended first)
                return
            self.said = True
        if self.bar is not None:
            self.bar.write(COMPILE_LINE, file=sys.stderr)
        else:
            print(COMPILE_LINE, file=sys.stderr, flush=True)

    def on_start(self, ev):                   # (numba.core.event.Listener)
        if threading.get_ident() == self.thread:
            self._started()

    def on_end(self, ev):
        if threading.get_ident() == self.thread:
            self._ended()

    def __enter__(self):
        self._listening = event.install_listener("numba:compile", self)
        self._listening.__enter__()
        return self

    def __exit__(self, *exc):
        listening, self._listening = self._listening, None
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        return listening.__exit__(*exc) if listening is not None else None


def _progress(total, verbose, initial=0, compiling=False):
    """The epochs' progress bar (None when not verbose); its description says "compiling" until the first
    epoch, which compiles the kernel, is done."""
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="epoch", desc="compiling" if compiling else "training",
                leave=True)


network.provide("Trainer", Trainer)
