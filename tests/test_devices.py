"""One device policy (lnlib.devices): training, evaluation, scoring and the far-away scans all default to 'auto'."""

import importlib
import inspect

import pytest
import torch

from lnlib.devices import DEVICES, resolve_device

MODULES = ("runs", "evaluate", "hein", "tidy", "train")


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_fails_naming_the_way_out():
    with pytest.raises(ValueError, match=r"device='cuda'.*no CUDA GPU.*'auto' or 'cpu'"):
        resolve_device("cuda")


def test_an_unknown_device_names_the_choices():
    with pytest.raises(ValueError, match=r"device='gpu' is not valid; choose one of \['auto', 'cpu', 'cuda'\]"):
        resolve_device("gpu")
    assert DEVICES == ("auto", "cpu", "cuda")


@pytest.mark.parametrize("module", MODULES)
def test_every_device_parameter_defaults_to_the_policy(module):
    mod = importlib.import_module(f"lnlib.{module}")
    members = {**vars(mod), **({"Run.load_model": mod.Run.load_model} if module == "runs" else {})}
    checked = 0
    for name, obj in members.items():
        if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
            parameter = inspect.signature(obj).parameters.get("device")
            if parameter is not None and parameter.default is not inspect.Parameter.empty:
                assert parameter.default == "auto", f"lnlib.{module}.{name}(device={parameter.default!r})"
                checked += 1
    assert checked or module == "train"


def test_threads_sets_the_count_inside_the_block_only_and_refuses_bad_counts():
    from lnlib.devices import other_thread_count, threads

    before, other = torch.get_num_threads(), other_thread_count()
    assert other != before
    with threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an error too
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=rf"threads={bad!r} is not valid"), threads(bad):
            pass


def test_other_thread_count_differs_from_the_count_given():
    from lnlib.devices import other_thread_count

    assert [other_thread_count(n) for n in (1, 2, 4)] == [2, 1, 1]


def test_threads_used_names_each_run_where_the_counts_differ(tmp_path):
    """A comparison between cached runs must not also be one between thread counts (env.json records it)."""
    import json

    from lnlib.runs import Run, threads_used

    runs = []
    for name, count in (("a", 2), ("b", 2), ("c", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "env.json").write_text(json.dumps({"cpu_threads": count}))
        runs.append(Run(tmp_path / name))
    assert threads_used(runs[:2]) == 2
    with pytest.raises(ValueError, match=r"different CPU thread counts: \{'a': 2, 'b': 2, 'c': 1\}"):
        threads_used(runs)
