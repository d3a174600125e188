"""``fit(cfg)``: the one training loop, readable top to bottom.

Data lives on the device as one normalised tensor; batches are ``randperm`` slices; augmentation (random
crop + flip) is batched tensor code on the device. Every epoch records the quantities the LogitNorm paper's
argument rests on — accuracy, loss, and the distribution of the logit norm ‖f(x)‖₂ and of the max-softmax
confidence on ID train, ID test and one OOD set — then writes history.csv and a checkpoint atomically.
A killed run resumes from its last finished epoch and continues exactly as if it had never stopped: the
random streams of epoch e are seeded from ``(cfg.seed, e)`` alone.

:class:`Trainer` holds the step and the epoch; ``fit`` adds the run folder, the measurements and resuming
around them. What makes the loop fast is measured in ``benchmarks/train_throughput.py`` (``make bench``):
no DataLoader, no per-sample transforms, no host sync per step, channels_last; on GPU also bf16 autocast
and fused SGD. Under ``torchrun`` it trains data-parallel (:mod:`lnlib.distributed`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm  # text bar, shown only on a terminal (tqdm.auto warns without ipywidgets)

from lnlib.config import QUICK_EVAL_SIZE, QUICK_TRAIN_SIZE, TrainConfig
from lnlib.data import ID_SETS, load_id, split_train_val, to_device
from lnlib.distributed import SINGLE, Ranks, barrier, join, sum_over_ranks, sync_batchnorm
from lnlib.evaluate import ID_TEST, compute_logits, evaluation_sets, ood_table, predict
from lnlib.faraway import confidence_pgd, hein_noise
from lnlib.losses import confidence_logits, make_loss, max_log_confidence
from lnlib.metrics import accuracy
from lnlib.models import build_model
from lnlib.runs import Run, atomic_torch_save, atomic_write_json, environment

PROBE_SIZE = 10_000  # training images on which the per-epoch logit statistics are measured


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return torch.device(name)


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


def augment(x: torch.Tensor, pad: int, fill: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with ``pad`` pixels of padding, then random horizontal flip, for a whole batch.

    ``x`` (N, C, H, W) normalised; ``fill`` (C,) is the normalised value of a black pixel, so padding
    matches torchvision's ``RandomCrop(padding=pad)`` applied before normalisation.
    """
    n, c, h, w = x.shape
    padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def logit_stats(logits: torch.Tensor, prefix: str) -> dict[str, float]:
    """Mean and 10/50/90th percentiles of ‖f‖₂, and mean max-softmax confidence, of logits (N, K)."""
    norms = torch.linalg.vector_norm(logits.double(), dim=1)
    q = torch.quantile(norms, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=norms.device))
    msp = torch.softmax(logits.double(), dim=1).amax(dim=1)
    return {f"{prefix}_norm_mean": norms.mean().item(), f"{prefix}_norm_p10": q[0].item(),
            f"{prefix}_norm_p50": q[1].item(), f"{prefix}_norm_p90": q[2].item(),
            f"{prefix}_msp_mean": msp.mean().item()}


