"""``fit(cfg)``: the one training loop, readable top to bottom; ``load_or_train(cfg)``: train a run only once.

``fit`` is the whole algorithm in one screen: the data go to the device once as normalised tensors; the
model and SGD are built; a checkpoint, if any, is resumed; every epoch runs :func:`train_epoch` (random
batches, augmentation, CEDA/ACET noise, forward, loss, backward, update — no host sync per step), then
measures what the LogitNorm paper's argument rests on — accuracy, loss, and the distribution of the logit
norm ‖f(x)‖₂ and of the max-softmax confidence on ID train, ID test and one OOD set — and writes
history.csv (every epoch, or every ``cfg.history_every``-th: :func:`measured`) and a checkpoint atomically; at
the end the model's outputs on every evaluation set are cached and metrics.json is written, last. With
``cfg.ood_every`` it also follows MSP-based OOD detection along
training (:func:`lnlib.monitor.ood_along_training`, ``ood_history.csv``); what is measured each epoch is
:mod:`lnlib.monitor`'s. A killed run resumes from its last finished epoch
and continues exactly as if it had never stopped: the random streams of epoch e are seeded from
``(cfg.seed, e)`` alone.

Under ``torchrun`` the same loop trains data-parallel; what that takes is confined to the lines marked
``# torchrun`` (:mod:`lnlib.distributed`). What makes the loop fast is measured in
``benchmarks/train_throughput.py`` (``make bench``), which times :func:`train_epoch` as built by
:func:`build`, exactly what ``fit`` trains with: no DataLoader, no per-sample transforms, no host sync per
step, channels_last; on GPU also bf16 autocast and fused SGD.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm  # text bar, shown only on a terminal (tqdm.auto warns without ipywidgets)

from lnlib import distributed, metrics
from lnlib.config import QUICK_EVAL_SIZE, TrainConfig
from lnlib.data import ID_SETS, run_splits, to_device
from lnlib.devices import resolve_device
from lnlib.distributed import SINGLE, Ranks
from lnlib.evaluate import ID_TEST, ID_VAL, check_data, compute_outputs, evaluation_sets, ood_table
from lnlib.faraway import confidence_pgd, hein_noise
from lnlib.files import atomic_torch_save, atomic_write_json, load_tensors
from lnlib.losses import confidence_logits, make_loss, max_log_confidence
from lnlib.models import build_model
from lnlib.monitor import measure, ood_along_training
from lnlib.runs import Run, environment

# Training images on which the per-epoch statistics (clean accuracy, ‖f‖, MSP) are measured: all of the paper
# regime's 4,000, and enough for a mean whose standard error is far below the seed-to-seed spread. Every epoch
# also measures the 10,000 ID test images, so a probe of 10,000 made measuring cost about 40% of a seed-study epoch.
PROBE_SIZE = 4_000


def fit(cfg: TrainConfig, run: Run | None = None, progress: bool | None = None, log=print) -> Run:
    """Train ``cfg`` into ``run`` (default: its folder under data/runs), resuming from a checkpoint if any.

    Returns the complete :class:`~lnlib.runs.Run`. ``progress``: tqdm bar over batches (default: only when
    stderr is a terminal). ``log``: called with one line per epoch (``None`` for silence).
    """
    cfg.validate()
    check_data(cfg)  # every missing set named at once, before any folder is made
    run = run or Run.for_config(cfg)
    ranks, device = distributed.setup(resolve_device(cfg.device), cfg.batch_size)  # torchrun: rank, its GPU
    main = ranks.is_main  # torchrun: only rank 0 measures, writes and logs
    progress = sys.stderr.isatty() and main if progress is None else progress
    log = log if (log and main) else (lambda *_: None)
    if main:
        run.start(cfg, {**environment(device), "processes": ranks.world})

    # ---- data: uint8 -> normalised float tensors on the device, once
    spec = ID_SETS[cfg.dataset]
    train = run_splits(cfg.dataset, cfg.val_size, cfg.held_out)["train"].subset(cfg.train_images)  # fixed
    eval_sets = evaluation_sets(cfg)  # ID test + every OOD set: monitored per epoch, evaluated at the end
    train_x, train_y = to_device(train.images, spec, device), train.labels.to(device)
    probe = QUICK_EVAL_SIZE if cfg.quick else PROBE_SIZE  # the split is already shuffled: the first images
    monitor = {"train": (train_x[:probe], train_y[:probe]),
               "test": (to_device(eval_sets[ID_TEST].images, spec, device), eval_sets[ID_TEST].labels.to(device)),
               "ood": (to_device(eval_sets[cfg.monitor_ood].images, spec, device), None)}
    tracked = ({name: to_device(s.images, spec, device) for name, s in eval_sets.items() if name != ID_VAL}
               if cfg.ood_every else {})  # ID test and every OOD set, for the OOD detection along training
    train_x, train_y = distributed.shard(train_x, ranks), distributed.shard(train_y, ranks)  # torchrun

    # ---- model and optimizer; resume from the last finished epoch
    net = build(cfg, device, ranks)
    net.steps_per_epoch(len(train_x))  # fails now, not after the first epoch
    start_epoch, history, ood_history, train_time = 0, [], [], 0.0
    checkpoint = run.file(Run.CHECKPOINT)
    distributed.barrier()  # torchrun: rank 0 has prepared the folder
    if checkpoint.exists():
        state = load_tensors(checkpoint, map_location=device, what=f"the checkpoint of run {run.path.name}")
        net.model.load_state_dict(state["model"])
        net.optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, train_time = state["epoch"], state["history"], state["train_time_s"]
        ood_history = state.get("ood_history", [])
        log(f"resuming {run.path.name} after epoch {start_epoch}")

    epochs = cfg.epochs_to_run
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(net, train_x, train_y, epoch, progress)
        train_loss = check_finite(net, train_loss, epoch, run)  # the epoch's one host sync, on the summed loss
        train_time += time.perf_counter() - t0
        row = None
        if main and measured(cfg, epoch + 1):  # ---- measurements (eval mode) and history
            stats, logits = measure(net.model, monitor, cfg.eval_batch_size)
            row = {"epoch": epoch + 1, "lr": net.optimizer.param_groups[0]["lr"],
                   "train_loss": train_loss, "train_acc": train_acc.item(), **stats,
                   "epoch_time_s": time.perf_counter() - t0}
            history.append(row)
            run.write_history(history)
            if cfg.ood_every and ((epoch + 1) % cfg.ood_every == 0 or epoch + 1 == epochs):
                known = {ID_TEST: logits["test"], cfg.monitor_ood: logits["ood"]}  # this epoch's, not twice
                ood_history += ood_along_training(net.model, tracked, cfg.eval_batch_size, row, known)
                run.write_table(ood_history, Run.OOD_HISTORY)
        if main:  # ---- checkpoint after every epoch, then the epoch's line
            atomic_torch_save({"model": net.model.state_dict(), "optimizer": net.optimizer.state_dict(),
                               "epoch": epoch + 1, "history": history, "ood_history": ood_history,
                               "train_time_s": train_time}, checkpoint)
            if row:
                log(f"epoch {epoch + 1:>3}/{epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.2%}  "
                    f"test acc {row['test_acc']:.2%}  mean ‖f‖ test {row['test_norm_mean']:.2f} "
                    f"({cfg.monitor_ood} {row['ood_norm_mean']:.2f})  {row['epoch_time_s']:.1f} s")
        distributed.barrier()  # torchrun: the others wait while rank 0 writes

    # ---- final evaluation: outputs of ID test + every OOD set, cached; metrics.json written last
    if main:
        atomic_torch_save(net.model.state_dict(), run.file(Run.MODEL))
        run.record_digests(Run.MODEL)
        t0 = time.perf_counter()
        evaluated = compute_outputs(run, net.model, device, eval_sets)
        final = {"test_acc": metrics.accuracy(evaluated[ID_TEST].logits, evaluated[ID_TEST].labels),
                 "epochs": epochs, "train_time_s": train_time, "ood": ood_table(evaluated),
                 "evaluation_time_s": round(time.perf_counter() - t0, 2)}
        atomic_write_json(final, run.file(Run.METRICS))
        checkpoint.unlink(missing_ok=True)
    distributed.barrier()  # torchrun: the run is complete for every rank
    return run


def measured(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the 1-based ``epoch`` gets a history row: every epoch, or with ``cfg.history_every`` every N-th, the
    last, and every epoch of an OOD evaluation (``cfg.ood_every``, which reuses the row). Measuring costs forward
    passes only, in eval mode, and draws no random number: the weights are the same whichever epochs are measured."""
    return (not cfg.history_every or epoch % cfg.history_every == 0 or epoch == cfg.epochs_to_run
            or bool(cfg.ood_every and epoch % cfg.ood_every == 0))


