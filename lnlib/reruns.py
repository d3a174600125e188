"""How much a number moves when the loss does not change: the seed-0 runs trained again with one thing changed.

A difference between two single runs says nothing unless it is larger than what moves a number with the loss held
fixed: the seed (the range over seeds), the rounding of floating-point sums, and the epoch at which training stops.
:func:`seed0_reruns` trains (once; later it loads) the seed-0 runs of a loss comparison again on another number of
CPU threads (the same config: whether a single bit changes depends on how the CPU's kernels split their sums), with
another memory layout (``channels_last=False``: the same mathematics through other kernels, so another rounding,
which is what another CPU brings too) and with OOD detection measured at the last two epochs (which leaves their
training as it was). :func:`fpr95_moves` puts the largest FPR95 change of each beside the range over seeds;
:func:`fpr95_sensitivity` does both, the OOD-results chapter's table.
"""

from __future__ import annotations

import pandas as pd

from lnlib import devices, tables, tidy
from lnlib.files import runs_dir
from lnlib.runs import Run, threads_used
from lnlib.train import load_or_train_all

LAST_EPOCH = "last epoch, seed 0"  # the column of the change between the last two epochs
CAPTION = ("FPR95, percent points: the range over seeds, and the largest absolute change from another thread count, "
           "another memory layout and the last epoch")


def seed0_reruns(configs, runs) -> tuple[dict[str, list[Run]], list[Run]]:
    """The seed-0 configs of ``configs`` trained again (or loaded), one change at a time: ``({label: runs}, epochs)``.

    The first entry is trained on another CPU thread count than ``runs``' seed-0 runs were (in its own folder root
    ``threads-<n>``, since the configs and so the folder names are the same), the second with the other memory
    layout on the originals' count; ``epochs`` on the originals' count with OOD detection at the last two epochs.
    ``ValueError`` (:func:`lnlib.runs.threads_used`) where cached reruns were trained on another count than the
    originals, since the comparison would then mix in the thread count."""
    probe = [c for c in configs if c.seed == 0]
    originals = [r for r in runs if r.config.seed == 0]
    threads = threads_used(originals)  # what the originals were trained with (env.json)
    other = devices.other_thread_count(threads)
    with devices.threads(other):  # the same configs, so their own folder root
        threaded = load_or_train_all(probe, root=runs_dir() / f"threads-{other}")
    with devices.threads(threads):  # the other reruns on the originals' count: one change at a time
        layout = load_or_train_all([c.replace(channels_last=False) for c in probe])
        # OOD detection measured at the last two epochs only (every epochs−1 epochs, and at the last)
        epochs = load_or_train_all([c.replace(ood_every=c.epochs_to_run - 1) for c in probe])
    threads_used([*layout, *epochs, *originals])  # cached reruns too: else it says which
    return {f"{other} thread(s), not {threads}, seed 0": threaded, "other memory layout, seed 0": layout}, epochs


def fpr95_moves(fpr: pd.DataFrame, reruns: dict[str, pd.DataFrame], along: pd.DataFrame) -> pd.DataFrame:
    """How much an FPR95 moves, per set and loss (percent points): the range over the seeds of ``fpr``
    (:func:`lnlib.tidy.benchmark_fpr95`), the largest absolute change from each rerun (``{label: its
    lnlib.tidy.ood_records}``, against the same seed in ``fpr``; :func:`lnlib.tidy.rerun_change`) and between the
    last two epochs (``along``: :func:`lnlib.tidy.along_training_records`; column :data:`LAST_EPOCH`).

    Rows: ``ood_set``, in ``fpr``'s order; columns: (what moved it, loss), as :func:`lnlib.tables.sensitivity`."""
    moves = {label: tidy.rerun_change(fpr, tidy.with_benchmark_averages(frame)) for label, frame in reruns.items()}
    moves[LAST_EPOCH] = tidy.last_epoch_change(along)
    moves = {label: change.query("metric == 'fpr95'") for label, change in moves.items()}
    return tables.sensitivity(fpr, moves).unstack("loss")


def fpr95_sensitivity(fpr: pd.DataFrame, configs, runs, positive: str = "id", protocol: str = "all") -> pd.DataFrame:
    """:func:`fpr95_moves` of the :func:`seed0_reruns` of ``configs`` (whose runs are ``runs``, their FPR95 rows
    ``fpr``), scored by MSP under ``positive`` and ``protocol`` as the originals were. Trains the reruns the first
    time (six runs for a CE-vs-LogitNorm comparison)."""
    reruns, epochs = seed0_reruns(configs, runs)
    again = {label: tidy.ood_records(r, ["msp"], positive=positive, protocol=protocol) for label, r in reruns.items()}
    return fpr95_moves(fpr, again, tidy.along_training_records(epochs))


def style(sensitivity: pd.DataFrame):
    """:func:`fpr95_sensitivity` for display: losses by name, one decimal, :data:`CAPTION`."""
    return sensitivity.rename(columns=tables.LABELS).style.format("{:.1f}").set_caption(CAPTION)


def largest(sensitivity: pd.DataFrame) -> pd.Series:
    """The largest value of each column of :func:`fpr95_sensitivity` (the range over seeds, then each change) over
    every set and both losses, in the table's order: what the prose quotes."""
    return sensitivity.T.groupby(level=0, sort=False).max().max(axis=1)
