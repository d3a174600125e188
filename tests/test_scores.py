"""Post-hoc OOD scores: the sign convention, known values, and GradNorm/ODIN against autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lnlib import scores
from lnlib.models import create_model

LOGIT_SCORES = ["msp", "max_logit", "energy", "entropy", "normalized_confidence"]


@pytest.mark.parametrize("name", LOGIT_SCORES)
def test_higher_means_more_in_distribution(name):
    confident, flat = [8.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.05, 0.02]
    s = scores.from_outputs(name, np.array([confident, flat]))
    assert s.shape == (2,) and s.dtype == np.float64 and s[0] > s[1]


def test_known_values():
    z = np.zeros((1, 4))
    assert scores.energy(z, temperature=1.0)[0] == pytest.approx(np.log(4))
    assert scores.energy(z, temperature=2.0)[0] == pytest.approx(2 * np.log(4))
    assert scores.neg_entropy(z)[0] == pytest.approx(-np.log(4))
    assert scores.max_logit(np.array([[1.0, 3.0, -2.0]]))[0] == 3.0
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (200, 10))
    assert np.allclose(scores.energy(z, temperature=1e-3), scores.max_logit(z), atol=1e-2)  # T -> 0
    assert np.allclose(np.exp(scores.log_msp(z)), scores.msp(z))


def test_normalized_confidence_ignores_the_norm_and_is_bounded_by_tau():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, (100, 10))
    tau = 0.1
    c = scores.normalized_confidence(z, tau)
    assert np.allclose(c, scores.normalized_confidence(37.0 * z, tau))
    # best unit vector: margin sqrt(K/(K-1)) between the top logit and all others, divided by tau
    best = 1 / (1 + 9 * np.exp(-np.sqrt(10 / 9) / tau))
    assert (c <= best + 1e-12).all() and (c >= 0.1).all()
    assert np.allclose(scores.log_normalized_confidence(z, tau), np.log(c))


def test_gradnorm_is_the_per_sample_gradient_norm_of_the_last_layer():
    torch.manual_seed(0)
    model = create_model("small_cnn", (1, 28, 28), 10).eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        h = model.features(x)
        z = model.head(h)
    expected = []
    for i in range(len(x)):  # autograd, one input at a time, as GradNorm defines it
        model.zero_grad()
        log_p = F.log_softmax(model.head(h[i : i + 1]), dim=1)
        (-log_p.mean()).backward()  # KL(u || p) up to a constant: -(1/K) sum_k log p_k
        expected.append(model.head.weight.grad.abs().sum().item())
    got = scores.gradnorm(z, h)
    assert np.allclose(got, expected, rtol=1e-5)
    assert len(set(np.round(got, 6))) == len(x)  # one score per input, not one per batch


def test_odin():
    torch.manual_seed(0)
    model = create_model("small_cnn", (1, 28, 28), 10).eval()
    x = torch.randn(40, 1, 28, 28)
    with torch.no_grad():
        z = model(x)
    at_zero = scores.odin(model, x, temperature=1000.0, epsilon=0.0)
    assert np.allclose(at_zero, torch.softmax(z.double() / 1000, 1).amax(1).numpy())  # no perturbation
    perturbed = scores.odin(model, x, temperature=1000.0, epsilon=0.002)
    assert (perturbed > at_zero).mean() > 0.9  # the step raises the predicted class's softmax
    # epsilon is in pixel units: the step in normalised space is epsilon / std
    assert np.allclose(scores.odin(model, x, 1000.0, 0.004, std=(2.0,)), perturbed)
    assert np.allclose(scores.odin(model, x, 1000.0, 0.002, batch_size=7), perturbed)  # batches independent
    assert model.training is False


def test_bad_names_and_parameters_are_named():
    with pytest.raises(ValueError, match="score='foo'.*'energy'"):
        scores.score_params("foo")
    with pytest.raises(ValueError, match=r"no parameter \['temp'\].*\['temperature'\]"):
        scores.score_params("energy", temp=1.0)
    with pytest.raises(ValueError, match="needs the penultimate features"):
        scores.from_outputs("gradnorm", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="needs the model"):
        scores.from_outputs("odin", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="temperature=0 must be > 0"):
        scores.energy(np.zeros((2, 3)), temperature=0)
    with pytest.raises(ValueError, match=r"logits must be \(N, K\)"):
        scores.msp(np.zeros(3))
