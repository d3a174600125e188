"""Training throughput: lnlib's loop against the loop research code usually writes, and both against what the
hardware gives. Everything is measured side by side in ONE process, on the same model, batch size and device,
and reported as ratios (absolute times on shared machines are noisy).

    python benchmarks/train_throughput.py                      # the CPU cases (what `make bench` runs)
    python benchmarks/train_throughput.py --cases wrn40_2_cuda # the GPU case, on a machine with one
    python benchmarks/train_throughput.py --variants "channels_last=False" "precision=bf16" threads=1
    python benchmarks/train_throughput.py --cases small_cnn_cpu --profile   # where lnlib's step spends time

Per case it runs:

reference  A torchvision dataset class over the same uint8 images, with per-sample PIL transforms
           (RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize) through a ``DataLoader`` with
           ``min(4, cpus)`` worker processes (pinned memory on GPU), fp32, default memory format, the stock
           SGD (foreach), ``loss.item()`` every step: the shape of the LogitNorm and Hein et al. codes.
lnlib      ``lnlib.train.train_epoch`` on ``lnlib.train.build``'s model, exactly what ``fit`` trains with,
           with the config's defaults for the device: data resident on the device and normalised once,
           ``randperm`` batches, batched on-device augmentation, no host sync per step, channels_last, bf16
           autocast and fused SGD on GPU.
matmul     ``C = A @ B`` for square n x n matrices on the same device (fp32 on CPU; bf16 on GPU, the precision
           lnlib trains in there): 2n³ FLOP per product, the FLOP/s the hardware gives.

Both loops use the same model, loss (the config's), batch size and optimizer settings, and are timed over
``steps`` steps after ``warmup`` steps (the reference's worker start-up is not counted: in its favour).
Model FLOPs per training image are counted once with ``torch.utils.flop_counter`` (forward + backward of
convolutions and matrix products, the usual "model FLOPs"), so lnlib's achieved FLOP/s is
``images/s x FLOP per image`` and its utilisation is that over the matmul FLOP/s.
Peak memory: CPU, the highest RSS of the process plus the unique memory (USS) of its DataLoader workers,
sampled every 20 ms, above what the process held before the case; GPU, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import threading
import time
from datetime import date
from pathlib import Path

import psutil
import torch
import torchvision
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms
from torchvision.datasets import CIFAR10, FashionMNIST, VisionDataset

from lnlib import TrainConfig
from lnlib.data import ID_SETS, load_id, to_device
from lnlib.files import atomic_write_json
from lnlib.losses import make_loss
from lnlib.models import build_model
from lnlib.train import build, train_epoch

# name -> (config, number of training images (None: the real dataset), steps timed, warm-up steps, variants
# timed besides the defaults when --variants is not given)
WRN = TrainConfig(dataset="cifar10", model="wrn40_2", dropout=0.3)  # the LogitNorm paper's network
CASES = {
    "small_cnn_cpu": (TrainConfig(device="cpu"), None, 200, 10, []),
    "wrn40_2_cpu": (dataclasses.replace(WRN, device="cpu"), 1280, 4, 1, []),
    "wrn40_2_cuda": (dataclasses.replace(WRN, device="cuda"), 50_000, 390, 20, ["compile=True"]),
}
CPU_CASES = tuple(name for name, case in CASES.items() if case[0].device == "cpu")
# The project's targets per device type, and the book's table of these results: lnlib.throughput.
VARIANT_KEYS = ("channels_last", "precision", "compile", "threads")  # what --variants may change


# ------------------------------------------------------------------------------------------------ data
def case_data(cfg: TrainConfig, n_images: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and labels (N,): the real training set, or random CIFAR-shaped tensors
    (speed does not depend on the pixel values, and CIFAR is not available offline)."""
    if n_images is None:
        split = load_id(cfg.dataset)["train"]
        return split.images, split.labels
    spec = ID_SETS[cfg.dataset]
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n_images, *spec.shape), dtype=torch.uint8, generator=g),
            torch.randint(0, spec.num_classes, (n_images,), generator=g))


def torchvision_dataset(images: torch.Tensor, labels: torch.Tensor, transform) -> VisionDataset:
    """torchvision's own ``FashionMNIST`` (1 channel) or ``CIFAR10`` (3 channels) dataset over our arrays.

    Its ``__getitem__`` (array -> PIL image -> ``transform``, per sample) is what research code runs; its
    ``__init__``, which reads the dataset files from disk, is skipped because CIFAR is not here offline.
    """
    if images.shape[1] == 1:
        ds, data, targets = FashionMNIST.__new__(FashionMNIST), images[:, 0].contiguous(), labels
    else:
        ds, data, targets = CIFAR10.__new__(CIFAR10), images.permute(0, 2, 3, 1).numpy(), labels.tolist()
    VisionDataset.__init__(ds, root=None, transform=transform)
    ds.data, ds.targets = data, targets
    return ds


