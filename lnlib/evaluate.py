"""Evaluate once, analyse many times: logits of the ID test set and of every OOD set, cached per run.

``logits(run)`` returns ``{set_name: Logits}`` and writes ``<run>/logits/<set>.npz`` the first time; every
score, metric, figure and table afterwards is a pure function of these arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lnlib import metrics, scores
from lnlib.config import QUICK_EVAL_SIZE, TrainConfig
from lnlib.data import ID_SETS, OOD_SETS, OOD_SIZE, ImageSet, load_id, load_ood, to_device
from lnlib.runs import Run, atomic_write_bytes

ID_TEST = "id_test"  # key of the ID test set among the evaluated sets


@dataclass
class Logits:
    """Raw model outputs for one set: ``logits`` float32 (N, K) and ``labels`` int64 (N,) (−1 for OOD)."""

    logits: np.ndarray
    labels: np.ndarray


@torch.inference_mode()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits ``(N, K)`` float32 of normalised inputs ``x`` ``(N, C, H, W)``, in eval mode, in batches."""
    was_training = model.training
    model.eval()
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    out = []
    for chunk in x.split(batch_size):
        if channels_last and chunk.ndim == 4:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        out.append(model(chunk).float())
    model.train(was_training)
    return torch.cat(out)


def evaluation_sets(cfg: TrainConfig, ood_names=None) -> dict[str, ImageSet]:
    """The ID test set and the offline OOD sets a run is evaluated on (subsets when ``cfg.quick``)."""
    test = load_id(cfg.dataset)["test"]
    n_ood = QUICK_EVAL_SIZE if cfg.quick else OOD_SIZE
    sets = {ID_TEST: test.subset(QUICK_EVAL_SIZE) if cfg.quick else test}
    for name in OOD_SETS if ood_names is None else ood_names:
        sets[name] = load_ood(name, test, n=n_ood, seed=0)
    return sets


def compute_logits(run: Run, model: torch.nn.Module, device, sets: dict[str, ImageSet]) -> dict[str, Logits]:
    """Compute and cache the logits of ``sets`` for ``model`` (overwrites the cache)."""
    spec = ID_SETS[run.config.dataset]
    out_dir = run.path / "logits"
    out_dir.mkdir(exist_ok=True)
    result = {}
    for name, s in sets.items():
        z = predict(model, to_device(s.images, spec, device), run.config.eval_batch_size).cpu().numpy()
        result[name] = Logits(z, s.labels.numpy())
        _save_npz(out_dir / f"{name}.npz", logits=z, labels=result[name].labels)
    return result


def _save_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(buffer.getvalue(), path)


def logits(run: Run, names=None, device="cpu") -> dict[str, Logits]:
    """Cached logits of ``names`` (default: ID test + every offline OOD set); computes missing ones."""
    names = list(names or [ID_TEST, *OOD_SETS])
    cached = {n: run.path / "logits" / f"{n}.npz" for n in names}
    missing = [n for n, p in cached.items() if not p.exists()]
    if missing:
        sets = evaluation_sets(run.config, [n for n in missing if n != ID_TEST])
        sets = {n: s for n, s in sets.items() if n in missing}
        compute_logits(run, run.load_model(device), device, sets)
    out = {}
    for n, p in cached.items():
        with np.load(p) as f:
            out[n] = Logits(f["logits"], f["labels"])
    return out


def ood_table(evaluated: dict[str, Logits], positive: str = "id") -> dict:
    """MSP-based OOD metrics of every OOD set against the ID test set, plus their average.

    Scores are :func:`lnlib.scores.log_msp` (rank-equivalent to MSP, no float ties). Returns a JSON-ready
    dict with the convention spelled out.
    """
    id_scores = scores.log_msp(evaluated[ID_TEST].logits)
    per_set = {}
    for name, z in evaluated.items():
        if name != ID_TEST:
            per_set[name] = {**metrics.ood_metrics(id_scores, scores.log_msp(z.logits), positive),
                             "n": int(len(z.logits))}
    keys = ("fpr95", "auroc", "aupr_in", "aupr_out")
    average = {k: float(np.mean([m[k] for m in per_set.values()])) for k in keys}
    return {
        "score": "msp",
        "convention": (f"FPR95 with {positive.upper()} as the positive class at 95% TPR; fractions in [0, 1]; "
                       f"higher score = more in-distribution"),
        "n_id": int(len(evaluated[ID_TEST].logits)),
        "sets": per_set,
        "average": average,
    }