def train_epoch(net: Net, train_x: torch.Tensor, train_y: torch.Tensor, epoch: int, progress: bool = False):
    """One pass over this rank's normalised ``train_x`` (N, C, H, W), labels ``train_y`` (N,), in random
    batches of ``batch_size // world``; the last partial batch is dropped, as in the official code. Each step:
    augmentation, CEDA/ACET noise, forward (under autocast), loss in float32, backward, SGD update.

    Returns (mean loss, accuracy) as device tensors over all ranks; the only host sync is the caller's. The
    random streams (order, crops, flips, dropout, noise) of epoch e are seeded from ``(cfg.seed, e)`` and the
    rank alone, so a resumed run continues exactly as if it had never stopped.
    """
    cfg, ranks, device = net.cfg, net.ranks, train_x.device
    spec = ID_SETS[cfg.dataset]
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)  # between pixels and model inputs
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    loss_fn, head = make_loss(cfg), confidence_logits(cfg)  # CEDA/ACET penalise the confidence the loss trains
    batch, steps = cfg.batch_size // ranks.world, net.steps_per_epoch(len(train_x))
    stream = (cfg.seed * 1_000_003 + epoch) * ranks.world + ranks.rank
    torch.manual_seed(stream)  # dropout
    generator = torch.Generator(device).manual_seed(stream)
    net.model.train()
    perm = torch.randperm(len(train_x), device=device, generator=generator)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for i in tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs_to_run}", disable=not progress, leave=False):
        idx = perm[i * batch:(i + 1) * batch]
        x, y = train_x[idx], train_y[idx]
        if cfg.augment:
            x = augment(x, 4 if spec.shape[1] >= 32 else 2, generator, mean, std)
        if cfg.outlier:  # Hein et al.: as many noise images as clean ones, made from this very batch
            x = torch.cat([x, outlier_batch(cfg, net.model, x, mean=mean, std=std, head=head, generator=generator,
                                            autocast=net.autocast)])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in net.optimizer.param_groups:
            group["lr"] = lr_at(epoch * steps + i, cfg, steps)
        with net.autocast():
            logits = net.forward(x)
        loss = loss_fn(logits[:len(y)], y)  # losses compute in float32
        if cfg.outlier:
            loss = loss + cfg.outlier_weight * max_log_confidence(head(logits[len(y):]))
        net.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        net.optimizer.step()
        loss_sum += loss.detach()  # no .item() in the hot path: no host sync per step
        correct += (logits[:len(y)].argmax(1) == y).sum()
    totals = distributed.sum_over_ranks(torch.stack([loss_sum.double(), correct.double()]))  # torchrun
    return totals[0] / (steps * ranks.world), totals[1] / (steps * cfg.batch_size)


