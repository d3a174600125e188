import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from lnlib import data
from lnlib.data import OOD_SETS, DataMissingError, ImageSet, load_id, load_ood, split_train_val, to_device


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX format (the MNIST family's): magic 0x00 0x00 0x08 ndim, big-endian sizes, uint8 data."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fake_debian(tmp_path, monkeypatch):
    """A Debian-style folder of gzipped IDX files with 30 train and 10 test images."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 30),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10),
    }
    debian = tmp_path / "debian"
    debian.mkdir()
    digests = {}
    for name, array in arrays.items():
        raw = _idx_bytes(array)
        (debian / f"{name}.gz").write_bytes(gzip.compress(raw))
        digests[name] = hashlib.sha256(raw).hexdigest()
    monkeypatch.setenv("LNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setattr(data, "FASHION_MNIST_SHA256", digests)
    return arrays


def test_fashion_mnist_from_debian_files_through_torchvision(fake_debian, tmp_path):
    splits = load_id("fashion_mnist")
    assert splits["train"].images.shape == (30, 1, 28, 28) and splits["train"].images.dtype == torch.uint8
    assert np.array_equal(splits["train"].images[:, 0].numpy(), fake_debian["train-images-idx3-ubyte"])
    assert np.array_equal(splits["test"].labels.numpy(), fake_debian["t10k-labels-idx1-ubyte"])
    assert (tmp_path / "data" / "cache" / "fashion_mnist.pt").exists()
    # second load comes from the cache, even with the sources gone
    for f in data.DEBIAN_FASHION_MNIST.iterdir():
        f.unlink()
    assert torch.equal(load_id("fashion_mnist")["train"].images, splits["train"].images)


def test_corrupted_source_fails_its_checksum(fake_debian, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SHA256", {**data.FASHION_MNIST_SHA256,
                                                       "train-images-idx3-ubyte": "0" * 64})
    with pytest.raises(ValueError, match="does not decompress to the known Fashion-MNIST file"):
        load_id("fashion_mnist")


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DataMissingError) as err:
        load_id("fashion_mnist")
    message = str(err.value)
    assert "fashion_mnist" in message and "nowhere" in message and "make data" in message
    assert str(tmp_path / "empty") in message


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset='svhm'.*fashion_mnist"):
        load_id("svhm")


def _fake_test_set(shape, n=50):
    g = torch.Generator().manual_seed(0)
    return ImageSet("fake_test", torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                    torch.zeros(n, dtype=torch.long))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", sorted(OOD_SETS))
def test_ood_sets_have_the_id_shape_and_are_deterministic(name, shape):
    id_test = _fake_test_set(shape)
    n = 40
    a = load_ood(name, id_test, n=n, seed=0)
    assert a.images.shape == (n, *shape) and a.images.dtype == torch.uint8
    assert (a.labels == -1).all()
    assert load_ood(name, id_test, n=n, seed=0) is a  # generated once per process
    data._GENERATED.clear()
    assert torch.equal(a.images, load_ood(name, id_test, n=n, seed=0).images)  # and the same when generated again
    assert not torch.equal(a.images, load_ood(name, id_test, n=n, seed=1).images)
    assert a.images.float().std() > 5  # not a constant image


def test_permuted_is_generated_from_the_id_images_it_is_given():
    id_test = _fake_test_set((1, 28, 28), n=20)
    other = ImageSet(id_test.name, id_test.images.flip(0), id_test.labels)  # same name and size, other images
    assert not torch.equal(load_ood("permuted", id_test, n=20).images, load_ood("permuted", other, n=20).images)


def test_permuted_keeps_each_images_pixels():
    id_test = _fake_test_set((1, 28, 28), n=20)
    out = load_ood("permuted", id_test, n=20, seed=0).images
    in_sorted = id_test.images.flatten(1).sort(dim=1).values
    assert sorted(map(tuple, out.flatten(1).sort(dim=1).values.tolist())) == sorted(map(tuple, in_sorted.tolist()))


def test_split_is_fixed_disjoint_and_complete():
    train = ImageSet("x_train", torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100))
    tr, va = split_train_val(train, 10)
    assert len(tr) == 90 and len(va) == 10
    assert set(tr.labels.tolist()).isdisjoint(va.labels.tolist())
    assert torch.equal(split_train_val(train, 10)[1].labels, va.labels)
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(train, 100)


def test_held_out_classes_leave_the_id_sets_and_become_the_near_ood_set():
    labels = torch.tensor([0, 1, 2, 3, 4, 2, 4, 0])
    images = ImageSet("x_test", torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1), labels)
    kept, held = data.split_classes(images, (1, 3))
    # known answer: classes 0, 2, 4 remain and are renumbered 0, 1, 2 in order; 1 and 3 become OOD (-1)
    assert kept.labels.tolist() == [0, 1, 2, 1, 2, 0] and kept.images.flatten().tolist() == [0, 2, 4, 5, 6, 7]
    assert held.name == data.NEAR_OOD and held.labels.tolist() == [-1, -1] and held.images.flatten().tolist() == [1, 3]
    assert data.split_classes(images, ())[0].labels.tolist() == labels.tolist()


def test_run_splits_hold_out_classes_from_every_id_split(fashion_mnist_available):
    whole, held = data.run_splits("fashion_mnist", 5000), data.run_splits("fashion_mnist", 5000, (8, 9))
    assert data.NEAR_OOD not in whole and len(held[data.NEAR_OOD]) == 2000  # 1,000 test images per class
    for split in ("train", "val", "test"):
        assert held[split].labels.max() == 7 and len(held[split]) == int((whole[split].labels < 8).sum())
        # the same images, in the same order, less the held-out classes: the validation split does not move
        assert torch.equal(held[split].images, whole[split].images[whole[split].labels < 8])


def test_to_device_normalises_with_the_id_statistics():
    spec = data.ID_SETS["fashion_mnist"]
    x = to_device(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1), spec, "cpu")
    assert x.flatten().tolist() == pytest.approx([(0 - 0.2860) / 0.3530, (1 - 0.2860) / 0.3530], rel=1e-5)


def test_cifar_offline_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_DATA", str(tmp_path))
    with pytest.raises(DataMissingError, match=r"'cifar10' not found.*python -m lnlib data fetch cifar10"):
        load_id("cifar10")