def outlier_batch(cfg: TrainConfig, model, x, mean, std, head, generator, autocast=nullcontext) -> torch.Tensor:
    """The noise half of a CEDA/ACET batch, normalised like ``x`` (N, C, H, W).

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


@dataclass
class Trainer:
    """What one optimisation step needs, built once per run by :meth:`build`; ``fit`` and the
    benchmarks (``benchmarks/train_throughput.py``) train through it.

    ``model`` is the plain module (evaluated, saved); ``forward`` is what the training step calls: the model,
    wrapped in ``DistributedDataParallel`` under torchrun and in ``torch.compile`` when ``cfg.compile``.
    """

    cfg: TrainConfig
    model: torch.nn.Module
    forward: Callable
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    outlier_head: Callable
    autocast: Callable
    mean: torch.Tensor  # (1, C, 1, 1) dataset mean and std, to go between pixels and model inputs
    std: torch.Tensor
    fill: torch.Tensor  # (C,) normalised black pixel, the padding of the random crop
    pad: int
    ranks: Ranks = SINGLE

    @classmethod
    def build(cls, cfg: TrainConfig, device: torch.device, ranks: Ranks = SINGLE) -> Trainer:
        """Model (seeded by ``cfg.seed``, on ``device``), optimizer, loss and precision for ``cfg``."""
        spec = ID_SETS[cfg.dataset]
        model = build_model(cfg).to(device)
        forward = model
        if ranks.world > 1:
            forward = DistributedDataParallel(sync_batchnorm(model, device),
                                              device_ids=[device.index] if device.type == "cuda" else None)
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
        return cls(
            cfg, model, torch.compile(forward) if cfg.compile else forward,
            torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                            weight_decay=cfg.weight_decay, fused=device.type == "cuda"),
            make_loss(cfg),
            confidence_logits(cfg),  # CEDA/ACET penalise the confidence the loss trains
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext,
            torch.tensor(spec.mean, device=device).view(1, -1, 1, 1),
            torch.tensor(spec.std, device=device).view(1, -1, 1, 1),
            to_device(torch.zeros(1, *spec.shape, dtype=torch.uint8), spec, device)[0, :, 0, 0],
            4 if spec.shape[1] >= 32 else 2,
            ranks,
        )

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, generator: torch.Generator):
        """One SGD step on a normalised batch ``x`` (B, C, H, W), labels ``y`` (B,): augmentation, CEDA/ACET
        noise, forward (under autocast), loss in float32, backward, update. Returns the detached loss and the
        number of correct predictions as device tensors (no host sync)."""
        cfg = self.cfg
        if cfg.augment:
            x = augment(x, self.pad, self.fill, generator)
        if cfg.outlier:  # Hein et al.: as many noise images as clean ones, made from this very batch
            x = torch.cat([x, outlier_batch(cfg, self.model, x, self.mean, self.std, self.outlier_head,
                                            generator, self.autocast)])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast():
            logits = self.forward(x)
        loss = self.loss_fn(logits[:len(y)], y)  # losses compute in float32
        if cfg.outlier:
            loss = loss + cfg.outlier_weight * max_log_confidence(self.outlier_head(logits[len(y):]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), (logits[:len(y)].argmax(1) == y).sum()

    def epoch(self, train_x: torch.Tensor, train_y: torch.Tensor, epoch: int, progress: bool = False):
        """One pass over this rank's ``train_x`` in random batches of ``batch_size // world``; the last
        partial batch is dropped, as in the official code. Returns (mean loss, accuracy) tensors over all ranks.

        The random streams (order, crops, flips, dropout, noise) of epoch e are seeded from ``(cfg.seed, e)``
        and the rank alone, so a resumed run continues exactly as if it had never stopped.
        """
        cfg, device = self.cfg, train_x.device
        batch, steps = cfg.batch_size // self.ranks.world, self.steps_per_epoch(len(train_x))
        stream = (cfg.seed * 1_000_003 + epoch) * self.ranks.world + self.ranks.rank
        torch.manual_seed(stream)  # dropout
        generator = torch.Generator(device).manual_seed(stream)
        self.model.train()
        perm = torch.randperm(len(train_x), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs_to_run}", disable=not progress,
                      leave=False):
            idx = perm[i * batch:(i + 1) * batch]
            loss, right = self.step(train_x[idx], train_y[idx], lr_at(epoch * steps + i, cfg, steps), generator)
            loss_sum += loss  # no .item() in the hot path: no host sync per step
            correct += right
        totals = sum_over_ranks(torch.stack([loss_sum.double(), correct.double()]))
        return totals[0] / (steps * self.ranks.world), totals[1] / (steps * cfg.batch_size)

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in an epoch over ``n_train`` images per rank; raises if there are none."""
        steps = n_train // (self.cfg.batch_size // self.ranks.world)
        if steps == 0:
            raise ValueError(f"batch_size={self.cfg.batch_size} is larger than the {n_train} training images"
                             + (f" of each of the {self.ranks.world} ranks" if self.ranks.world > 1 else ""))
        return steps


def _start_run_folder(cfg: TrainConfig, run: Run, device: torch.device, ranks: Ranks) -> None:
    run.path.mkdir(parents=True, exist_ok=True)
    config_file = run.path / "config.json"
    # Compared by hash: fields the run does not use (τ of a CE run, fields added later) may differ.
    if config_file.exists() and TrainConfig.from_dict(json.loads(config_file.read_text())).content_hash() != \
            cfg.content_hash():
        raise ValueError(f"{run.path} holds a run of a different config; refusing to mix them")
    atomic_write_json(cfg.to_dict(), config_file)
    (run.path / "metrics.json").unlink(missing_ok=True)  # a run being (re)trained is not complete
    atomic_write_json({**environment(device), "processes": ranks.world}, run.path / "env.json")


