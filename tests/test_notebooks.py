"""The notebooks, executed by papermill exactly as users and the book run them."""

import nbformat
import papermill as pm
import pytest
import yaml
from conftest import REPO, book_module, glue_references, glued_keys

from lnlib.runs import Run

NB = REPO / "nbs" / "train.ipynb"
# chapters that take a number of seeds
COMPARISONS = ["ood_results", "scoring_functions", "norm_ranking", "weight_decay", "calibration", "tau_ablation",
               "paper_regime", "hein_claims"]


def _run(tmp_path, notebook=NB, **parameters):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(notebook, out, parameters=parameters, kernel_name="python3", cwd=str(REPO / "nbs"),
                        progress_bar=False)
    return nbformat.read(out, as_version=4)


def _assert_prose_numbers_glued(nb, name="train"):
    """Every number that the notebook's Markdown, or another page, pastes from it was glued when it ran."""
    wanted = {key for doc, key in glue_references(c.source for c in nb.cells if c.cell_type == "markdown")
              if doc is None}
    other_pages = [p.read_text() for p in (REPO / "book").glob("*.md")] + [
        c.source for p in (REPO / "nbs").glob("*.ipynb") for c in nbformat.read(p, as_version=4).cells
        if c.cell_type == "markdown"]
    wanted |= {key for doc, key in glue_references(other_pages) if doc and doc.rsplit("/", 1)[-1] == name}
    assert wanted <= glued_keys(nb), sorted(wanted - glued_keys(nb))


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", ""))
            parts.extend(str(v) for k, v in o.get("data", {}).items() if k in ("text/plain", "text/html"))
    return "\n".join(parts)


BODY_LINES = 50  # "about 50": a chapter reads as prose, a call and a figure; what computes belongs in lnlib


def body_lines(path) -> int:
    """Code lines of a notebook outside its parameters cell and its glue cells (tagged remove-cell), blank lines
    and comments not counted."""
    cells = nbformat.read(path, as_version=4).cells
    code = [c.source for c in cells if c.cell_type == "code"
            and not {"parameters", "remove-cell"} & set(c.metadata.get("tags", []))]
    lines = [line.strip() for source in code for line in source.splitlines()]
    return sum(1 for line in lines if line and not line.startswith("#"))


def test_every_chapter_body_is_short():
    lengths = {p.stem: body_lines(p) for p in sorted((REPO / "nbs").glob("*.ipynb"))}
    assert len(lengths) >= 15 and min(lengths.values()) > 0
    assert {name: n for name, n in lengths.items() if n > BODY_LINES} == {}


def test_parameters_cell_names_equal_config_fields():
    from lnlib import TrainConfig

    assert set(pm.inspect_notebook(NB)) == set(TrainConfig.field_names())
    defaults = {k: v["default"] for k, v in pm.inspect_notebook(NB).items()}
    assert defaults["tau"] == "0.04" and defaults["loss"] == '"logitnorm"'


@pytest.mark.slow
def test_quick_run_shows_history_and_ood_table(tmp_path, runs_root, fashion_mnist_available):
    nb = _run(tmp_path, quick=True, epochs=2)
    text = _text(nb)
    assert "test accuracy" in text and "FPR95" in text and "gaussian_noise" in text
    _assert_prose_numbers_glued(nb)
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    stderr = [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not any("Warning" in t for t in stderr), stderr  # nothing noisy reaches the book
    run_dirs = list(runs_root.iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "figures" / "training_history.png").exists()


@pytest.mark.parametrize("name, value, words", [
    ("tau", -1, ["tau=-1", "positive"]),
    ("loss", "foo", ["loss='foo'", "'ce'", "'logitnorm'"]),
    ("dataset", "foo", ["dataset='foo'", "fashion_mnist"]),
    ("taw", 0.04, ["unknown parameter", "taw", "tau"]),
])
def test_bad_parameters_fail_at_once_with_a_clear_message(tmp_path, runs_root, name, value, words):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, **{name: value})
    assert err.value.ename == "ValueError"
    for w in words:
        assert w in err.value.evalue, err.value.evalue
    assert not runs_root.exists()


