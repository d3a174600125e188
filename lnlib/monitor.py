"""What the training loop measures after an epoch, in eval mode and without drawing a random number (so measuring
more or fewer epochs changes no weight): accuracy, the distribution of the logit norm ‖f(x)‖₂ and of the
max-softmax confidence on a probe of the training set, the ID test set and one OOD set (:func:`measure`, one row of
``history.csv``), and MSP-based OOD detection on every OOD set (:func:`ood_along_training`, ``ood_history.csv``).
These are the quantities the LogitNorm paper's argument rests on (Wei et al. 2022, section 3: the norm keeps
growing under cross-entropy)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lnlib import metrics, scores
from lnlib.evaluate import ID_TEST, predict


def logit_stats(logits: torch.Tensor, prefix: str) -> dict[str, float]:
    """Mean and 10/50/90th percentiles of ‖f‖₂, and mean max-softmax confidence, of logits (N, K)."""
    norms = torch.linalg.vector_norm(logits.double(), dim=1)
    q = torch.quantile(norms, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=norms.device))
    msp = torch.softmax(logits.double(), dim=1).amax(dim=1)
    return {f"{prefix}_norm_mean": norms.mean().item(), f"{prefix}_norm_p10": q[0].item(),
            f"{prefix}_norm_p50": q[1].item(), f"{prefix}_norm_p90": q[2].item(),
            f"{prefix}_msp_mean": msp.mean().item()}


def measure(model: torch.nn.Module, monitor: dict, batch_size: int) -> tuple[dict[str, float], dict]:
    """The per-epoch measurements, in eval mode: test accuracy and cross-entropy, clean training accuracy,
    and :func:`logit_stats` of ``monitor``'s ``train`` (probe), ``test`` and ``ood`` sets ``(x, labels)``.

    Returns ``(row, logits)``: the measurements, and the logits ``(N, K)`` of ``test`` and ``ood``, which
    :func:`ood_along_training` reuses."""
    (probe_x, probe_y), (test_x, test_y), (ood_x, _) = monitor["train"], monitor["test"], monitor["ood"]
    test_logits = predict(model, test_x, batch_size)
    row = {"test_acc": (test_logits.argmax(1) == test_y).float().mean().item(),
           "test_ce": F.cross_entropy(test_logits, test_y).item()}
    probe_logits, ood_logits = predict(model, probe_x, batch_size), predict(model, ood_x, batch_size)
    row["train_eval_acc"] = (probe_logits.argmax(1) == probe_y).float().mean().item()  # clean, eval mode
    row.update(**logit_stats(probe_logits, "train"), **logit_stats(test_logits, "test"),
               **logit_stats(ood_logits, "ood"))
    return row, {"test": test_logits, "ood": ood_logits}


def ood_along_training(model: torch.nn.Module, tracked: dict, batch_size: int, row: dict,
                       known: dict | None = None) -> list[dict]:
    """One row per OOD set of ``tracked`` (``{set: x}``, ID test under ``ID_TEST``): MSP ``fpr95`` (ID positive)
    and ``auroc`` against the ID test set, the set's mean ‖f‖ and MSP, beside this epoch's clean training
    accuracy and mean train/test ‖f‖ from the history ``row``. ``known``: ``{set: logits}`` this model already
    gave (the ID test and monitor sets from :func:`measure`), used instead of a second forward pass."""
    known = known or {}
    by_set = {name: (known[name] if name in known else predict(model, x, batch_size)).cpu().numpy()
              for name, x in tracked.items()}
    id_scores = scores.log_msp(by_set[ID_TEST])
    keep = ("epoch", "train_eval_acc", "train_norm_mean", "test_norm_mean", "test_acc")
    rows = []
    for name, logits in by_set.items():
        if name == ID_TEST:
            continue
        m = metrics.ood_metrics(id_scores, scores.log_msp(logits))
        rows.append({**{k: row[k] for k in keep}, "ood_set": name, "fpr95": m["fpr95"], "auroc": m["auroc"],
                     "ood_norm_mean": float(np.linalg.norm(logits.astype(np.float64), axis=1).mean()),
                     "ood_msp_mean": metrics.mmc(logits)})
    return rows
