"""Evaluate once, analyse many times: cached outputs, every score on a real trained run, tidy records."""

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from lnlib import calibration, data, evaluate, metrics, ranking, scores, tidy
from lnlib.data import ID_SETS, NEAR_OOD, OOD_SETS, load_id, split_train_val, to_device
from lnlib.evaluate import ID_TEST, ID_VAL
from lnlib.runs import Run
from lnlib.train import load_or_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_mnist_available):
    return load_or_train(tiny_cfg(loss="ce"), root=tmp_path_factory.mktemp("runs"))


def test_outputs_are_cached_with_features_and_the_validation_split(run):
    out = evaluate.outputs(run)
    assert list(out) == [ID_TEST, ID_VAL, *OOD_SETS]
    val = out[ID_VAL]
    assert val.features.shape == (1000, 64) and val.logits.shape == (1000, 10)
    expected_val = split_train_val(load_id("fashion_mnist")["train"], 5000)[1].subset(1000)
    assert (val.labels == expected_val.labels.numpy()).all()  # the held-out split, never trained on
    model = run.load_model()
    with torch.no_grad():
        head = model.head(torch.from_numpy(val.features)).numpy()
        direct = model(to_device(expected_val.images, ID_SETS["fashion_mnist"], "cpu")).numpy()
    assert np.allclose(head, val.logits, atol=1e-5) and np.allclose(direct, val.logits, atol=1e-4)


def test_a_cache_without_features_is_recomputed(run):
    path = run.path / "logits" / "digits.npz"
    before = evaluate.outputs(run, ["digits"])["digits"]
    np.savez(path, logits=before.logits, labels=before.labels)  # the format of earlier versions
    after = evaluate.outputs(run, ["digits"])["digits"]
    assert (after.logits == before.logits).all() and after.features.shape == before.features.shape


@pytest.mark.parametrize("name", sorted(scores.SCORES))
def test_every_score_on_a_trained_run(run, name):
    s = evaluate.set_scores(run, name, [ID_TEST, "gaussian_noise"])
    assert s[ID_TEST].shape == (1000,) and np.isfinite(s[ID_TEST]).all()


def test_model_scores_are_computed_once(run, monkeypatch):
    first = evaluate.set_scores(run, "odin", [ID_TEST, "digits"], epsilon=0.001)
    assert (run.path / "scores" / "odin-epsilon0.001-temperature1000" / "digits.npy").exists()
    monkeypatch.setattr(scores, "odin", lambda *a, **k: pytest.fail("ODIN recomputed"))
    again = evaluate.set_scores(run, "odin", [ID_TEST, "digits"], epsilon=0.001)
    assert all((first[k] == again[k]).all() for k in first)


def test_ood_records_and_the_convention_flag(run):
    records = tidy.ood_records([run], ["msp", "energy"], params={"energy": {"temperature": 0.5}})
    assert len(records) == 2 * len(OOD_SETS) * 4
    assert set(records.columns) == {"loss", "method", "tau", "weight_decay", "seed", "run", "score", "ood_set", "n_id",
                                      "n_ood", "metric", "value"}
    assert (records["n_id"] == 1000).all() and (records["n_ood"] == 1000).all()
    assert records["value"].between(0, 1).all() and (records["loss"] == "ce").all()
    flipped = tidy.ood_records([run], ["msp"], positive="ood").set_index(["ood_set", "metric"])["value"]
    same = records.query("score == 'msp'").set_index(["ood_set", "metric"])["value"]
    assert np.allclose(flipped.drop("fpr95", level="metric"), same.drop("fpr95", level="metric"))
    assert not np.allclose(flipped.xs("fpr95", level="metric"), same.xs("fpr95", level="metric"))
    official = tidy.ood_records([run], ["msp"], protocol="official")
    assert (official["n_ood"] == 200).all()  # quick run: 1000 ID test images // 5
    assert "every OOD image scored once" in evaluate.convention()
    assert "len(ID test)//5" in evaluate.convention(protocol="official")