QUICK = {"quick": True, "epochs": 2}
EXPECTED = {  # notebook -> (extra parameters, words its output must contain, files it saves)
    "logit_norm_growth": ({}, ["saturation epoch", "‖f‖ change after saturation (%)"],
                          ["norm_growth.png", "norm_by_correctness.svg", "summary.csv"]),
    "confidence_histograms": ({}, ["mean max confidence (%)", "MSP AUROC (%)"],
                              ["msp_histograms.png", "norm_histograms.png", "mmc.csv"]),
    "ood_results": ({"seeds": 1, "open_seeds": 1},
                    ["pixel baseline", "far average", "synthetic average", "letters", "scripts", "p, Holm over 16",
                     "no verdict possible", "94.50%", "Accuracy ↑", "held_out", "held-out classes",
                     "The open-set study"],
                    ["records.csv", "pixel_records.csv", "ood_sets.csv", "fpr95_paired.csv", "fpr95_per_seed.png",
                     "fpr95_sensitivity.csv", "open_set_paired.csv", "open_set_records.csv"]),
    "scoring_functions": ({"seeds": 1}, ["GradNorm", "ODIN", "Energy", "MaxLogit", "Normalised conf.", "far average"],
                          ["records.csv", "scores_bars.png", "fpr95_paired.csv"]),
    "norm_ranking": ({"seeds": 1}, ["Spearman ρ", "‖f‖ alone", "far average", "synthetic average"],
                     ["norm_records.csv", "rank_corr.png", "norm_vs_msp.png", "rank_corr_paired.csv",
                      "norm_alone_paired.csv"]),
    "weight_decay": ({"seeds": 2}, ["no weight decay", "weight decay 0.0005", "median ‖f‖₂, ID test",
                                    "after temperature scaling", "p, Holm over 7", "LogitNorm − CE"],
                     ["scale_records.csv", "four_arms.png", "weight_decay_paired.csv",
                      "losses_without_weight_decay_paired.csv"]),
    "calibration": ({"seeds": 1}, ["ECE ↓", "validation split"],
                    ["records.csv", "reliability.png"]),
    "tau_ablation": ({"seeds": 1, "taus": [0.04, 0.3]}, ["cross-entropy", "FPR95 ↓, validation (symbols)"],
                     ["records.csv", "tau_ablation.png", "table.csv"]),
    "relu_far_away": ({"pgd_steps": 2, "n_rays": 20, "n_noise": 50, "attack_steps": 3, "toy_iterations": 100},
                      ["CEDA", "ACET", "median α (99.9%)", "clipped > 95%", "normalised limit from V_t x",
                       "largest |measured at α = 2^60 − limit from the slope|", "adv. noise"],
                      ["toy_confidence.png", "toy_regions.png", "alpha_curves.png", "normalized_curves.png",
                       "table2.csv", "bridge.csv", "detection_records.csv"]),
    "hein_claims": ({"seeds": 2, "pgd_steps": 2, "n_rays": 20, "n_noise": 50, "attack_steps": 3},
                    ["2^(1/64) grid", "median α*: paper", "3.0e+15", "GOOD", "AUROC vs attacked noise (%)",
                     "Holm over 12", "read off the 2^k grid"],
                    ["records.csv", "paired.csv", "per_seed.png", "clipped_noise.png"]),
    "paper_regime": ({"seeds": 1, "milestones": [1], "train_subset": 1000, "history_every": 1, "ood_every": 1},
                     ["steps_after_fit", "at_fit", "CE, no weight decay", "CE, weight decay 0.0005", "end − fitted"],
                     ["fitting.png", "ood_along_training.svg", "along_training.csv", "history_records.csv",
                      "growth_after_fit.csv", "changes_after_fit.csv"]),
    "reproduction_status": ({"seeds": 1, "open_seeds": 1, "mechanism_seeds": 1, "hein_seeds": 2, "pgd_steps": 2,
                             "n_rays": 20, "n_noise": 50, "attack_steps": 3},
                            ["verdict", "not run", "Theorem 3.1", "near OOD", "far OOD sets", "weight decay",
                             "follows the logit norm", "no verdict possible", "Table 2, ACET", "Table 2, CEDA",
                             "attacked noise", "GOOD"], ["status.csv"]),
}


SEED_STUDY_CHAPTERS = ("ood_results", "scoring_functions", "norm_ranking", "weight_decay", "tau_ablation",
                       "reproduction_status", "calibration", "relu_far_away", "hein_claims")


