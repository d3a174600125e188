"""Temperature scaling recovers a known temperature and moves only the confidences."""

import numpy as np
import pytest
from scipy.special import softmax

from lnlib import calibration, metrics


def _sample(t_true, n=20000, k=10, seed=0):
    """Logits and labels drawn from softmax(logits / t_true): calibrated at exactly T = t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, (n, k))
    p = softmax(z / t_true, axis=1)
    labels = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
    return z, labels


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_recovers_the_true_temperature(t_true):
    z, y = _sample(t_true)
    assert calibration.fit_temperature(z, y) == pytest.approx(t_true, rel=0.05)


def test_scaling_fixes_ece_and_keeps_accuracy():
    z, y = _sample(2.5)
    t = calibration.fit_temperature(z, y)
    before, after = calibration.calibration_report(z, y), calibration.calibration_report(z, y, t)
    assert after["accuracy"] == before["accuracy"]
    assert after["ece"] < 0.02 < before["ece"] and after["nll"] < before["nll"]
    assert after["mmc"] == pytest.approx(metrics.mmc(z / t))


def test_empty_set_is_refused():
    with pytest.raises(ValueError, match="val_size 0"):
        calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
