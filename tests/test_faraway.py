"""Hein et al.'s far-away analysis on small random ReLU networks, checked against direct float64 evaluation."""

import numpy as np
import pytest
import torch

from lnlib import faraway, scores
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