def test_norm_records_on_a_trained_run_agree_with_the_ood_records(run):
    norms = ranking.norm_records([run]).set_index(["ood_set", "metric"])["value"]
    assert len(norms) == len(OOD_SETS) * len(ranking.NORM_METRICS)
    assert norms.xs("rank_corr", level="metric").between(-1, 1).all()
    assert (norms.xs("norm_ratio", level="metric") > 0).all()
    msp = tidy.ood_records([run], ["msp"]).query("metric == 'fpr95'").set_index("ood_set")["value"]
    assert np.allclose(norms.xs("fpr95_msp", level="metric").loc[msp.index], msp)  # the same MSP, the same FPR95


def test_bad_requests_fail_before_any_work():
    nowhere = Run("/nonexistent/run")
    with pytest.raises(ValueError, match="score='foo'"):
        tidy.ood_records([nowhere], ["foo"])
    with pytest.raises(ValueError, match=r"params given for \['enrgy'\]"):
        tidy.ood_records([nowhere], ["energy"], params={"enrgy": {}})
    with pytest.raises(ValueError, match="positive='x'"):
        tidy.ood_records([nowhere], ["msp"], positive="x")
    with pytest.raises(ValueError, match="protocol='paper'"):
        tidy.ood_records([nowhere], ["msp"], protocol="paper")
    with pytest.raises(ValueError, match=r"unknown evaluation sets \['svhm'\]"):
        evaluate.evaluation_sets(tiny_cfg(), ["svhm"])
    with pytest.raises(ValueError, match="val_size=0"):
        evaluate.evaluation_sets(tiny_cfg(val_size=0), [ID_VAL])


def test_calibration_is_fitted_on_the_validation_split(run):
    records = tidy.calibration_records([run]).set_index(["metric", "stage"])["value"]
    val = evaluate.outputs(run, [ID_VAL])[ID_VAL]
    t = records["temperature", "after"]
    assert ("temperature", "before") not in records.index
    assert t == pytest.approx(calibration.fit_temperature(val.logits, val.labels))
    assert records["accuracy", "before"] == records["accuracy", "after"] == pytest.approx(run.metrics["test_acc"])
    # the fitted T minimises the validation NLL (the test NLL may move either way: it is not fitted on it)
    nll_val = lambda t: calibration.calibration_report(val.logits, val.labels, t)["nll"]
    assert nll_val(t) <= min(nll_val(1.0), nll_val(0.9 * t), nll_val(1.1 * t))
    accuracy = tidy.accuracy_records([run])
    assert accuracy["value"].tolist() == [run.metrics["test_acc"]] and accuracy["metric"].tolist() == ["accuracy"]


def test_per_set_values_and_the_correctness_split(run):
    mmc = evaluate.per_set(run, metrics.mmc, [ID_TEST, "digits"])
    assert set(mmc) == {ID_TEST, "digits"} and all(0.1 <= v <= 1 for v in mmc.values())
    split = evaluate.split_by_correctness(run, scores.logit_norm)
    n_wrong = round((1 - run.metrics["test_acc"]) * 1000)
    assert len(split["ID test, wrong"]) == n_wrong and len(split["ID test, correct"]) == 1000 - n_wrong


def test_a_run_with_held_out_classes_learns_the_others_and_meets_them_as_near_ood(tmp_path):
    run = load_or_train(tiny_cfg(loss="ce", epochs=1, warmup=0, held_out=(8, 9)), root=tmp_path)
    out = evaluate.outputs(run)
    assert list(out) == [ID_TEST, ID_VAL, NEAR_OOD, *OOD_SETS]
    test = out[ID_TEST]
    assert test.logits.shape == (1000, 8) and set(test.labels) == set(range(8))  # eight classes, renumbered
    assert run.metrics["test_acc"] == pytest.approx((test.logits.argmax(1) == test.labels).mean())
    assert len(out[NEAR_OOD].labels) == 1000 and (out[NEAR_OOD].labels == -1).all()
    # the held-out images are Fashion-MNIST's test images of Bag and Ankle boot, the first 1,000 of a fixed draw
    test_split = load_id("fashion_mnist")["test"]
    expected = data.split_classes(test_split, (8, 9))[1].subset(1000)
    assert torch.equal(evaluate.evaluation_sets(run.config, [NEAR_OOD])[NEAR_OOD].images, expected.images)
    assert NEAR_OOD in run.metrics["ood"]["sets"]
    with pytest.raises(ValueError, match=r"unknown evaluation sets \['held_out'\]"):
        evaluate.evaluation_sets(tiny_cfg(), [NEAR_OOD])