def reference_transform(cfg: TrainConfig) -> transforms.Compose:
    spec = ID_SETS[cfg.dataset]
    size, pad = spec.shape[1], 4 if spec.shape[1] >= 32 else 2  # the crops lnlib's augment makes
    steps = [transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip()] if cfg.augment else []
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])


# ------------------------------------------------------------------------------------------ measuring
class PeakMemory:
    """Peak memory during a ``with`` block, in MiB above what was held when it started (see module doc)."""

    def __init__(self, device: torch.device, interval: float = 0.02):
        self.device, self.interval, self.peak_mib = device, interval, 0.0

    def _held(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except psutil.Error:  # a worker that just exited
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._held())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._peak = self._held()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._held())
        self.peak_mib = (peak - self._base) / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, seconds: float = 2.0) -> tuple[float, str]:
    """FLOP/s of a square matrix product (n = 2048 on CPU, 8192 on GPU), the best of repeated timings."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best, str(dtype).removeprefix("torch.")


def flops_per_image(cfg: TrainConfig, device: torch.device, batch: int = 32) -> float:
    """FLOPs (forward + backward) of one training image, counted by torch's FLOP counter."""
    spec = ID_SETS[cfg.dataset]
    model = build_model(cfg).to(device).train()
    x = torch.randn(batch, *spec.shape, device=device)
    with FlopCounterMode(display=False) as counter:
        make_loss(cfg)(model(x), torch.zeros(batch, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / batch


# ------------------------------------------------------------------------------------------------ loops
def time_reference(cfg: TrainConfig, images, labels, steps: int, warmup: int) -> dict:
    """Images/s of the typical research loop (see module doc) over ``steps`` steps after ``warmup``."""
    device = torch.device(cfg.device)
    workers = min(4, os.cpu_count() or 1)
    loader = DataLoader(torchvision_dataset(images, labels, reference_transform(cfg)), batch_size=cfg.batch_size,
                        shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)
    if len(loader) < steps + warmup:
        raise ValueError(f"{len(images)} images make {len(loader)} batches; {steps} + {warmup} are needed")
    model = build_model(dataclasses.replace(cfg, channels_last=False)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg)
    running = 0.0
    with PeakMemory(device) as memory:
        for i, (x, y) in enumerate(loader):
            if i == warmup:
                sync(device)
                t0 = time.perf_counter()
            if i == warmup + steps:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()  # the per-step host sync research loops have (running-loss print)
        sync(device)
        seconds = time.perf_counter() - t0
    return {"images_per_s": steps * cfg.batch_size / seconds, "seconds": seconds, "steps": steps,
            "peak_mib": memory.peak_mib, "workers": workers}


def time_lnlib(cfg: TrainConfig, images, labels, steps: int, warmup: int) -> dict:
    """Images/s of :func:`lnlib.train.train_epoch` over ``steps`` steps after a ``warmup``-step epoch."""
    device = torch.device(cfg.device)
    with PeakMemory(device) as memory:
        spec = ID_SETS[cfg.dataset]
        train_x, train_y = to_device(images, spec, device), labels.to(device)
        net = build(cfg, device)
        train_epoch(net, train_x[:warmup * cfg.batch_size], train_y[:warmup * cfg.batch_size], 0)  # compile, caches
        sync(device)
        t0 = time.perf_counter()
        loss, _ = train_epoch(net, train_x[:steps * cfg.batch_size], train_y[:steps * cfg.batch_size], 1)
        loss.item()  # the one sync, at the end
        seconds = time.perf_counter() - t0
    return {"images_per_s": steps * cfg.batch_size / seconds, "seconds": seconds, "steps": steps,
            "peak_mib": memory.peak_mib}


def profile_lnlib(cfg: TrainConfig, images, labels, steps: int = 10, rows: int = 12) -> str:
    """Where the time of ``steps`` steps of lnlib's loop goes: torch.profiler's table of the top operators."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(cfg.device)
    n = steps * cfg.batch_size
    train_x, train_y = to_device(images[:n], ID_SETS[cfg.dataset], device), labels[:n].to(device)
    net = build(cfg, device)
    train_epoch(net, train_x, train_y, 0)  # warm-up (and compilation)
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]
    with profile(activities=activities) as prof:
        train_epoch(net, train_x, train_y, 1)[0].item()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows)


def parse_variant(text: str) -> dict:
    """``"channels_last=False precision=bf16"`` -> overrides; ``threads`` sets torch's CPU threads."""
    out = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in VARIANT_KEYS:
            raise ValueError(f"variant key {key!r} is not one of {VARIANT_KEYS}")
        out[key] = {"true": True, "false": False}.get(value.lower(), int(value) if value.isdigit() else value)
    return out


QUICK_STEPS = 5  # timed steps per loop in quick mode (CI, labs): the first case only, no variants


def plan(cases: list[str], variants: list[dict], steps: int = 0, quick: bool = False) -> tuple[list, list, int]:
    """What a caller (the run-it-yourself chapter) asks to time, checked before any timing: ``(cases, variants,
    steps)``. ``variants`` as dicts (``{"channels_last": False}``) become the ``--variants`` strings
    :func:`run_case` takes; an unknown case or variant key raises ``ValueError`` naming the valid ones; GPU cases
    are dropped where torch sees no GPU. ``quick`` keeps the first case and :data:`QUICK_STEPS` steps (unless
    ``steps`` is set), without variants."""
    if quick:
        cases, variants, steps = cases[:1], [], steps or QUICK_STEPS
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise ValueError(f"cases={bad} are not benchmark cases; choose from {sorted(CASES)}")
    if not torch.cuda.is_available():
        cases = [c for c in cases if CASES[c][0].device != "cuda"]
    variants = [" ".join(f"{key}={value}" for key, value in v.items()) for v in variants]  # the --variants form
    for v in variants:
        parse_variant(v)  # a bad setting fails here, before any timing
    return cases, variants, steps


def run_case(name: str, variants: list[str] | None = None, steps: int | None = None) -> dict:
    cfg, n_images, default_steps, warmup, default_variants = CASES[name]
    steps, variants = steps or default_steps, default_variants if variants is None else variants
    device = torch.device(cfg.device)
    images, labels = case_data(cfg, n_images if n_images is None else max(n_images, (steps + warmup) * 128))
    flops = flops_per_image(cfg, device)
    matmul, matmul_dtype = matmul_flops(device)
    result = {"case": name, "model": cfg.model, "dataset": cfg.dataset, "device": str(device),
              "batch_size": cfg.batch_size, "flop_per_image": flops, "matmul_flop_s": matmul,
              "matmul_dtype": matmul_dtype, "threads": torch.get_num_threads(),
              "reference": time_reference(cfg, images, labels, steps, warmup)}
    for label in ["defaults", *variants]:
        overrides = parse_variant(label) if label != "defaults" else {}
        threads = overrides.pop("threads", None)
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        timing = time_lnlib(dataclasses.replace(cfg, **overrides), images, labels, steps, warmup)
        torch.set_num_threads(before)
        timing["speedup"] = timing["images_per_s"] / result["reference"]["images_per_s"]
        timing["model_flop_s"] = timing["images_per_s"] * flops
        timing["matmul_fraction"] = timing["model_flop_s"] / matmul
        result["lnlib" if label == "defaults" else f"lnlib {label}"] = timing
    return result


def cpu_name() -> str:
    """The processor's model name (Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def machine() -> dict:
    info = {"date": date.today().isoformat(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "cpus": os.cpu_count(),
            "cpu": cpu_name()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(results: list[dict]) -> None:
    head = f"{'case':<15}{'loop':<40}{'images/s':>10}{'× ref':>8}{'GFLOP/s':>9}{'% matmul':>10}{'peak MiB':>10}"
    print(head + "\n" + "-" * len(head))
    for r in results:
        for loop in [k for k in r if k == "reference" or k.startswith("lnlib")]:
            t = r[loop]
            extra = (f"{t['speedup']:>8.2f}{t['model_flop_s'] / 1e9:>9.1f}{t['matmul_fraction']:>10.1%}"
                     if "speedup" in t else f"{'1.00':>8}{t['images_per_s'] * r['flop_per_image'] / 1e9:>9.1f}"
                     f"{t['images_per_s'] * r['flop_per_image'] / r['matmul_flop_s']:>10.1%}")
            print(f"{r['case']:<15}{loop:<40}{t['images_per_s']:>10.0f}{extra}{t['peak_mib']:>10.0f}")
        print(f"{'':<15}{'matmul ' + r['matmul_dtype']:<40}{'':>10}{'':>8}{r['matmul_flop_s'] / 1e9:>9.1f}"
              f"{'100.0%':>10}   ({r['flop_per_image'] / 1e6:.1f} MFLOP per training image)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=None, choices=sorted(CASES),
                        help="default: the CPU cases, plus wrn40_2_cuda when a GPU is present")
    parser.add_argument("--variants", nargs="*", default=None,
                        help=f"lnlib settings to time besides the defaults; keys {VARIANT_KEYS}")
    parser.add_argument("--profile", action="store_true", help="also print where lnlib's step spends its time")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per loop (default: per case)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args(argv)
    for v in args.variants or []:
        parse_variant(v)  # bad input fails before any work
    cases = args.cases or [*CPU_CASES, *(["wrn40_2_cuda"] if torch.cuda.is_available() else [])]
    if any(CASES[c][0].device == "cuda" for c in cases) and not torch.cuda.is_available():
        raise SystemExit("error: a cuda case was asked for, but torch sees no GPU; CPU cases: " + ", ".join(CPU_CASES))
    results = []
    for name in cases:
        results.append(run_case(name, args.variants, args.steps))
        print_table(results[-1:])
        if args.profile:
            cfg, n_images = CASES[name][:2]
            print(profile_lnlib(cfg, *case_data(cfg, n_images)))
    report = {"machine": machine(), "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(report, args.json)
    print(f"\n{report['machine']}\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
