"""fastnn info: describe a saved model"""
import os

from ._common import (EXIT_OK, _fmt, _Formatter, _load_model, _text)
from .train import describe_batch

HELP_INFO = """\
Print a model file's architecture, parameter count, optimizer, training settings, final scores and format
version (the file is checked, never executed).
"""


def describe_architecture(arch):
    """'64 -> FullyConnected(128) -> ReLU -> FullyConnected(10)' from a network config dict."""
    layers = arch.get("layers", []) if isinstance(arch, dict) else []
    parts = []
    for entry in layers:
        name, cfg = (entry + [{}])[:2] if isinstance(entry, list) else (str(entry), {})
        if name == "FullyConnected" and isinstance(cfg, dict):
            if not parts:
                parts.append(str(cfg.get("in_features", "?")))
            parts.append(f"FullyConnected({cfg.get('out_features', '?')}, init={cfg.get('init', '?')})")
        else:
            parts.append(str(name))
    return " -> ".join(parts)


def _describe_preprocessing(pre):
    """One line: what the model does to raw columns (stored in the file, applied everywhere)."""
    cols = pre.columns
    scaled = [c for c in cols if c["kind"] == "numeric" and c["mean"] is not None]
    filled = [c for c in cols if c["fill"] is not None]
    onehot = [c for c in cols if c["kind"] == "categorical"]
    parts = [f"{len(cols)} raw columns -> {pre.n_features} inputs"]
    if scaled:
        shown = ", ".join(f"{c['mean']:.4g}/{c['std']:.4g}" for c in scaled[:4])
        parts.append(f"standardized with the training rows' mean/std of {len(scaled)} features ({shown}"
                     f"{', ...' if len(scaled) > 4 else ''})")
    if onehot:
        parts.append("one-hot " + ", ".join(f"{c['name']} ({', '.join(c['categories'][:5])}"
                                            f"{', ...' if len(c['categories']) > 5 else ''})" for c in onehot))
    if filled:
        parts.append("missing cells filled: " + ", ".join(
            f"{c['name']}={c['fill']:.4g}" if isinstance(c["fill"], float) else f"{c['name']}={c['fill']}"
            for c in filled[:6]) + (", ..." if len(filled) > 6 else ""))
    if pre.target is not None:
        parts.append("regression target scaled (predictions in its units: mean "
                     + ", ".join(f"{m:.4g}" for m in pre.target["mean"]) + ", std "
                     + ", ".join(f"{s:.4g}" for s in pre.target["std"]) + ")")
    return "; ".join(parts) + "; predict, evaluate and the ONNX graph apply it to raw inputs"


def _describe_scaling(scaling):
    mean, std = scaling.get("mean"), scaling.get("std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std)):
        return "standardized (malformed values)"
    shown = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(mean[:4], std[:4])
                      if isinstance(m, (int, float)) and isinstance(s, (int, float)))
    more = ", ..." if len(mean) > 4 else ""
    return (f"standardized with the training rows' mean/std of {len(mean)} features ({shown}{more}); "
            f"predict and evaluate apply it to raw inputs")


def _describe_checkpoint(state):
    """A training checkpoint's position and settings, without its generator state or data fingerprint."""
    s = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    distributed = str(s.get("path") or "").startswith("distributed")
    schedule = s.get("lr_schedule")
    parts = [f"after epoch {state.get('epoch')}"
             + (f" and {state['partial'].get('batches')} batches of the next"
                if isinstance(state.get("partial"), dict) else ""),
             _checkpoint_batch(s, state), f"shuffle {'on' if s.get('shuffle') else 'off'}",
             f"seed {s.get('seed')}", f"{s.get('n_samples')} training samples",
             "validation data" if s.get("validation") else "no validation data",
             f"{s.get('path')} path" if s.get("path") else None,
             f"lr schedule {schedule.get('type')}" if isinstance(schedule, dict) else None,
             "sample weights" if s.get("weights") else None,
             _written_with(state.get("threads"), distributed)]
    return ", ".join(p for p in parts if p)


