"""How much a number moves: which runs are trained again, and how their changes are tabled (known answers)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from lnlib import TrainConfig, reruns, tidy


def _fake_training(monkeypatch, threads_of=None):
    """Replace training by a record of what was asked: (configs, root, torch's thread count at the call); each run
    reports the thread count it was 'trained' on (``threads_of(config)`` if given)."""
    calls = []

    def load_or_train_all(cfgs, root=None):
        calls.append((list(cfgs), root, torch.get_num_threads()))
        count = torch.get_num_threads()
        return [SimpleNamespace(config=c, threads=threads_of(c) if threads_of else count,
                                path=Path(f"r/{len(calls)}-{i}")) for i, c in enumerate(cfgs)]

    monkeypatch.setattr(reruns, "load_or_train_all", load_or_train_all)
    return calls


def _originals(threads=1, seeds=2):
    configs = TrainConfig(quick=True, epochs=3).loss_comparison(seeds)
    return configs, [SimpleNamespace(config=c, threads=threads, path=Path(f"o/original-{i}"))
                     for i, c in enumerate(configs)]


def test_the_seed_0_runs_are_trained_again_one_change_at_a_time(monkeypatch, runs_root):
    calls = _fake_training(monkeypatch)
    configs, runs = _originals(threads=1)
    before = torch.get_num_threads()
    again, epochs = reruns.seed0_reruns(configs, runs)
    assert torch.get_num_threads() == before
    (threaded, root, n_threaded), (layout, _, n_layout), (along, _, n_along) = calls
    seed0 = [c for c in configs if c.seed == 0]
    assert len(seed0) == 2 and threaded == seed0  # the same configs...
    assert (root, n_threaded) == (runs_root / "threads-2", 2)  # ...on another thread count, in their own root
    assert layout == [c.replace(channels_last=False) for c in seed0] and n_layout == 1
    assert [c.ood_every for c in along] == [2, 2] and n_along == 1  # OOD detection at epochs 2 and 3 (the last)
    assert list(again) == ["2 thread(s), not 1, seed 0", "other memory layout, seed 0"]
    assert [r.config for r in epochs] == along


def test_reruns_cached_on_another_thread_count_are_refused(monkeypatch, runs_root):
    _fake_training(monkeypatch, threads_of=lambda c: 4 if not c.channels_last else 1)
    configs, runs = _originals(threads=1)
    with pytest.raises(ValueError, match="different CPU thread counts"):
        reruns.seed0_reruns(configs, runs)


def _rows(loss, seed, values: dict, **extra):
    run = {"loss": loss, "method": loss, "tau": 0.04 if loss == "logitnorm" else np.nan, "weight_decay": 5e-4,
           "seed": seed, "run": f"{loss}-s{seed}{extra.pop('tag', '')}"}
    return [{**run, **extra, "ood_set": s, "metric": "fpr95", "value": v} for s, v in values.items()]


def test_fpr95_moves_put_each_change_beside_the_range_over_seeds():
    values = {("ce", 0): (0.5, 0.3), ("ce", 1): (0.6, 0.2), ("logitnorm", 0): (0.4, 0.1), ("logitnorm", 1): (0.45, 0.3)}
    records = pd.DataFrame([r for (loss, seed), (d, lt) in values.items()
                            for r in _rows(loss, seed, {"digits": d, "letters": lt})])
    fpr = tidy.benchmark_fpr95(records)
    threaded = pd.DataFrame(_rows("ce", 0, {"digits": 0.52, "letters": 0.25}, tag="t")
                            + _rows("logitnorm", 0, {"digits": 0.4, "letters": 0.1}, tag="t"))
    along = pd.DataFrame([r for epoch, d in ((2, 0.45), (3, 0.5))
                          for r in _rows("ce", 0, {"digits": d}, tag="e", epoch=epoch)])
    moves = reruns.fpr95_moves(fpr, {"threads": threaded}, along)
    assert list(moves.index) == ["letters", "digits", tidy.FAR]
    assert list(moves.columns) == [(c, loss) for c in ("range over 2 seeds", "threads", reruns.LAST_EPOCH)
                                   for loss in ("ce", "logitnorm")]
    assert moves.loc["digits", ("range over 2 seeds", "ce")] == 10.0
    assert moves.loc["letters", ("range over 2 seeds", "logitnorm")] == 20.0
    assert moves.loc["digits", ("threads", "ce")] == 2.0 and moves.loc["letters", ("threads", "ce")] == 5.0
    assert moves.loc[tidy.FAR, ("threads", "ce")] == 1.5  # the average moved from 40% to 38.5%
    assert moves.loc["digits", ("threads", "logitnorm")] == 0.0
    assert moves.loc["digits", (reruns.LAST_EPOCH, "ce")] == 5.0
    assert np.isnan(moves.loc["letters", (reruns.LAST_EPOCH, "ce")])  # not measured along training
    largest = reruns.largest(moves)
    assert largest.to_dict() == {"range over 2 seeds": 20.0, "threads": 5.0, reruns.LAST_EPOCH: 5.0}
    assert reruns.style(moves).caption == reruns.CAPTION
    assert ("threads", "LogitNorm") in reruns.style(moves).data.columns
