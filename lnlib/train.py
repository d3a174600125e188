"""``fit(cfg)``: the one training loop, readable top to bottom.

Data lives on the device as one normalised tensor; batches are ``randperm`` slices; augmentation (random
crop + flip) is batched tensor code on the device. Every epoch records the quantities the LogitNorm paper's
argument rests on — accuracy, loss, and the distribution of the logit norm ‖f(x)‖₂ and of the max-softmax
confidence on ID train, ID test and one OOD set — then writes history.csv and a checkpoint atomically.
A killed run resumes from its last finished epoch and continues exactly as if it had never stopped: the
random streams of epoch e are seeded from ``(cfg.seed, e)`` alone.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bar, shown only on a terminal (tqdm.auto warns without ipywidgets)

from lnlib.config import QUICK_EVAL_SIZE, QUICK_TRAIN_SIZE, TrainConfig
from lnlib.data import ID_SETS, load_id, split_train_val, to_device
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


def _start_run_folder(cfg: TrainConfig, run: Run, device: torch.device) -> None:
    run.path.mkdir(parents=True, exist_ok=True)
    config_file = run.path / "config.json"
    # Compared by hash: fields the run does not use (τ of a CE run, fields added later) may differ.
    if config_file.exists() and TrainConfig.from_dict(json.loads(config_file.read_text())).content_hash() != \
            cfg.content_hash():
        raise ValueError(f"{run.path} holds a run of a different config; refusing to mix them")
    atomic_write_json(cfg.to_dict(), config_file)
    (run.path / "metrics.json").unlink(missing_ok=True)  # a run being (re)trained is not complete
    atomic_write_json(environment(device), run.path / "env.json")


def fit(cfg: TrainConfig, run: Run | None = None, progress: bool | None = None, log=print) -> Run:
    """Train ``cfg`` into ``run`` (default: its folder under data/runs), resuming from a checkpoint if any.

    Returns the complete :class:`~lnlib.runs.Run`. ``progress``: tqdm bar over batches (default: only when
    stderr is a terminal). ``log``: called with one line per epoch (``None`` for silence).
    """
    cfg.validate()
    run = run or Run.for_config(cfg)
    device = resolve_device(cfg.device)
    progress = sys.stderr.isatty() if progress is None else progress
    log = log or (lambda *_: None)
    _start_run_folder(cfg, run, device)

    # ---- data: uint8 -> normalised float tensors on the device, once
    spec = ID_SETS[cfg.dataset]
    train, _val = split_train_val(load_id(cfg.dataset)["train"], cfg.val_size)
    if cfg.quick:
        train = train.subset(QUICK_TRAIN_SIZE)
    eval_sets = evaluation_sets(cfg)  # ID test + every OOD set: monitored per epoch, evaluated at the end
    test, ood = eval_sets[ID_TEST], eval_sets[cfg.monitor_ood]
    train_x, train_y = to_device(train.images, spec, device), train.labels.to(device)
    probe = QUICK_EVAL_SIZE if cfg.quick else PROBE_SIZE
    probe_x, probe_y = train_x[:probe], train_y[:probe]  # the split is already shuffled
    test_x, test_y = to_device(test.images, spec, device), test.labels.to(device)
    ood_x = to_device(ood.images, spec, device)
    fill = to_device(torch.zeros(1, *spec.shape, dtype=torch.uint8), spec, device)[0, :, 0, 0]
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    pad = 4 if spec.shape[1] >= 32 else 2

    # ---- model, optimizer, loss
    model = build_model(cfg).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    loss_fn = make_loss(cfg)
    outlier_head = confidence_logits(cfg)  # CEDA/ACET penalise the confidence the loss trains
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    forward = torch.compile(model) if cfg.compile else model

    # ---- resume
    start_epoch, history, train_time = 0, [], 0.0
    checkpoint = run.path / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, train_time = state["epoch"], state["history"], state["train_time_s"]
        log(f"resuming {run.path.name} after epoch {start_epoch}")

    epochs = cfg.epochs_to_run
    steps = len(train_x) // cfg.batch_size  # drop the last partial batch, as the official code does
    if steps == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {len(train_x)} training images")
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout; same stream whether resumed or not
        generator = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + epoch)
        model.train()
        perm = torch.randperm(len(train_x), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in tqdm(range(steps), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x, y = train_x[idx], train_y[idx]
            if cfg.augment:
                x = augment(x, pad, fill, generator)
            if cfg.outlier:  # Hein et al.: as many noise images as clean ones, made from this very batch
                x = torch.cat([x, outlier_batch(cfg, model, x, mean, std, outlier_head, generator, autocast)])
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps + i, cfg, steps)
            with autocast():
                logits = forward(x)
            loss = loss_fn(logits[:len(y)], y)  # losses compute in float32
            if cfg.outlier:
                loss = loss + cfg.outlier_weight * max_log_confidence(outlier_head(logits[len(y):]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()  # no .item() in the hot path: no host sync per step
            correct += (logits[:len(y)].argmax(1) == y).sum()
        train_time += time.perf_counter() - t0

        # ---- per-epoch measurements, eval mode, full test set
        test_logits = predict(model, test_x, cfg.eval_batch_size)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum.item() / steps, "train_acc": correct.item() / (steps * cfg.batch_size),
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

    # ---- final evaluation: logits of ID test + every offline OOD set, cached; metrics.json written last
    atomic_torch_save(model.state_dict(), run.path / "model.pt")
    evaluated = compute_logits(run, model, device, eval_sets)
    final = {"test_acc": accuracy(evaluated[ID_TEST].logits, evaluated[ID_TEST].labels),
             "epochs": epochs, "train_time_s": train_time, "ood": ood_table(evaluated)}
    atomic_write_json(final, run.path / "metrics.json")
    checkpoint.unlink(missing_ok=True)
    return run