def _checkpoint_batch(settings, state):
    """'batch 64'; a distributed fit's checkpoint holds the global batch (ranks x local batch): 'batch 2 ranks
    x 32 = 64 global' when it says its ranks, else 'global batch 64 (ranks x --batch-size)'."""
    batch, ranks = settings.get("batch_size"), state.get("ranks")
    if not str(settings.get("path") or "").startswith("distributed"):
        return f"batch {batch}"
    if isinstance(ranks, int) and not isinstance(ranks, bool) and ranks > 0 and isinstance(batch, int) \
            and batch % ranks == 0:
        return describe_batch(batch // ranks, ranks)
    return f"global batch {batch} (ranks x --batch-size)"


def _written_with(threads, distributed):
    if not threads:
        return None
    return f"written with {threads} thread{'' if threads == 1 else 's'}" + (" per rank" if distributed else "")


def cmd_info(args):
    net, meta, extra = _load_model(args.model)
    size = os.path.getsize(args.model)
    arch = meta.get("architecture", {})
    loss = (arch.get("loss") or ["?"])[0]
    opt = arch.get("optimizer")
    opt_name, opt_cfg = (opt[0], opt[1]) if isinstance(opt, list) and len(opt) == 2 else ("?", {})
    opt_args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opt_cfg.items())
    rows = [("model", f"{args.model} ({size:,} bytes, safetensors, fastnn format version "
                      f"{meta.get('format_version')})"),
            ("architecture", describe_architecture(arch)),
            ("loss", f"{loss} ({'classification' if net.classification else 'regression'}, "
                     f"{net.n_outputs} output{'s' if net.n_outputs != 1 else ''})"),
            ("parameters", f"{net.n_params:,} ({meta.get('dtype', net.dtype.name)})"),
            ("optimizer", f"{opt_name}({opt_args}), {meta.get('optimizer_steps', 0):,} steps taken")]
    if isinstance(extra.get("classes"), list):
        rows.append(("classes", ", ".join(str(c) for c in extra["classes"])))
    if isinstance(extra.get("features"), list):
        dropped = extra.get("dropped") if isinstance(extra.get("dropped"), list) else []
        rows.append(("features", ", ".join(map(str, extra["features"]))
                     + (f" (dropped: {', '.join(map(str, dropped))})" if dropped else "")))
    pre = net.preprocessing
    if pre is not None:
        rows.append(("inputs", _describe_preprocessing(pre)))
    state = extra.get("checkpoint")
    if isinstance(state, dict):
        rows.append(("checkpoint", _describe_checkpoint(state)))
    if extra.get("trained_with"):
        settings = [f"data {extra.get('data')}", f"{extra.get('n_train', '?'):,} samples"
                    if isinstance(extra.get("n_train"), int) else None,
                    f"hidden {','.join(str(h) for h in extra.get('hidden', [])) or 'none'}",
                    f"activation {extra.get('activation')}", f"{extra.get('optimizer')} lr {extra.get('lr')}",
                    f"momentum {extra.get('momentum')}" if extra.get("optimizer") == "sgd" else None,
                    f"{extra.get('epochs')} epochs", describe_batch(extra.get("batch_size"), extra.get("ranks")),
                    f"seed {extra.get('seed')}",
                    f"validation split {extra.get('val_split')}" if extra.get("val_split") else None,
                    f"trained in {extra.get('train_time_s'):.2f} s"
                    if isinstance(extra.get("train_time_s"), (int, float)) else None]
        rows.append(("training", ", ".join(s for s in settings if s)))
        scores = [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in extra.items()
                  if k.split("_")[0] in ("test", "validation", "train") and k.split("_")[-1] in ("accuracy", "loss")
                  and isinstance(v, (int, float))]
        if scores:
            rows.append(("scores", ", ".join(scores)))
    else:
        others = {k: v for k, v in extra.items() if k != "checkpoint" and isinstance(v, (int, float, str, bool))}
        if others:
            rows.append(("extra", ", ".join(f"{k}={v}" for k, v in others.items())[:300]))
    history = meta.get("history") or {}
    if history.get("loss"):
        epochs = state.get("epoch") if isinstance(state, dict) and isinstance(state.get("epoch"), int) \
            else len(history["loss"])
        last = ", ".join(f"{k} {_fmt(v[-1])}" for k, v in history.items()
                         if v and k != "time" and isinstance(v[-1], (int, float)))  # not per-layer lists
        rows.append(("history", f"{epochs:,} epochs trained; last epoch: {last}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK



def add_parser(sub):
    import fastnn
    p = sub.add_parser("info", formatter_class=_Formatter, help="describe a saved model",
                       description=_text(HELP_INFO))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.set_defaults(func=cmd_info, prog_=p.prog)

