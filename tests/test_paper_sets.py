"""Full-scale OOD sets, on small fixtures written in the exact on-disk format of each real archive.

Nothing here touches the network: archives are "placed by hand" in data/raw/, downloads go to a local
HTTP server on 127.0.0.1, and the offline case uses a port where nothing listens.
"""

import dataclasses
import gzip
import http.server
import io
import tarfile
import threading
import time

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from lnlib import data, paper_sets
from lnlib.data import DataMissingError
from lnlib.download import Archive, ChecksumError, ensure, file_digest


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_DATA", str(tmp_path))
    return tmp_path


def _encode(array: np.ndarray, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _tar(path, files: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _halves(h, w):
    """Left half red, right half blue: after Resize + CenterCrop the left columns stay red, the right blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2:, 2] = 255
    return img


def _bordered(side, border=2):
    """Grey, with a green frame ``border`` pixels wide that a 32-px center crop of a 36-px image removes."""
    img = np.full((side, side, 3), 128, np.uint8)
    img[:border], img[-border:], img[:, :border], img[:, -border:] = (0, 255, 0), (0, 255, 0), (0, 255, 0), (0, 255, 0)
    return img


def _place(data_root, monkeypatch, name, writer):
    """Write a fixture archive into data/raw/ as a user would by hand; record its MD5 as the expected one."""
    raw = data_root / "raw"
    raw.mkdir(exist_ok=True)
    path = raw / paper_sets.ARCHIVES[name].filename
    writer(path)
    archive = dataclasses.replace(paper_sets.ARCHIVES[name], digest=file_digest(path))
    monkeypatch.setitem(paper_sets.ARCHIVES, name, archive)
    return path


def _fetch_and_load(name, shape=(3, 32, 32)):
    paper_sets.fetch(name, progress=False)
    return paper_sets.load(name, shape)


def test_svhn_mat_is_read_exactly(data_root, monkeypatch):
    from scipy.io import savemat

    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # the .mat layout: H, W, C, N
    _place(data_root, monkeypatch, "svhn", lambda p: savemat(p, {"X": x, "y": np.array([[10], [1], [2], [3], [4]])}))
    ood = _fetch_and_load("svhn")
    assert ood.images.shape == (5, 3, 32, 32) and (ood.labels == -1).all()
    assert torch.equal(ood.images[3], torch.from_numpy(x[..., 3]).permute(2, 0, 1))


@pytest.mark.parametrize("name, members", [
    ("textures_dtd", {"dtd/images/banded/banded_0001.jpg": (40, 60), "dtd/images/zigzagged/zigzagged_0002.jpg":
                      (60, 40), "dtd/labels/train1.txt": None}),
    ("lsun_resize", {"LSUN_resize/LSUN_resize/a.jpg": (32, 32), "LSUN_resize/LSUN_resize/b.jpg": (32, 40)}),
    ("isun", {"iSUN/iSUN_patches/x_1.jpeg": (32, 32), "iSUN/iSUN_patches/x_2.jpeg": (48, 64)}),
])
def test_image_folder_archives_are_resized_and_center_cropped(data_root, monkeypatch, name, members):
    files = {m: (b"banded/banded_0001" if hw is None else _encode(_halves(*hw))) for m, hw in members.items()}
    _place(data_root, monkeypatch, name, lambda p: _tar(p, files))
    ood = _fetch_and_load(name)
    n_images = sum(hw is not None for hw in members.values())
    assert ood.images.shape == (n_images, 3, 32, 32)
    for img in ood.images.int():  # every image keeps red on the left and blue on the right after the crop
        assert img[0, 16, 2] > 200 and img[2, 16, 2] < 60, img[:, 16, 2]
        assert img[2, 16, 29] > 200 and img[0, 16, 29] < 60, img[:, 16, 29]


def test_lsun_crop_keeps_the_central_32_pixels(data_root, monkeypatch):
    files = {f"LSUN/test/{i}.png": _encode(_bordered(36), "PNG") for i in range(3)}  # lossless
    _place(data_root, monkeypatch, "lsun_crop", lambda p: _tar(p, files))
    images = _fetch_and_load("lsun_crop").images.int()
    assert images.shape == (3, 3, 32, 32)
    assert (images == 128).all()  # the green frame is gone: the central 32x32 pixels, unresized


def test_places_reads_the_uncompressed_tar_and_draws_a_seeded_subset(data_root, monkeypatch):
    files = {f"val_256/Places365_val_{i:08d}.jpg": _encode(_halves(256, 256)) for i in range(1, 4)}
    _place(data_root, monkeypatch, "places365", lambda p: _tar(p, files, mode="w"))
    assert _fetch_and_load("places365").images.shape == (3, 3, 32, 32)  # fewer than 10,000: all of them
    names = [f"Places365_val_{i:08d}.jpg" for i in range(1, 101)]
    kept = paper_sets._seeded_subset(10)(names)
    assert len(kept) == 10 and kept == sorted(set(kept)) and set(kept) <= set(names)
    assert kept == paper_sets._seeded_subset(10)(list(names)) and kept != names[:10]  # seeded, not the first


@pytest.mark.parametrize("name", ["mnist", "kmnist"])
def test_idx_test_images_become_a_28px_grey_set(data_root, monkeypatch, name):
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    header = b"".join(v.to_bytes(4, "big") for v in (2051, 4, 28, 28))
    _place(data_root, monkeypatch, name, lambda p: p.write_bytes(gzip.compress(header + x.tobytes())))
    ood = _fetch_and_load(name, shape=(1, 28, 28))
    assert torch.equal(ood.images[:, 0], torch.from_numpy(x))


def test_a_set_is_converted_to_the_id_shape_when_loaded(data_root, monkeypatch):
    from scipy.io import savemat

    x = np.full((32, 32, 3, 2), 200, dtype=np.uint8)
    _place(data_root, monkeypatch, "svhn", lambda p: savemat(p, {"X": x, "y": np.ones((2, 1))}))
    grey = _fetch_and_load("svhn", shape=(1, 28, 28))  # SVHN against Fashion-MNIST
    assert grey.images.shape == (2, 1, 28, 28) and (grey.images.int() - 200).abs().max() <= 1


def test_a_corrupted_archive_fails_its_checksum_and_names_both_digests(data_root):
    raw = data_root / "raw"
    raw.mkdir()
    (raw / "test_32x32.mat").write_bytes(b"not the SVHN test set")
    with pytest.raises(ChecksumError) as err:
        paper_sets.fetch("svhn", progress=False)
    message = str(err.value)
    assert paper_sets.ARCHIVES["svhn"].digest in message and file_digest(raw / "test_32x32.mat") in message
    assert "delete it and fetch again" in message and not paper_sets.cache_path("svhn").exists()


def test_offline_fetch_fails_fast_naming_the_url_and_where_to_put_the_file(data_root, monkeypatch):
    archive = dataclasses.replace(paper_sets.ARCHIVES["isun"], urls=("http://127.0.0.1:9/iSUN.tar.gz",))
    monkeypatch.setitem(paper_sets.ARCHIVES, "isun", archive)
    start = time.perf_counter()
    with pytest.raises(DataMissingError) as err:
        paper_sets.fetch("isun", progress=False)
    assert time.perf_counter() - start < 10
    assert "http://127.0.0.1:9/iSUN.tar.gz" in str(err.value)
    assert str(data_root / "raw" / "iSUN.tar.gz") in str(err.value) and archive.digest in str(err.value)


def test_loading_a_set_that_was_never_fetched_says_how_to_get_it(data_root):
    with pytest.raises(DataMissingError, match="python -m lnlib data fetch lsun_crop"):
        paper_sets.load("lsun_crop", (3, 32, 32))
    with pytest.raises(ValueError, match="'lsun' is not a full-scale set.*lsun_crop"):
        paper_sets.fetch("lsun")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``payload`` and honours ``Range: bytes=N-``, recording the ranges asked for."""

    payload, ranges = b"", []

    def do_GET(self):
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        type(self).ranges.append(start)
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_interrupted_download_resumes_and_is_verified(tmp_path):
    payload = np.random.default_rng(2).bytes(300_000)
    _RangeHandler.payload, _RangeHandler.ranges = payload, []
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        import hashlib

        archive = Archive("blob.bin", (f"http://127.0.0.1:{server.server_port}/blob.bin",),
                          hashlib.md5(payload).hexdigest(), "this test")
        (tmp_path / "blob.bin.part").write_bytes(payload[:123_456])  # what a killed download left
        path = ensure(archive, tmp_path, progress=False)
    finally:
        server.shutdown()
    assert _RangeHandler.ranges == [123_456] and path.read_bytes() == payload
    assert not (tmp_path / "blob.bin.part").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_archive_is_read_exactly(data_root, monkeypatch, name):
    import pickle

    from lnlib.data import fetch, load_id

    spec = data.CIFAR[name]
    rng = np.random.default_rng(3)
    batches = {f: {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                   spec.label_key: [int(v) for v in rng.integers(0, 10, 4)]} for f in (*spec.train, *spec.test)}
    files = {f"{spec.folder}/{f}": pickle.dumps(b, protocol=2) for f, b in batches.items()}
    files[f"{spec.folder}/{'batches.meta' if name == 'cifar10' else 'meta'}"] = pickle.dumps({}, protocol=2)
    raw = data_root / "raw"
    raw.mkdir()
    _tar(raw / spec.archive.filename, files)
    archive = dataclasses.replace(spec.archive, digest=file_digest(raw / spec.archive.filename))
    monkeypatch.setitem(data.CIFAR, name, dataclasses.replace(spec, archive=archive))

    fetch(name)
    splits = load_id(name)
    assert splits["train"].images.shape == (4 * len(spec.train), 3, 32, 32)
    first = batches[spec.train[0]]
    # a row is 1024 red, then 1024 green, then 1024 blue values, each row-major over 32x32
    assert torch.equal(splits["train"].images[1, 2], torch.from_numpy(first["data"][1, 2048:].reshape(32, 32)))
    assert splits["test"].labels.tolist() == batches[spec.test[0]][spec.label_key]


def test_a_corrupted_cifar_archive_is_refused(data_root):
    from lnlib.data import load_id

    raw = data_root / "raw"
    raw.mkdir()
    (raw / "cifar-10-python.tar.gz").write_bytes(b"half a download")
    with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        load_id("cifar10")


def test_a_fetched_set_can_be_evaluated_against_the_default_id_set(data_root, monkeypatch, fashion_mnist_available):
    from scipy.io import savemat

    from lnlib import TrainConfig
    from lnlib.evaluate import evaluation_sets

    x = np.random.default_rng(4).integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)
    _place(data_root, monkeypatch, "svhn", lambda p: savemat(p, {"X": x, "y": np.ones((3, 1))}))
    paper_sets.fetch("svhn", progress=False)
    (data_root / "cache" / "fashion_mnist.pt").symlink_to(REPO / "data" / "cache" / "fashion_mnist.pt")
    sets = evaluation_sets(TrainConfig(), names=["id_test", "svhn"])
    assert sets["svhn"].images.shape == (3, 1, 28, 28)  # grey and 28 px, like Fashion-MNIST


def test_cifar_runs_are_evaluated_on_the_six_sets_of_table_1():
    from lnlib.config import preset
    from lnlib.evaluate import default_sets

    for name in ("cifar10_paper", "cifar100_paper"):
        cfg = preset(name)
        assert cfg.model == "wrn40_2" and cfg.epochs == 200 and cfg.tau == 0.04
        assert set(paper_sets.TABLE1_SETS) <= set(default_sets(cfg))
    assert not set(paper_sets.PAPER_OOD_SETS) & set(default_sets(preset("default")))  # offline book unchanged


def test_a_complete_part_file_is_verified_and_used_without_a_request(tmp_path):
    payload = b"all the bytes arrived before the process was killed"
    import hashlib

    (tmp_path / "blob.bin.part").write_bytes(payload)
    archive = Archive("blob.bin", ("http://127.0.0.1:9/blob.bin",), hashlib.md5(payload).hexdigest(), "this test")
    assert ensure(archive, tmp_path, progress=False).read_bytes() == payload


def test_fetch_command_names_the_cifar_sets_and_table_1_in_order():
    from lnlib.paper_sets import ARCHIVES, CIFAR, TABLE1_SETS, fetch_command

    command = fetch_command()
    assert command.startswith('make data SETS="') and command.endswith('"')
    names = command.split('"')[1].split()
    assert names == [*CIFAR, *TABLE1_SETS] and set(names) <= set(CIFAR) | set(ARCHIVES)


def test_fetched_mnist_and_kmnist_join_a_fashion_mnist_run_but_no_average(monkeypatch):
    import pandas as pd

    from lnlib import benchmark, tidy
    from lnlib.config import preset
    from lnlib.evaluate import ood_sets

    cfg = preset("default")
    assert not {"mnist", "kmnist"} & set(ood_sets(cfg))  # nothing fetched here
    monkeypatch.setattr(paper_sets, "available", lambda name: name == "mnist")
    assert ood_sets(cfg)[-1] == "mnist" and "kmnist" not in ood_sets(cfg)
    assert "mnist" not in ood_sets(preset("default", dataset="cifar10"))
    assert benchmark.kind_of("mnist") == "downloaded"
    rows = pd.DataFrame({"loss": "ce", "seed": 0, "ood_set": ["digits", "mnist"], "metric": "fpr95",
                         "value": [0.2, 0.9]})
    averages = tidy.with_benchmark_averages(rows).set_index("ood_set")["value"]
    assert averages[tidy.FAR] == 0.2 and averages["mnist"] == 0.9