class TrainingDiverged(RuntimeError):
    """The training loss or the weights became NaN or infinite: the run is stopped and nothing of it is kept."""


def check_finite(net: Net, train_loss: torch.Tensor, epoch: int, run: Run) -> float:
    """The epoch's mean training loss as a float, if it and the weights are finite. Else stop the diverged run:
    raise :class:`TrainingDiverged` with the epoch, the loss, the learning rate and what to try, after removing
    the run's checkpoint and history, so that the next launch starts clean instead of resuming a broken state."""
    loss = train_loss.item()
    finite_weights = torch.stack([p.detach().isfinite().all() for p in net.model.parameters()]).all().item()
    if math.isfinite(loss) and finite_weights:
        return loss
    for name in Run.TRAINING:
        run.file(name).unlink(missing_ok=True)
    cfg = net.cfg
    what = f"the mean training loss was {loss}" if not math.isfinite(loss) else "the weights became NaN or infinite"
    raise TrainingDiverged(
        f"training diverged in epoch {epoch + 1} of run {run.path.name}: {what} (lr={cfg.lr:g}, reached "
        f"{net.optimizer.param_groups[0]['lr']:g} in that epoch). Try a lower lr (e.g. --lr {cfg.lr / 10:g}), a "
        f"longer warm-up (--warmup {cfg.warmup + 1}, in epochs)"
        + (f" or a larger tau (--tau {cfg.tau * 2:g})" if cfg.loss == "logitnorm" else "")
        + ". Nothing of this run was kept: the next launch starts from scratch.")


