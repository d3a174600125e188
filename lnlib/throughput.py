"""The training-speed benchmark as the book shows it: its table, its caption and the project's targets.

``benchmarks/train_throughput.py`` measures (``run_case`` gives one result dict per case: images/s of the reference
loop and of lnlib's loop and its variants, FLOP per training image, the matmul FLOP/s); this module turns those
results into the rows of the "Run it yourself" chapter and says whether each case met its target.
"""

from __future__ import annotations

import pandas as pd

# The project's targets per device type: (× the reference loop, share of the matmul FLOP/s or None).
TARGETS = {"cpu": (2, 0.35), "cuda": (3, None)}
EPOCH_IMAGES = 50_000  # one epoch of CIFAR's training set, on a GPU
EPOCH_SECONDS = 4.5  # the GPU target for that epoch: the 200-epoch recipe in 15 minutes
FORMATS = {"images/s": "{:,.0f}", "× reference": "{:.2f}", "% of matmul FLOP/s": "{:.1f}",
           "peak memory (MiB)": "{:.0f}"}


def table(results: list[dict]) -> pd.DataFrame:
    """One row per (case, loop) of the benchmark's ``results``: images/s, the ratio to the case's reference loop,
    the model FLOP/s as a percentage of the case's matmul FLOP/s, and the peak memory (MiB). Indexed by
    ``case, loop``; the reference row of each case is its own baseline (× reference = 1)."""
    rows = []
    for r in results:
        for loop in [k for k in r if k == "reference" or k.startswith("lnlib")]:  # lnlib: defaults, variants
            t = r[loop]
            per_s = t["images_per_s"]
            rows.append({"case": r["case"], "loop": loop, "images/s": per_s,
                         "× reference": per_s / r["reference"]["images_per_s"],
                         "% of matmul FLOP/s": 100 * per_s * r["flop_per_image"] / r["matmul_flop_s"],
                         "peak memory (MiB)": t["peak_mib"]})
    return pd.DataFrame(rows).set_index(["case", "loop"])


def style(frame: pd.DataFrame, report: dict):
    """:func:`table` for display: its formats and a caption naming the machine that measured it (``report``:
    ``{"machine": benchmarks.train_throughput.machine(), "results": [...]}``), each case's matmul FLOP/s and the
    steps timed; timings on a shared machine are noisy, and the caption says so."""
    m, results = report["machine"], report["results"]
    return frame.style.format(FORMATS).set_caption(
        f"Measured while this page was built: {m['cpus']} CPU cores ({m['cpu']})"
        f"{', ' + m['gpu'] if 'gpu' in m else ', no GPU'}, "
        f"torch {m['torch']}, {m['date']}. Matmul: "
        + "; ".join(f"{r['case']} {r['matmul_flop_s'] / 1e9:.0f} GFLOP/s ({r['matmul_dtype']})" for r in results)
        + f". Steps timed: {', '.join(str(r['lnlib']['steps']) for r in results)}; one run each: on a shared "
        "machine, repeated runs differ by tens of percent.")


def target_met(result: dict) -> bool:
    """Whether lnlib's loop met :data:`TARGETS` of the case's device type: its speed-up over the reference loop and,
    where the target has one, its share of the matmul FLOP/s."""
    speedup_min, matmul_min = TARGETS[result["device"].split(":")[0]]
    lnlib = result["lnlib"]
    return lnlib["speedup"] >= speedup_min and (matmul_min is None or lnlib["matmul_fraction"] >= matmul_min)


def summary(results: list[dict]) -> list[str]:
    """Per case, in words: lnlib's speed-up and images/s against the reference loop, its share of the matmul FLOP/s
    and the model FLOP per training image; on a GPU the time of one :data:`EPOCH_IMAGES` epoch against
    :data:`EPOCH_SECONDS`; then the case's target and whether it was met. One string per printed line."""
    lines = []
    for r in results:
        lnlib, ref = r["lnlib"], r["reference"]
        lines.append(f"{r['case']}: lnlib trained {lnlib['speedup']:.2f}x as many images per second as the reference "
                     f"loop ({lnlib['images_per_s']:,.0f} vs {ref['images_per_s']:,.0f}) and reached "
                     f"{lnlib['matmul_fraction']:.0%} of the matmul FLOP/s "
                     f"({r['flop_per_image'] / 1e6:,.1f} MFLOP per training image).")
        if r["device"].startswith("cuda"):
            lines.append(f"  one epoch of {EPOCH_IMAGES:,} images: {EPOCH_IMAGES / lnlib['images_per_s']:.1f} s "
                         f"(target: {EPOCH_SECONDS} s)")
        speedup_min, matmul_min = TARGETS[r["device"].split(":")[0]]
        lines.append(f"  target: {speedup_min}x the reference" + (f" and {matmul_min:.0%} of matmul" if matmul_min
                                                                    else "")
                     + f" -> {'met' if target_met(r) else 'NOT met'} on this machine")
    return lines