def _quick_book_output(name):
    """The quick book's executed notebook if it is up to date (same notebook, parameters and code), else None.

    CI builds the quick book before the tests; its notebooks are then checked here instead of being executed
    a second time. Elsewhere (no book, a stale one, or the full book) the test executes the notebook itself.
    """
    execute = book_module("execute")
    parameters = yaml.safe_load((REPO / "book" / "params.yaml").read_text())["quick"][name]
    if not execute.up_to_date(name, parameters):
        return None
    return nbformat.read(execute.GENERATED / f"{name}.ipynb", as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_chapter_notebooks_run_quick(tmp_path, shared_runs, fashion_mnist_available, name):
    parameters, words, files = EXPECTED[name]
    nb = _quick_book_output(name)
    executed_here = nb is None
    if executed_here:
        nb = _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", **QUICK, **parameters)
    runs = shared_runs if executed_here else REPO / "data" / "runs"  # where `make book QUICK=1` trained
    text = _text(nb)
    assert "Warning" not in text
    for word in words:
        assert word in text, word
    _assert_prose_numbers_glued(nb, name)
    # named by the chapter's parameters: the newest folder of this chapter's quick runs
    analysis = max((runs.parent / "analysis").glob(f"{name}-quick-*"), key=lambda p: p.stat().st_mtime)
    for file in files:
        assert (analysis / file).exists(), file
    from lnlib import TrainConfig, preset

    if executed_here and name == "weight_decay":  # its runs with weight decay are the seed study's, as in the book
        study = preset("seed_study", quick=True, epochs=QUICK["epochs"]).loss_comparison(parameters["seeds"])
        assert all(Run.for_config(c, runs).is_complete() for c in study)
    # (the chapters of the seed study share its runs instead: tests/test_regime.py checks their parameters)
    # (the paper-regime chapter trains its own runs only; data/runs also holds the book's other quick runs)
    elif executed_here and name not in (*SEED_STUDY_CHAPTERS, "paper_regime"):
        # CE and LogitNorm at seed 0 of the chapters' config (QUICK) are trained once for every chapter (the
        # others add their own runs)
        seed0 = [p for p in runs.iterdir() if "-ce-s0-" in p.name or "-logitnorm0.04-s0-" in p.name]
        shared = [p.name for p in seed0 if Run(p).config.epochs == QUICK["epochs"]]
        assert len(shared) == 2, shared
        book = {Run.for_config(c, runs).path.name for c in TrainConfig(quick=True).loss_comparison(1)}
        assert {p.name for p in seed0} - set(shared) <= book, seed0  # nothing else but the book recipe's


@pytest.mark.parametrize("name", COMPARISONS)
@pytest.mark.parametrize("parameter, value, words", [
    ("seeds", 0, ["seeds=0", "positive integer"]),
    ("tau", 0, ["tau=0"]),
    ("loss_", "ce", ["unknown parameter", "loss_"]),
])
def test_comparison_notebooks_reject_bad_parameters_before_training(tmp_path, runs_root, name, parameter, value,
                                                                    words):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", **{parameter: value})
    for w in words:
        assert w in err.value.evalue, err.value.evalue
    assert not runs_root.exists()


@pytest.mark.parametrize("name", ["ood_results", "scoring_functions", "norm_ranking", "weight_decay"])
def test_fpr95_convention_parameter_is_checked(tmp_path, runs_root, name):
    with pytest.raises(pm.PapermillExecutionError, match="positive='x'"):
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", positive="x")


@pytest.mark.parametrize("name, parameter, value, words", [
    ("ood_results", "protocol", "paper", "protocol='paper'"),
    ("ood_results", "open_seeds", 0, "open_seeds=0 is not valid"),
    ("reproduction_status", "open_seeds", 2.5, "open_seeds=2.5 is not valid"),
])
def test_ood_study_parameters_are_checked(tmp_path, runs_root, name, parameter, value, words):
    with pytest.raises(pm.PapermillExecutionError, match=words):
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", **{parameter: value})
    assert not runs_root.exists()


@pytest.mark.parametrize("name", ["logit_norm_growth", "confidence_histograms"])
def test_single_seed_chapters_reject_bad_parameters(tmp_path, runs_root, name):
    with pytest.raises(pm.PapermillExecutionError, match="seed=-1"):
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", seed=-1)
    assert not runs_root.exists()


@pytest.mark.parametrize("parameter, value, words", [
    ("methods", ["ce", "oe"], ["methods=", "'oe'", "'logitnorm+acet'"]),
    ("model", "wrn40_2", ["model='wrn40_2'", "small_cnn"]),
    ("n_rays", 0, ["n_rays=0", "positive integer"]),
    ("n_noise", -5, ["n_noise=-5", "positive integer"]),
    ("attack_steps", 1.5, ["attack_steps=1.5", "positive integer"]),
    ("toy_iterations", 0, ["toy_iterations=0", "positive integer"]),
    ("pgd_steps", 0, ["pgd_steps=0"]),
])
def test_far_away_parameters_are_checked_before_training(tmp_path, runs_root, parameter, value, words):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, REPO / "nbs" / "relu_far_away.ipynb", **{parameter: value})
    for w in words:
        assert w in err.value.evalue, err.value.evalue
    assert not runs_root.exists()


