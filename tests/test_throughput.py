"""The speed benchmark's table, caption and targets, on hand-made results (no timing)."""

import pytest

from lnlib import throughput


def _result(case="small_cnn_cpu", device="cpu", ref=100.0, lnlib=300.0, fraction=0.4):
    return {"case": case, "device": device, "flop_per_image": 2e6, "matmul_flop_s": 1e9, "matmul_dtype": "float32",
            "reference": {"images_per_s": ref, "peak_mib": 500.0},
            "lnlib": {"images_per_s": lnlib, "peak_mib": 100.0, "speedup": lnlib / ref, "matmul_fraction": fraction,
                      "steps": 7},
            "lnlib threads=1": {"images_per_s": 150.0, "peak_mib": 90.0, "speedup": 1.5, "matmul_fraction": 0.1}}


def test_one_row_per_case_and_loop_with_the_ratios():
    table = throughput.table([_result(), _result("wrn40_2_cpu", ref=10.0, lnlib=20.0)])
    assert list(table.index) == [("small_cnn_cpu", "reference"), ("small_cnn_cpu", "lnlib"),
                                 ("small_cnn_cpu", "lnlib threads=1"), ("wrn40_2_cpu", "reference"),
                                 ("wrn40_2_cpu", "lnlib"), ("wrn40_2_cpu", "lnlib threads=1")]
    row = table.loc[("small_cnn_cpu", "lnlib")]
    assert row["× reference"] == 3.0 and row["% of matmul FLOP/s"] == pytest.approx(100 * 300 * 2e6 / 1e9)
    assert table.loc[("wrn40_2_cpu", "reference"), "× reference"] == 1.0
    assert table.loc[("wrn40_2_cpu", "lnlib threads=1"), "× reference"] == 15.0
    assert list(table.columns) == list(throughput.FORMATS)


def test_the_caption_names_the_machine_matmul_and_steps():
    results = [_result()]
    machine = {"cpus": 2, "cpu": "Some CPU", "torch": "2.5", "date": "2026-12-07"}
    caption = throughput.style(throughput.table(results), {"machine": machine, "results": results}).caption
    assert caption.startswith("Measured while this page was built: 2 CPU cores (Some CPU), no GPU, torch 2.5")
    assert "small_cnn_cpu 1 GFLOP/s (float32)" in caption and "Steps timed: 7;" in caption
    gpu = throughput.style(throughput.table(results), {"machine": {**machine, "gpu": "H100"}, "results": results})
    assert "(Some CPU), H100, torch" in gpu.caption


def test_the_targets_per_device_and_the_epoch_time():
    met, slow, unused = _result(), _result(lnlib=150.0), _result(fraction=0.2)
    assert [throughput.target_met(r) for r in (met, slow, unused)] == [True, False, False]
    lines = throughput.summary([met, slow])
    assert lines[0].startswith("small_cnn_cpu: lnlib trained 3.00x as many images per second")
    assert "(300 vs 100)" in lines[0] and "reached 40% of the matmul" in lines[0] and "(2.0 MFLOP" in lines[0]
    assert lines[1] == "  target: 2x the reference and 35% of matmul -> met on this machine"
    assert lines[3].endswith("-> NOT met on this machine")
    gpu = _result("wrn40_2_cuda", "cuda:0", ref=5_000.0, lnlib=12_500.0, fraction=0.01)
    lines = throughput.summary([gpu])
    assert lines[1] == "  one epoch of 50,000 images: 4.0 s (target: 4.5 s)"
    assert lines[2] == "  target: 3x the reference -> NOT met on this machine"  # 2.5x < 3x; no matmul target
    assert throughput.target_met({**gpu, "lnlib": {**gpu["lnlib"], "speedup": 3.0}})