def fit(cfg: TrainConfig, run: Run | None = None, progress: bool | None = None, log=print) -> Run:
    """Train ``cfg`` into ``run`` (default: its folder under data/runs), resuming from a checkpoint if any.

    Returns the complete :class:`~lnlib.runs.Run`. ``progress``: tqdm bar over batches (default: only when
    stderr is a terminal). ``log``: called with one line per epoch (``None`` for silence). Launched by
    ``torchrun --nproc_per_node=N``, it trains data-parallel (:mod:`lnlib.distributed`); rank 0 writes.
    """
    cfg.validate()
    run = run or Run.for_config(cfg)
    device = resolve_device(cfg.device)
    ranks = join(device.type)
    if ranks.world > 1:
        if cfg.batch_size % ranks.world:
            raise ValueError(f"batch_size={cfg.batch_size} does not split over {ranks.world} processes; "
                             f"use a multiple of {ranks.world}")
        device = torch.device("cuda", ranks.local_rank) if device.type == "cuda" else device
    progress = sys.stderr.isatty() and ranks.is_main if progress is None else progress
    log = (log or (lambda *_: None)) if ranks.is_main else (lambda *_: None)
    if ranks.is_main:
        _start_run_folder(cfg, run, device, ranks)

    # ---- data: uint8 -> normalised float tensors on the device, once; each rank keeps its shard
    spec = ID_SETS[cfg.dataset]
    train, _val = split_train_val(load_id(cfg.dataset)["train"], cfg.val_size)
    if cfg.quick:
        train = train.subset(QUICK_TRAIN_SIZE)
    eval_sets = evaluation_sets(cfg)  # ID test + every OOD set: monitored per epoch, evaluated at the end
    test, ood = eval_sets[ID_TEST], eval_sets[cfg.monitor_ood]
    train_x, train_y = to_device(train.images, spec, device), train.labels.to(device)
    probe = QUICK_EVAL_SIZE if cfg.quick else PROBE_SIZE
    probe_x, probe_y = train_x[:probe], train_y[:probe]  # the split is already shuffled
    shard = slice(ranks.rank, len(train_x) - len(train_x) % ranks.world, ranks.world)  # equal sizes: equal steps
    train_x, train_y = train_x[shard], train_y[shard]
    test_x, test_y = to_device(test.images, spec, device), test.labels.to(device)
    ood_x = to_device(ood.images, spec, device)

    trainer = Trainer.build(cfg, device, ranks)
    model, optimizer = trainer.model, trainer.optimizer
    trainer.steps_per_epoch(len(train_x))  # fails now, not after the first epoch

    # ---- resume
    start_epoch, history, train_time = 0, [], 0.0
    checkpoint = run.path / "checkpoint.pt"
    barrier()  # rank 0 has prepared the folder
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, train_time = state["epoch"], state["history"], state["train_time_s"]
        log(f"resuming {run.path.name} after epoch {start_epoch}")

    epochs = cfg.epochs_to_run
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = trainer.epoch(train_x, train_y, epoch, progress)
        train_time += time.perf_counter() - t0
        if not ranks.is_main:
            barrier()  # wait while rank 0 measures and writes
            continue

        # ---- per-epoch measurements, eval mode, full test set
        test_logits = predict(model, test_x, cfg.eval_batch_size)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": train_loss.item(), "train_acc": train_acc.item(),
               "test_acc": (test_logits.argmax(1) == test_y).float().mean().item(),
               "test_ce": F.cross_entropy(test_logits, test_y).item()}
        probe_logits = predict(model, probe_x, cfg.eval_batch_size)
        row["train_eval_acc"] = (probe_logits.argmax(1) == probe_y).float().mean().item()  # clean, eval mode
        row.update(logit_stats(probe_logits, "train"))
        row.update(logit_stats(test_logits, "test"))
        row.update(logit_stats(predict(model, ood_x, cfg.eval_batch_size), "ood"))
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)
        run.write_history(history)
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                           "history": history, "train_time_s": train_time}, checkpoint)
        log(f"epoch {epoch + 1:>3}/{epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.2%}  "
            f"test acc {row['test_acc']:.2%}  mean ‖f‖ test {row['test_norm_mean']:.2f} "
            f"({cfg.monitor_ood} {row['ood_norm_mean']:.2f})  {row['epoch_time_s']:.1f} s")
        barrier()

    # ---- final evaluation: logits of ID test + every offline OOD set, cached; metrics.json written last
    if ranks.is_main:
        atomic_torch_save(model.state_dict(), run.path / "model.pt")
        evaluated = compute_logits(run, model, device, eval_sets)
        final = {"test_acc": accuracy(evaluated[ID_TEST].logits, evaluated[ID_TEST].labels),
                 "epochs": epochs, "train_time_s": train_time, "ood": ood_table(evaluated)}
        atomic_write_json(final, run.path / "metrics.json")
        checkpoint.unlink(missing_ok=True)
    barrier()  # the run is complete for every rank
    return run
