"""Evaluate once, analyse many times: model outputs on the ID test/validation sets and every OOD set, cached.

``outputs(run)`` returns ``{set_name: Outputs}`` and writes ``<run>/logits/<set>.npz`` (logits, labels and
penultimate features) the first time; scores that need the model itself (ODIN) are cached once per
parameter setting in ``<run>/scores/<score>-<params>/<set>.npy`` (:func:`set_scores`). Every score, metric,
figure and table afterwards is a pure function of these arrays, so re-evaluating a finished run costs nothing.
The tidy record frames built from them are in :mod:`lnlib.tidy`. Models run on the device that
:func:`lnlib.devices.resolve_device` picks (``device="auto"``: the GPU if there is one).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from lnlib import data, metrics, paper_sets, scores
from lnlib.config import QUICK_EVAL_SIZE, TrainConfig
from lnlib.data import (
    CIFAR,
    ID_SETS,
    NEAR_OOD,
    OOD_SETS,
    OOD_SIZE,
    VALIDATION_OOD_SETS,
    ImageSet,
    load_ood,
    run_splits,
    to_device,
)
from lnlib.devices import resolve_device
from lnlib.files import DataMissingError, atomic_numpy_save, data_dir
from lnlib.paper_sets import FASHION_MNIST_SETS, PAPER_OOD_SETS, TABLE1_SETS
from lnlib.runs import Run

ID_TEST = "id_test"  # key of the ID test set among the evaluated sets
ID_VAL = "id_val"  # the held-out validation split of the ID training set (temperature scaling)
ID_KEYS = (ID_TEST, ID_VAL)
OOD_METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")


@dataclass
class Outputs:
    """Model outputs for one set: ``logits`` float32 (N, K), ``labels`` int64 (N,) (−1 for OOD) and the
    penultimate ``features`` float32 (N, D) that ``logits = head(features)`` is computed from."""

    logits: np.ndarray
    labels: np.ndarray
    features: np.ndarray


@torch.inference_mode()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = TrainConfig.eval_batch_size,
            features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` float32 of normalised inputs ``x`` ``(N, C, H, W)``, in eval mode, in batches.

    With ``features=True`` returns ``(logits, features (N, D))``, in the order of :class:`Outputs`, the logits
    computed as ``head(features)`` (what ``model(x)`` computes too, see :class:`lnlib.models.Classifier`).
    """
    was_training = model.training
    model.eval()
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    feats, out = [], []
    for chunk in x.split(batch_size):
        if channels_last and chunk.ndim == 4:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        if features:
            h = model.features(chunk)
            feats.append(h.float())
            out.append(model.head(h).float())
        else:
            out.append(model(chunk).float())
    model.train(was_training)
    return (torch.cat(out), torch.cat(feats)) if features else torch.cat(out)


def ood_sets(cfg: TrainConfig) -> list[str]:
    """The OOD sets a run is evaluated on: the near-OOD set ``held_out`` where the run holds classes out; every
    offline set; for CIFAR ID sets the six full-scale sets of the LogitNorm paper's Table 1
    (:mod:`lnlib.paper_sets`, fetched once), used whole; for Fashion-MNIST, MNIST and KMNIST wherever
    ``make data SETS="mnist kmnist"`` has fetched them (they need internet once)."""
    near = near_sets(cfg)
    if cfg.dataset in CIFAR:
        return [*near, *OOD_SETS, *TABLE1_SETS]
    fetched = [n for n in FASHION_MNIST_SETS if paper_sets.available(n)] if cfg.dataset == "fashion_mnist" else []
    return [*near, *OOD_SETS, *fetched]


def near_sets(cfg: TrainConfig) -> list[str]:
    """The near-OOD set :data:`~lnlib.data.NEAR_OOD` where ``cfg`` holds classes out of training, else none."""
    return [NEAR_OOD] if cfg.held_out else []


def default_sets(cfg: TrainConfig) -> list[str]:
    """What a run is evaluated on: ID test, ID validation (when ``val_size > 0``) and :func:`ood_sets`."""
    return [ID_TEST, *([ID_VAL] if cfg.val_size else []), *ood_sets(cfg)]


