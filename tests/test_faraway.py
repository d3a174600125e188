"""Hein et al.'s far-away analysis on small random ReLU networks, checked against direct float64 evaluation."""

import numpy as np
import pytest
import torch

from lnlib import faraway, scores, toy2d
from lnlib.models import create_model


def _mlp(seed, d=2, k=3):
    torch.manual_seed(seed)
    model = create_model("mlp", (d,), k)
    for p in model.parameters():  # keep the random net's slopes well apart from ties
        p.data.normal_(0, 1)
    return model.eval()


@pytest.mark.parametrize("seed", range(3))
def test_the_limit_agrees_with_direct_evaluation_far_out(seed):
    model = _mlp(seed)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(seed))
    limit = faraway.ray_limit(model, x)
    far = 1e12  # beyond every detected alpha_final of these small nets, checked below
    assert (limit.alpha_final < far).all()
    with torch.no_grad():
        logits = faraway.float64_model(model)(far * x.double()).numpy()
    assert (logits.argmax(1) == limit.limit_class).all()
    log_conf = scores.log_msp(logits)
    unique = limit.slope_gap > 0
    assert unique.all()  # random directions: ties have measure zero
    assert np.allclose(log_conf, limit.limit_log_confidence, atol=1e-6)  # both ~0: confidence -> 1
    # affine in alpha beyond alpha_final: logits(2a x) - 2 logits(a x) = -offset, constant
    model64 = faraway.float64_model(model)
    with torch.no_grad():
        for a in (1e9, 1e10):
            diff = (model64(2 * a * x.double()) - 2 * model64(a * x.double())).numpy()
            assert np.allclose(diff, -limit.offset, rtol=1e-6, atol=1e-6 * a)


def test_the_pattern_is_constant_beyond_alpha_final():
    model = _mlp(7, d=5, k=4)
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(1))
    limit = faraway.ray_limit(model, x)
    for i in range(len(x)):
        start = limit.alpha_final[i]
        patterns = [faraway.activation_pattern(model.double(), a * x[i : i + 1].double()) for a in
                    (start, 10 * start, 1e6 * start)]
        assert all((p == patterns[0]).all() for p in patterns)
    assert (limit.pattern_changes >= 0).all() and limit.pattern_changes.max() > 0  # rays do cross regions


def test_alpha_curve_reaches_full_confidence_and_thresholds_are_read_off_it():
    model = _mlp(3)
    x = torch.rand(20, 2, generator=torch.Generator().manual_seed(0))
    alphas = 2.0 ** np.arange(0, 50)
    curve = faraway.alpha_curve(model, x, alphas)
    assert curve.shape == (20, 50) and (curve <= 0).all()
    assert (np.exp(curve[:, -1]) > 0.999).all()  # Theorem 3.1
    first = faraway.alpha_threshold(curve, alphas, 0.999)
    idx = np.searchsorted(alphas, first)
    assert (np.exp(curve[np.arange(20), idx]) >= 0.999).all()
    assert ((idx == 0) | (np.exp(curve[np.arange(20), np.maximum(idx - 1, 0)]) < 0.999)).all()
    assert np.isinf(faraway.alpha_threshold(np.full((2, 3), np.log(0.5)), alphas[:3])).all()
    with pytest.raises(ValueError, match="level=1.5"):
        faraway.alpha_threshold(curve, alphas, 1.5)


def test_patterns_of_a_cnn_include_max_pooling_and_models_without_relu_modules_are_refused():
    torch.manual_seed(0)
    cnn = create_model("small_cnn", (1, 28, 28), 10).eval()
    z = torch.randn(3, 1, 28, 28)
    p = faraway.activation_pattern(cnn, z)
    assert p.shape[0] == 3 and (faraway.activation_pattern(cnn, z) == p).all()
    assert not (faraway.activation_pattern(cnn, 2 * z) == faraway.activation_pattern(cnn, -z)).all()
    with pytest.raises(ValueError, match="no nn.ReLU"):
        faraway.activation_pattern(torch.nn.Linear(3, 2), torch.zeros(1, 3))


def test_hein_noise_is_in_the_box_and_deterministic():
    clean = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = faraway.hein_noise(clean, torch.Generator().manual_seed(1))
    b = faraway.hein_noise(clean, torch.Generator().manual_seed(1))
    c = faraway.hein_noise(clean, torch.Generator().manual_seed(2))
    assert a.shape == clean.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.amin(dim=(1, 2, 3)), torch.zeros(10)) and torch.allclose(a.amax(dim=(1, 2, 3)),
                                                                                      torch.ones(10))
    rough = (clean[:, :, 1:] - clean[:, :, :-1]).abs().mean()
    assert (a[:, :, 1:] - a[:, :, :-1]).abs().mean() < rough / 2  # low-pass filtered
    rgb = faraway.hein_noise(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0))
    assert rgb.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="frac_permuted=2"):
        faraway.hein_noise(clean, torch.Generator(), frac_permuted=2)