# ------------------------------------------------------------------------------------- the pieces
class Net(NamedTuple):
    """What :func:`train_epoch` steps: the plain ``model`` (evaluated, saved), the ``forward`` the step calls
    (the model, wrapped in ``DistributedDataParallel`` under torchrun and in ``torch.compile`` when
    ``cfg.compile``), the optimizer and the precision context."""

    cfg: TrainConfig
    model: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    autocast: type
    ranks: Ranks = SINGLE

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in an epoch over ``n_train`` images per rank; raises if there are none."""
        steps = n_train // (self.cfg.batch_size // self.ranks.world)
        if steps == 0:
            raise ValueError(f"batch_size={self.cfg.batch_size} is larger than the {n_train} training images"
                             + (f" of each of the {self.ranks.world} ranks" if self.ranks.world > 1 else ""))
        return steps


def build(cfg: TrainConfig, device: torch.device, ranks: Ranks = SINGLE) -> Net:
    """Model (seeded by ``cfg.seed``, on ``device``), SGD and precision for ``cfg``: bf16 autocast on CUDA
    unless ``precision='fp32'``; fused SGD on CUDA."""
    model = build_model(cfg).to(device)
    forward = distributed.wrap(model, device, ranks)  # torchrun: DDP, batch norm over the whole step's batch
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    return Net(cfg, model, torch.compile(forward) if cfg.compile else forward, optimizer, autocast, ranks)


def lr_at(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Learning rate at optimizer step ``step``: linear warm-up, then the schedule. A pure function."""
    warmup_steps = cfg.warmup * steps_per_epoch
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "cosine":
        progress = (step - warmup_steps) / max(1, cfg.epochs * steps_per_epoch - warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "multistep":  # stepped per epoch, as torch's MultiStepLR in the official code
        return cfg.lr * cfg.gamma ** sum(step // steps_per_epoch >= m for m in cfg.milestones)
    return cfg.lr


def augment(x: torch.Tensor, pad: int, generator: torch.Generator, mean: torch.Tensor,
            std: torch.Tensor) -> torch.Tensor:
    """Random crop with ``pad`` pixels of padding, then random horizontal flip, for a whole batch.

    ``x`` (N, C, H, W) normalised with ``mean`` and ``std`` (1, C, 1, 1); the padding is a black pixel,
    normalised, so that it matches torchvision's ``RandomCrop(padding=pad)`` applied before normalisation.
    """
    n, c, h, w = x.shape
    fill = ((0 - mean) / std).view(1, c, 1, 1)
    padded = fill.expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def outlier_batch(cfg: TrainConfig, model, x, *, mean, std, head, generator, autocast=nullcontext) -> torch.Tensor:
    """The noise half of a CEDA/ACET batch, normalised like ``x`` (N, C, H, W) with ``mean`` and ``std``
    (1, C, 1, 1); ``head`` maps logits to those whose confidence ACET raises (:func:`lnlib.losses.confidence_logits`),
    ``generator`` draws the noise and the attack's start, ``autocast`` is the step's precision context.

    CEDA: :func:`~lnlib.faraway.hein_noise` made from the (augmented) clean batch ``x``. ACET: from there,
    ``cfg.pgd_steps`` steps of :func:`~lnlib.faraway.confidence_pgd` towards the most confident point within
    ``cfg.pgd_eps`` (in pixels), batch norm in eval mode during the attack, as in the official code.
    """
    noise = hein_noise(x * std + mean, generator)
    if cfg.outlier == "acet":
        with autocast():
            noise = confidence_pgd(model, noise, cfg.pgd_eps, cfg.pgd_steps, to_input=lambda u: (u - mean) / std,
                                   generator=generator, head=head)
    return (noise - mean) / std


# ------------------------------------------------------------------------------------------ run once
def load_or_train(cfg: TrainConfig, root: Path | None = None, progress: bool | None = None) -> Run:
    """Return the finished run for ``cfg``; resume it if it was interrupted; train it otherwise.

    Book builds and labs call this, so nothing that exists is ever trained twice.
    """
    cfg.validate()
    run = Run.for_config(cfg, root)
    if run.is_complete():
        run.check_weights()  # a damaged run fails here, naming the file and the command that retrains it
        return run
    resolve_device(cfg.device)  # a device or data that is not there fails before the folder is made
    check_data(cfg)
    if distributed.launched().world > 1:  # torchrun's processes train together; a lock held by one would stall
        return fit(cfg, run=run, progress=progress)
    try:
        with run.lock():
            if not run.is_complete():  # another process may have finished it while we waited
                fit(cfg, run=run, progress=progress)
    except BaseException:
        if run.path.is_dir() and {p.name for p in run.path.iterdir()} <= {".lock"}:
            shutil.rmtree(run.path, ignore_errors=True)  # a launch that failed before any work leaves nothing
        raise
    return run


def load_or_train_all(cfgs, root: Path | None = None, progress: bool | None = None) -> list[Run]:
    """:func:`load_or_train` for each config, in order; every config is validated before any training, so a bad
    one fails before the first run starts."""
    cfgs = list(cfgs)
    for cfg in cfgs:
        cfg.validate()
    return [load_or_train(cfg, root, progress) for cfg in cfgs]