def check_data(cfg: TrainConfig) -> None:
    """Raise :class:`~lnlib.files.DataMissingError` naming *every* set a run of ``cfg`` needs that is not on this
    machine, with the one command that gets them all; before any folder is made or model built."""
    needed = [cfg.dataset, *(name for name in ood_sets(cfg) if name in PAPER_OOD_SETS)]
    missing = [name for name in needed if not (data.available(name) if name in ID_SETS else paper_sets.available(name))]
    if missing:
        raise DataMissingError(
            f"this run needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not on this machine "
            f"(looked in {data_dir()}). Get {'it' if len(missing) == 1 else 'them all'} with: "
            f'make data SETS="{" ".join(missing)}"   (internet once; or place the archives in '
            f"{data_dir() / 'raw'} by hand: they are checked and used)")


def evaluation_sets(cfg: TrainConfig, names=None) -> dict[str, ImageSet]:
    """The images of ``names`` (default :func:`default_sets`), as subsets of ``QUICK_EVAL_SIZE`` when quick. The ID
    sets lack the run's held-out classes, whose test images are the set ``held_out``."""
    names = default_sets(cfg) if names is None else list(names)
    known = [*ID_KEYS, *near_sets(cfg), *OOD_SETS, *VALIDATION_OOD_SETS, *PAPER_OOD_SETS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown evaluation sets {unknown}; choose from {known}")
    if ID_VAL in names and not cfg.val_size:
        raise ValueError(f"set {ID_VAL!r} needs a validation split, but val_size=0")
    splits = run_splits(cfg.dataset, cfg.val_size, cfg.held_out)
    n_ood = QUICK_EVAL_SIZE if cfg.quick else OOD_SIZE
    sets = {}
    for name in names:
        if name in (ID_TEST, ID_VAL, NEAR_OOD):
            sets[name] = splits[{ID_TEST: "test", ID_VAL: "val"}.get(name, name)]
        elif name in PAPER_OOD_SETS:  # all of it; the official code scores len(test)//5 sampled images
            sets[name] = paper_sets.load(name, tuple(splits["test"].images.shape[1:]))
        else:  # generated like the ID test images (permuted: from them)
            sets[name] = load_ood(name, splits["test"], n=n_ood, seed=0)
        if cfg.quick and (name in (*ID_KEYS, NEAR_OOD) or name in PAPER_OOD_SETS):
            sets[name] = sets[name].subset(QUICK_EVAL_SIZE)
    return sets


def compute_outputs(run: Run, model: torch.nn.Module, device, sets: dict[str, ImageSet]) -> dict[str, Outputs]:
    """Compute and cache the logits and features of ``sets`` for ``model`` on ``device`` (overwrites the cache)."""
    spec = ID_SETS[run.config.dataset]
    out_dir = run.file(Run.LOGITS)
    out_dir.mkdir(exist_ok=True)
    result = {}
    for name, s in sets.items():
        z, h = predict(model, to_device(s.images, spec, device), run.config.eval_batch_size, features=True)
        result[name] = Outputs(z.cpu().numpy(), s.labels.numpy(), h.cpu().numpy())
        atomic_numpy_save(out_dir / f"{name}.npz", np.savez, logits=result[name].logits, labels=result[name].labels,
                          features=result[name].features)
    run.record_digests(*(f"logits/{name}.npz" for name in sets))
    return result


def _load_npz(run: Run, name: str) -> Outputs | None:
    """A cached set, or None if it is missing, predates cached features, is not the file lnlib wrote (its
    digest) or cannot be read: then it is recomputed."""
    path = run.file(Run.LOGITS, f"{name}.npz")
    if not path.exists() or not run.intact(f"logits/{name}.npz"):
        return None
    try:
        with np.load(path) as f:
            return Outputs(f["logits"], f["labels"], f["features"]) if "features" in f else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


def outputs(run: Run, names=None, device="auto") -> dict[str, Outputs]:
    """Cached outputs of ``names`` (default :func:`default_sets`); computes missing ones from ``model.pt``."""
    names = default_sets(run.config) if names is None else list(names)
    out = {n: _load_npz(run, n) for n in names}
    missing = [n for n, v in out.items() if v is None]
    if missing:
        sets = evaluation_sets(run.config, missing)  # validates the names before loading the model
        device = resolve_device(device)
        out.update(compute_outputs(run, run.load_model(device), device, sets))
    return out


# ------------------------------------------------------------------------------------------- scores
def set_scores(run: Run, score: str, names=None, device="auto", **params) -> dict[str, np.ndarray]:
    """Scores (higher = more ID) of ``names`` under ``score`` with ``params`` (see :data:`lnlib.scores.SCORES`).

    Scores of logits or features come from the cached outputs. A score that needs the model (ODIN) is
    computed once per parameter setting and cached in ``<run>/scores/``. ``normalized_confidence`` takes
    the run's ``tau`` unless ``tau`` is given.
    """
    if score == "normalized_confidence":
        params.setdefault("tau", run.config.tau)
    params = scores.score_params(score, **params)  # raises on bad names before any work
    names = default_sets(run.config) if names is None else list(names)
    if scores.SCORES[score].needs != "model":
        return {n: scores.from_outputs(score, o.logits, o.features, **params)
                for n, o in outputs(run, names, device).items()}
    folder = run.file(Run.SCORES, score + "".join(f"-{k}{v:g}" for k, v in sorted(params.items())))
    result = {n: np.load(folder / f"{n}.npy") for n in names if (folder / f"{n}.npy").exists()}
    missing = [n for n in names if n not in result]
    if missing:
        device = resolve_device(device)
        spec, model = ID_SETS[run.config.dataset], run.load_model(device)
        folder.mkdir(parents=True, exist_ok=True)
        for name, s in evaluation_sets(run.config, missing).items():
            x = to_device(s.images, spec, device)
            result[name] = scores.odin(model, x, std=spec.std, batch_size=run.config.eval_batch_size, **params)
            atomic_numpy_save(folder / f"{name}.npy", np.save, result[name])
    return {n: result[n] for n in names}


def ood_table(evaluated: dict[str, Outputs], positive: str = "id") -> dict:
    """MSP-based OOD metrics of every OOD set against the ID test set, plus their average (metrics.json).

    Scores are :func:`lnlib.scores.log_msp` (rank-equivalent to MSP, no float ties). Returns a JSON-ready
    dict with the convention spelled out.
    """
    by_set = {n: scores.log_msp(z.logits) for n, z in evaluated.items()}
    per_set = {name: {**m, "n": n} for name, (m, n) in ood_metrics_per_set(by_set, positive).items()}
    average = {k: float(np.mean([m[k] for m in per_set.values()])) for k in OOD_METRICS}
    return {"score": "msp", "convention": convention(positive), "n_id": int(len(by_set[ID_TEST])),
            "sets": per_set, "average": average}


def convention(positive: str = "id", protocol: str = "all") -> str:
    """The metric convention, in words, for table captions."""
    images = ("every OOD image scored once" if protocol == "all" else
              f"the official protocol: len(ID test)//5 OOD images drawn, {metrics.OFFICIAL_DRAWS} draws averaged")
    return (f"FPR95 with {positive.upper()} as the positive class at 95% TPR; "
            f"higher score = more in-distribution; {images}")


def ood_metrics_per_set(by_set: dict[str, np.ndarray], positive: str = "id", protocol: str = "all"):
    """``{ood_set: (metrics, n_ood)}`` against the ID test set, for every OOD set among ``by_set``'s keys."""
    return {n: metrics.ood_metrics_protocol(by_set[ID_TEST], s, positive, protocol)
            for n, s in by_set.items() if n not in ID_KEYS}


def per_set(run: Run, fn, names=None, device="auto") -> dict[str, np.ndarray]:
    """``{set: fn(logits)}`` over the cached outputs, e.g. ``per_set(run, scores.msp)`` for histograms of the
    actual MSP values (``set_scores`` returns the ranking form)."""
    return {n: fn(o.logits) for n, o in outputs(run, names, device).items()}


def split_by_correctness(run: Run, values_fn, device="auto") -> dict[str, np.ndarray]:
    """``values_fn(logits)`` on the ID test images the model classifies correctly and on those it gets wrong."""
    test = outputs(run, [ID_TEST], device)[ID_TEST]
    correct = test.logits.argmax(axis=1) == test.labels
    values = values_fn(test.logits)
    return {"ID test, correct": values[correct], "ID test, wrong": values[~correct]}