def test_pgd_stays_in_its_ball_and_the_box_and_raises_confidence():
    torch.manual_seed(0)
    model = create_model("small_cnn", (1, 28, 28), 10).eval()
    start = faraway.hein_noise(torch.rand(16, 1, 28, 28), torch.Generator().manual_seed(0))
    eps = 0.3
    adv = faraway.confidence_pgd(model, start, eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert (adv - start).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    again = faraway.confidence_pgd(model, start, eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adv, again)
    with torch.no_grad():
        before = torch.log_softmax(model(start), 1).amax(1)
        after = torch.log_softmax(model(adv), 1).amax(1)
    assert (after >= before).float().mean() >= 0.9 and after.mean() > before.mean()
    assert torch.equal(faraway.confidence_pgd(model, start, 0.0, steps=0), start)
    assert model.training is False
    with pytest.raises(ValueError, match="steps=-1"):
        faraway.confidence_pgd(model, start, eps, steps=-1)


def test_ray_limit_does_not_depend_on_the_chunk_size():
    model = _mlp(4, d=3, k=3)
    x = torch.randn(25, 3, generator=torch.Generator().manual_seed(2))
    whole, chunked = faraway.ray_limit(model, x, batch_size=100), faraway.ray_limit(model, x, batch_size=7)
    assert (whole.alpha_final == chunked.alpha_final).all()
    assert (whole.pattern_changes == chunked.pattern_changes).all() and np.allclose(whole.slope, chunked.slope)


def test_alpha_star_of_a_linear_model_is_the_closed_form():
    """Two classes, f(z) = Wz + b: the margin along the ray is α·a + c with a = (w₁ − w₂)·x and c = b₁ − b₂, the
    confidence is sigmoid(|α·a + c|), so it first reaches p at α* = (logit(p) − c)/a (for a > 0 and c < logit p)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2).double()
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        linear.bias.copy_(torch.tensor([-2.0, 1.0]))
        w = linear.weight
        a = (x @ (w[0] - w[1])).numpy()
        x[a < 0] *= -1  # every ray rises towards class 0
        a = np.abs(a)
    level, c = 0.999, -3.0
    exact = np.maximum((np.log(level / (1 - level)) - c) / a, 1.0)  # the scan starts at α = 1
    alphas = 2.0 ** np.arange(0, 40)
    found = faraway.alpha_star(linear, x, level, alphas, rtol=1e-9)
    assert np.allclose(found, exact, rtol=2e-9) and (found >= exact).all()  # returned from the side that reaches
    grid = faraway.alpha_threshold(faraway.alpha_curve(linear, x, alphas), alphas, level)
    assert (grid >= found).all() and (grid > 1.2 * found).mean() > 0.3  # the power-of-2 grid overstates it


@pytest.mark.parametrize("seed", range(3))
def test_alpha_star_agrees_with_a_brute_force_scan_of_a_relu_network(seed):
    model = _mlp(seed, d=4, k=5)
    x = torch.rand(50, 4, generator=torch.Generator().manual_seed(seed))
    found = faraway.alpha_star(model, x, 0.999, rtol=1e-6)
    assert np.isfinite(found).all() and (found >= 1).all()
    curve = faraway.alpha_curve(model, x)  # the grid's first α reached: from the whole curve, or ray by ray
    assert np.array_equal(faraway.first_on_grid(model, x), faraway.alpha_threshold(curve, faraway.ALPHAS))
    octaves = int(np.ceil(np.log2(found.max()))) + 1
    fine = np.geomspace(1, 2.0 ** octaves, octaves * 1024 + 1)  # 2^(1/1024) apart: brute force
    first = faraway.alpha_threshold(faraway.alpha_curve(model, x, fine), fine, 0.999)
    index = np.searchsorted(fine, first)
    below = fine[np.maximum(index - 1, 0)]
    # the crossing found lies in the fine step where the brute-force scan first reaches the level
    assert ((found <= first * (1 + 1e-12)) & ((found > below) | (index == 0))).all()
    assert faraway.agrees_with_grid(model, x, found, fine).all()  # the chapter's check says the same
    assert not faraway.agrees_with_grid(model, x, 1.01 * found, fine).all()  # and can fail
    with torch.no_grad():
        at = scores.msp(faraway.float64_model(model)(torch.from_numpy(found)[:, None] * x.double()))
    assert (at >= 0.999).all()


def test_alpha_star_says_where_rays_start_confident_or_never_get_there():
    model = _mlp(1, d=3, k=3)
    x = torch.rand(10, 3, generator=torch.Generator().manual_seed(0))
    curve = faraway.alpha_curve(model, x, [1.0, 2.0, 4.0])
    reached_at_start = np.exp(curve[:, 0]) >= 0.6
    found = faraway.alpha_star(model, x, 0.6, [1.0, 2.0, 4.0])
    assert (found[reached_at_start] == 1.0).all()  # the scan starts at the grid's first α
    flat = torch.nn.Linear(3, 3, bias=False)  # tiny logits up to α = 2: about 1/3 each, never 99.9%
    assert np.isinf(faraway.alpha_star(flat, 1e-6 * x, 0.999, [1.0, 2.0])).all()
    with pytest.raises(ValueError, match="rtol=0"):
        faraway.alpha_star(model, x, rtol=0)


def test_table2_matches_its_definition_on_a_pixel_cnn():
    torch.manual_seed(0)
    model = faraway.pixel_model(create_model("small_cnn", (1, 12, 12), 4), mean=(0.3,), std=(0.2,))
    u = torch.rand(30, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    alphas = 2.0 ** np.arange(0, 40)
    table = faraway.table2_summary(faraway.table2_rays(model, u, alphas))
    threshold = faraway.alpha_star(model, u, 0.999)  # on its own grid, 2^(k/8)
    assert table["median_alpha"] == np.median(threshold) and table["reached"] == np.isfinite(threshold).mean()
    at = np.where(np.isfinite(threshold), threshold, faraway.SEARCH_ALPHAS[-1])
    with torch.no_grad():
        direct = [scores.msp(model(torch.clamp(float(a) * u[i:i + 1], 0, 1)))[0] for i, a in enumerate(at)]
    assert table["clipped_overconfident"] == pytest.approx(np.mean(np.array(direct) > 0.95))
    with torch.no_grad():  # the pixel model is the model after (u - mean) / std
        assert torch.allclose(model(u), model[1]((u - 0.3) / 0.2), atol=1e-5)


def test_normalised_confidence_along_a_ray_tends_to_that_of_the_slope():
    """The bridge to LogitNorm: f(αx)/‖f(αx)‖ -> Vx/‖Vx‖, so the normalised confidence has a limit below 1."""
    model = _mlp(5, d=4, k=5)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    limit = faraway.ray_limit(model, x)
    tau = 0.3
    curve = faraway.alpha_curve(model, x, [1e12], score=lambda f: scores.log_normalized_confidence(f, tau))
    assert np.allclose(np.exp(curve[:, 0]), scores.normalized_confidence(limit.slope, tau), atol=1e-8)
    assert (np.exp(curve[:, 0]) < 1 - 1e-3).all()


# ------------------------------------------------------------------------------------------- the 2-D toy
def test_two_moons_are_in_the_unit_square_and_deterministic():
    x, y = toy2d.two_moons(200, seed=1)
    again, _ = toy2d.two_moons(200, seed=1)
    assert x.shape == (200, 2) and torch.equal(x, again) and set(y.tolist()) == {0, 1}
    assert x.min() == 0 and x.max() == 1


def test_the_network_is_one_affine_map_on_each_region_of_the_region_map():
    model = _mlp(6, d=2, k=3)
    axis, ids = toy2d.region_map(model, (-3, 3), resolution=60)
    _, points = toy2d.grid((-3, 3), resolution=60)
    with torch.no_grad():
        logits = faraway.float64_model(model)(points).numpy()
    ids = ids.ravel()
    assert ids[0] == 0 and len(np.unique(ids)) > 5
    for region in np.argsort(np.bincount(ids))[-5:]:  # the five largest regions: exactly affine on each
        inside = ids == region
        design = np.c_[points.numpy()[inside], np.ones(inside.sum())]
        fit, *_ = np.linalg.lstsq(design, logits[inside], rcond=None)
        assert np.abs(design @ fit - logits[inside]).max() < 1e-8
    design = np.c_[points.numpy(), np.ones(len(ids))]  # ... and not one affine map on the whole box
    fit, *_ = np.linalg.lstsq(design, logits, rcond=None)
    assert np.abs(design @ fit - logits).max() > 1e-3


def test_ceda_lowers_confidence_on_noise_in_the_toy():
    x, y = toy2d.two_moons(400)
    ce, ceda = (toy2d.train_toy(x, y, method, iterations=150, noise_size=400) for method in ("ce", "ceda"))
    assert (ce(x).argmax(1) == y).float().mean() > 0.95 and (ceda(x).argmax(1) == y).float().mean() > 0.95
    _, conf_ce = toy2d.confidence_map(ce, (0, 1), 40)
    _, conf_ceda = toy2d.confidence_map(ceda, (0, 1), 40)
    assert conf_ceda.mean() < conf_ce.mean() - 0.1
    _, far = toy2d.confidence_map(ceda, (-500, 500), 40)  # ... but not far away (Theorem 3.1)
    assert np.median(far) > 0.99
    _, normalised = toy2d.confidence_map(ce, (0, 1), 40, tau=0.5)
    assert (normalised >= 0.5 - 1e-12).all() and (normalised < 1).all()
    with pytest.raises(ValueError, match="method='oe'"):
        toy2d.train_toy(x, y, "oe")


def test_ray_limit_keeps_the_curve_it_walked():
    model = _mlp(8, d=3, k=4)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(4))
    alphas = 2.0 ** np.arange(0, 30, 3)
    limit = faraway.ray_limit(model, x, alphas)
    assert limit.logits.shape == (10, 10, 4)
    assert np.allclose(limit.curve(), faraway.alpha_curve(model, x, alphas), rtol=0, atol=1e-12)


def _far_argmax(model, x, far=1e12):
    with torch.no_grad():
        return faraway.float64_model(model)(far * x.double()).numpy().argmax(1)


def test_on_rays_with_tied_slopes_the_offsets_decide_the_limiting_class():
    """Two identical rows in the last layer (biases apart): those two classes share the slope on every ray."""
    model = _mlp(3, d=2, k=3)
    with torch.no_grad():
        model.head.weight[2] = model.head.weight[0]
        model.head.bias[2] = model.head.bias[0] + 1.0  # class 2 = class 0 + 1 everywhere
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    limit = faraway.ray_limit(model, x)
    far = _far_argmax(model, x)
    tied = limit.slope_gap <= 1e-9 * np.abs(limit.slope).max(axis=1)
    assert tied.any() and (limit.limit_class == far).all()
    assert (far[tied] == 2).all() and not (limit.limit_class == 0).any()  # 0 never beats its copy with +1
    # on a tie the limiting confidence is the softmax of the tied offsets: 1 / (1 + e^-1) here
    assert np.allclose(np.exp(limit.limit_log_confidence[tied]), 1 / (1 + np.exp(-1.0)))


def test_rays_along_which_every_relu_switches_off_end_at_the_offsets():
    """First-layer weights all positive, directions all negative: beyond some α every unit is off, the slope is 0
    and the logits tend to the network's output at zero activation, whatever the direction."""
    model = _mlp(4, d=3, k=4)
    with torch.no_grad():
        first = model.body[1]
        first.weight.abs_()
    x = -torch.rand(32, 3, generator=torch.Generator().manual_seed(2)) - 0.1
    limit = faraway.ray_limit(model, x)
    assert np.allclose(limit.slope, 0, atol=1e-9)
    far = _far_argmax(model, x)
    assert (limit.limit_class == far).all() and len(set(far)) == 1
    assert far[0] != 0  # so the argmax of the (zero) slope, class 0, would be wrong here


def _pgd_two_forwards_per_step(model, start, eps, steps, generator):
    """The attack as first written: after each step, a second forward pass for the new iterate's confidence."""
    def confidence(u):
        return torch.log_softmax(model(u).float(), dim=1).amax(dim=1)

    def project(u):
        return torch.minimum(torch.maximum(u.clamp(0, 1), start - eps), start + eps)

    model.eval()
    step_size = eps / max(steps, 1)
    scale = torch.rand((len(start), *[1] * (start.ndim - 1)), generator=generator)
    u = project(start + scale * eps * (2 * torch.rand(start.shape, generator=generator) - 1))
    with torch.no_grad():
        best, best_conf = u.clone(), confidence(u)
    for _ in range(steps):
        u = u.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(confidence(u).sum(), u)
        with torch.no_grad():
            u = project(u + step_size * grad.sign())
            new_conf = confidence(u)
            better = new_conf > best_conf
            best[better], best_conf[better] = u[better], new_conf[better]
    return best


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_pgd_reuses_the_step_forward_and_returns_exactly_what_two_forwards_per_step_did(steps):
    torch.manual_seed(0)
    model = create_model("small_cnn", (1, 28, 28), 10)
    start = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    got = faraway.confidence_pgd(model, start, 0.3, steps, generator=torch.Generator().manual_seed(1))
    assert len(calls) == steps + 1  # one forward per gradient step, and one for the last iterate
    want = _pgd_two_forwards_per_step(model, start, 0.3, steps, torch.Generator().manual_seed(1))
    assert torch.equal(got, want)
