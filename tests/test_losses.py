import math

import pytest
import torch
import torch.nn.functional as F

from lnlib import losses
from lnlib.losses import (
    LOGIT_NORM_EPS,
    LogitNormLoss,
    cross_entropy,
    logit_norm_loss,
    logit_norm_lower_bound,
    logit_norm_min_loss,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 10, generator=g) * 5, torch.randint(0, 10, (64,), generator=g)


def test_equals_cross_entropy_of_normalised_logits(batch):
    logits, labels = batch
    tau = 0.04
    expected = F.cross_entropy(logits / (tau * (logits.norm(dim=1, keepdim=True) + LOGIT_NORM_EPS)), labels)
    assert torch.allclose(logit_norm_loss(logits, labels, tau), expected, rtol=1e-6)


def test_known_value():
    # f = (1, 0), y = 0, tau = 1: normalised logits (1, 0) -> CE = log(1 + e^-1)
    loss = logit_norm_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), tau=1.0)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)


@pytest.mark.parametrize("scale", [1e-2, 0.5, 3.0, 1e3])
def test_invariant_to_positive_scaling(batch, scale):
    logits, labels = batch
    assert torch.allclose(logit_norm_loss(scale * logits, labels, 0.1), logit_norm_loss(logits, labels, 0.1),
                          rtol=1e-5)


def test_cross_entropy_is_not_scale_invariant(batch):
    # the contrast the paper is about: scaling correct logits up lowers CE
    logits, _ = batch
    labels = logits.argmax(1)
    assert cross_entropy(10 * logits, labels) < cross_entropy(logits, labels)


def test_finite_gradients_at_zero_logits():
    logits = torch.zeros(4, 10, requires_grad=True)
    loss = logit_norm_loss(logits, torch.arange(4), tau=0.04)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(math.log(10), rel=1e-6)  # all-zero logits: uniform softmax


@pytest.mark.parametrize("tau", [0.01, 0.04, 0.3, 1.0])
@pytest.mark.parametrize("k", [2, 10, 100])
def test_lower_bounds_hold_and_the_exact_minimum_is_reached(tau, k):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2000, k, generator=g, dtype=torch.float64) * 10
    labels = logits.argmax(1)
    per_sample = F.cross_entropy(logits / (tau * logits.norm(dim=1, keepdim=True)), labels, reduction="none")
    exact, paper = logit_norm_min_loss(tau, k), logit_norm_lower_bound(tau, k)
    assert exact >= paper
    assert per_sample.min().item() >= exact * (1 - 1e-9) - 1e-15  # float64 cannot resolve below ~1e-16
    # the minimiser: sqrt((K-1)/K) on the true class, -1/sqrt(K(K-1)) elsewhere (any positive scale)
    best = torch.full((1, k), -1 / math.sqrt(k * (k - 1)), dtype=torch.float64)
    best[0, 0] = math.sqrt((k - 1) / k)
    reached = logit_norm_loss(7 * best, torch.tensor([0]), tau, eps=0).item()
    assert reached == pytest.approx(exact, rel=1e-5, abs=1e-7)  # the loss is computed in float32


def test_computed_in_float32_under_bfloat16(batch):
    logits, labels = batch
    loss = logit_norm_loss(logits.bfloat16(), labels, 0.04)
    assert loss.dtype == torch.float32


def test_module_wrapper_and_bad_tau(batch):
    logits, labels = batch
    assert torch.equal(LogitNormLoss(0.5)(logits, labels), logit_norm_loss(logits, labels, 0.5))
    with pytest.raises(ValueError, match="tau"):
        LogitNormLoss(0.0)


def test_max_log_confidence_is_minimal_at_the_uniform_prediction():
    k = 10
    assert torch.isclose(losses.max_log_confidence(torch.zeros(4, k)), torch.tensor(-math.log(k)))
    logits = torch.randn(64, k)
    assert losses.max_log_confidence(logits) > -math.log(k)
    assert torch.isclose(losses.max_log_confidence(logits),
                         torch.log_softmax(logits, 1).max(1).values.mean())


def test_confidence_logits_is_what_each_loss_trains():
    from lnlib import TrainConfig

    logits = torch.randn(8, 10)
    assert torch.equal(losses.confidence_logits(TrainConfig(loss="ce"))(logits), logits)
    normalised = losses.confidence_logits(TrainConfig(loss="logitnorm", tau=0.1))(logits)
    assert torch.allclose(normalised.norm(dim=1), torch.full((8,), 10.0), rtol=1e-5)
