"""What the far-away chapters show: the right rows, in the right order and units, from hand-made record frames."""

import numpy as np
import pandas as pd
import pytest
import torch

from lnlib import faraway, faraway_views, hein, stats, tables, toy2d
from lnlib.models import MLP


def ray_frame():
    """Two methods, two sets, every metric of Table 2 and the bridge; value = a code of (method, set, metric)."""
    rows = [{"method": m, "set": s, "metric": k, "value": 100 * i + 10 * j + n}
            for i, m in enumerate(["acet", "ce"]) for j, s in enumerate([hein.TEST_IMAGES, hein.UNIFORM_NOISE])
            for n, k in enumerate([*faraway_views.TABLE2, *faraway_views.BRIDGE])]
    return pd.DataFrame(rows)


def test_by_method_keeps_the_records_order_and_puts_methods_in_the_asked_order():
    table = faraway_views.by_method(ray_frame(), faraway_views.TABLE2, ["ce", "acet"])
    assert list(table.columns) == [tables.LABELS["ce"], tables.LABELS["acet"]]
    assert list(table.index) == [(s, k) for s in (hein.TEST_IMAGES, hein.UNIFORM_NOISE) for k in faraway_views.TABLE2]
    assert table.loc[(hein.UNIFORM_NOISE, "reached"), tables.LABELS["ce"]] == 100 + 10 + 1
    html = faraway_views.style_table2(table, "caption").to_html()
    assert "reached 99.9%" in html and "11100.0%" in html and ">110<" in html  # shares in percent, α as it is
    medians = faraway_views.bridge_medians(ray_frame())
    assert medians["msp_far"]["ce", hein.TEST_IMAGES] == 100 + len(faraway_views.TABLE2) + 1


def test_curve_panels_floor_one_minus_confidence_for_a_log_axis():
    logits = np.zeros((2, len(faraway.ALPHAS), 3))
    logits[0, :, 0] = np.linspace(0, 1e4, len(faraway.ALPHAS))  # ray 0: confidence -> 1 in float64
    limit = faraway.RayLimit(*[None] * 7, alphas=faraway.ALPHAS, logits=logits)
    panels = faraway_views.curve_panels({("ce", "s"): limit}, ["ce"], ["s"])
    alphas, values = panels["s"][tables.LABELS["ce"]]
    assert alphas is faraway.ALPHAS and values.shape == (2, len(faraway.ALPHAS))
    assert values[0, 0] == pytest.approx(2 / 3) and values[0, -1] == faraway_views.FLOOR  # not 0: a log axis
    assert np.allclose(values[1], 2 / 3)  # three tied classes: 1 − 1/3 all along
    assert faraway_views.largest_normalized(0.04, 10) == pytest.approx(1, abs=1e-9)
    assert faraway_views.largest_normalized(1.0, 10) < 0.25


def test_verdicts_name_each_auroc_by_its_set_and_show_log_alpha_in_log10_units():
    rows = []
    for seed in range(6):
        for m, shift in (("ce", 0.0), ("acet", 1.0)):
            rows += [{"method": m, "seed": seed, "set": hein.UNIFORM_NOISE, "metric": "log10_median_alpha",
                      "value": shift + 0.02 * seed},
                     {"method": m, "seed": seed, "set": "adv. noise", "metric": "auroc", "value": 0.5 * shift},
                     {"method": m, "seed": seed, "set": "noise", "metric": "auroc", "value": 0.9},
                     {"method": m, "seed": seed, "set": "noise", "metric": "mmc", "value": 0.3}]  # not decided
    tested = faraway_views.verdict_records(pd.DataFrame(rows))
    assert list(dict.fromkeys(tested["metric"])) == ["log10_median_alpha", "noise auroc", "adv. noise auroc"]
    found = stats.compare_each(tested, "metric", against="ce")
    table = faraway_views.verdict_table(found, "ce")
    assert table.loc["ACET: log10 of the median α*", "method"] == "1.05"  # two decimals, not percent
    assert table.loc["ACET: AUROC vs attacked noise (%)", "method"] == "50.0"  # percent
    words = faraway_views.verdict_glue(found)
    assert set(words) == {"verdict_acet_log10_median_alpha", "verdict_acet_noise_auroc", "verdict_acet_adv_noise_auroc"}
    assert "log10 α" in words["verdict_acet_log10_median_alpha"]
    assert set(faraway_views.verdict_panels()) == set(faraway_views.VERDICTS)


def test_toy_maps_have_one_row_per_method_then_the_normalised_confidence():
    torch.manual_seed(0)
    toy = {m: MLP(2, 2, hidden=(8,)).double() for m in toy2d.TOY_METHODS}
    maps = toy2d.confidence_maps(toy, resolution=4, tau=0.5)
    assert list(maps)[:4] == [tables.LABELS[m] for m in toy2d.TOY_METHODS] and "τ = 0.5" in list(maps)[4]
    assert all(list(row) == list(toy2d.BOXES) for row in maps.values())
    axis, values = maps[tables.LABELS["ce"]]["100× wider"]
    assert axis[0] == -49.5 and values.shape == (4, 4) and ((values >= 0.5) & (values <= 1)).all()  # K = 2
    medians = toy2d.median_confidence(maps)
    data_box = maps[tables.LABELS["ce"]]["data box [0, 1]²"][1]
    assert medians.shape == (5, 3) and medians.iloc[0, 0] == f"{100 * np.median(data_box):.1f}%"