def test_tau_grid_is_validated_before_training(tmp_path, runs_root):
    with pytest.raises(pm.PapermillExecutionError, match="tau=0"):
        _run(tmp_path, REPO / "nbs" / "tau_ablation.ipynb", taus=[0.04, 0])
    assert not runs_root.exists()


@pytest.mark.slow
def test_run_it_yourself_times_both_loops(tmp_path, runs_root, fashion_mnist_available):
    nb = _run(tmp_path, REPO / "nbs" / "run_it_yourself.ipynb", quick=True, steps=2)
    text = _text(nb)
    for word in ("images/s", "× reference", "% of matmul FLOP/s", "MFLOP per training image", "target"):
        assert word in text, word
    _assert_prose_numbers_glued(nb, "run_it_yourself")
    (out,) = (runs_root.parent / "analysis").glob("run_it_yourself-*")
    assert (out / "throughput.json").exists() and (out / "throughput.csv").exists()


def test_run_it_yourself_rejects_an_unknown_case_before_timing(tmp_path, runs_root):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, REPO / "nbs" / "run_it_yourself.ipynb", cases=["small_cnn_gpu"])
    assert "small_cnn_gpu" in err.value.evalue and "small_cnn_cpu" in err.value.evalue


@pytest.mark.parametrize("name, parameter, value", [
    ("ood_results", "seed", 5), ("ood_results", "loss", "ce"), ("scoring_functions", "seed", 1),
    ("norm_ranking", "loss", "ce"),
    ("calibration", "seed", 2), ("tau_ablation", "tau", 0.04), ("tau_ablation", "seed", 1),
    ("paper_regime", "weight_decay", 0.0), ("weight_decay", "loss", "ce"), ("reproduction_status", "seed", 3),
    ("logit_norm_growth", "loss", "ce"),
    ("confidence_histograms", "loss", "ce"), ("relu_far_away", "outlier", "acet"), ("relu_far_away", "loss", "ce"),
    ("hein_claims", "outlier", "ceda"), ("hein_claims", "seed", 1),
])
def test_a_parameter_the_chapter_sets_itself_fails_instead_of_being_ignored(tmp_path, runs_root, name, parameter,
                                                                              value):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", **{parameter: value})
    assert err.value.ename == "ValueError"
    assert f"['{parameter}'] would be ignored" in err.value.evalue and "Valid parameters" in err.value.evalue
    assert not runs_root.exists()


@pytest.mark.parametrize("name, parameter, value, words", [
    ("scoring_functions", "energy_temperature", -1.0, ["'energy'", "temperature=-1.0", "positive number"]),
    ("scoring_functions", "odin_epsilon", -0.1, ["'odin'", "epsilon=-0.1", "number >= 0"]),
    ("scoring_functions", "odin_temperature", 0, ["'odin'", "temperature=0"]),
    ("paper_regime", "weight_decays", [0.0005], ["weight_decays=[0.0005]", "two different numbers"]),
    ("weight_decay", "weight_decays", [0.0, 0.0], ["weight_decays=[0.0, 0.0]", "two different numbers"]),
])
def test_chapter_parameters_are_checked_before_training(tmp_path, runs_root, name, parameter, value, words):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(tmp_path, REPO / "nbs" / f"{name}.ipynb", **{parameter: value})
    for w in words:
        assert w in err.value.evalue, err.value.evalue
    assert not runs_root.exists()
