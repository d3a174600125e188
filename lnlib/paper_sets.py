"""Full-scale OOD sets (internet needed once): the six of the LogitNorm paper's Table 1, and MNIST/KMNIST.

``python -m lnlib data fetch svhn textures_dtd ...`` downloads each archive (:mod:`lnlib.download`: MD5
recorded below, resumable, or placed in ``data/raw/`` by hand), reads it once and caches the images as
uint8 ``(N, C, H, W)`` in ``data/cache/ood/<name>.pt``, the format of every other set.

How each set becomes 32×32 (after the official LogitNorm code, github.com/hongxin001/logitnorm_ood, ``test.py``):

=============  =======================================  =================================================
key            images                                   to 32×32
=============  =======================================  =================================================
svhn           test split, 26,032 (``test_32x32.mat``)  already 32×32 (the official code's Resize(32) is
                                                        a no-op)
textures_dtd   all 5,640 DTD images                     Resize(32) of the shorter side, CenterCrop(32)
places365      10,000 of the 36,500 ``val_256`` images,  Resize(32), CenterCrop(32). The official code
               drawn with seed 0                        reads a ``test_subset`` folder whose list it does
                                                        not publish; ours is a stated, seeded stand-in
lsun_crop      10,000 (ODIN's ``LSUN.tar.gz``)          the official code feeds them unresized; images
                                                        larger than 32 px are center-cropped to 32×32
lsun_resize    10,000 (``LSUN_resize.tar.gz``)          already 32×32 (else Resize + CenterCrop)
isun           8,925 (``iSUN.tar.gz``)                  already 32×32 (else Resize + CenterCrop)
mnist, kmnist  test splits, 10,000 each                 28×28 grey: OOD sets for Fashion-MNIST
=============  =======================================  =================================================

Resizing is torchvision's on PIL images (bilinear, antialiased), as in the official pipeline. A set used with
an ID set of another shape (SVHN against Fashion-MNIST, say) is converted when loaded (:func:`load`).
"""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lnlib.data import CIFAR, ID_SETS, TV, ImageSet, adapt_images
from lnlib.data import fetch as fetch_id_set
from lnlib.download import Archive, ensure
from lnlib.files import DataMissingError, atomic_torch_save, data_dir, load_tensors

SIZE = 32
PLACES_SUBSET = 10_000  # images drawn (seed 0) from Places365's validation images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

ODIN = "the ODIN release as linked by weitliu/energy_ood's README; MD5 from kkirchheim/pytorch-ood odin.py"
ARCHIVES = {
    "svhn": Archive("test_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
                    "eb5a983be6a315427106f1b164d9cef3", TV + "svhn.py"),
    "textures_dtd": Archive("dtd-r1.0.1.tar.gz",
                            ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
                            "fff73e5086ae6bdbea199a49dfb8a4c1", TV + "dtd.py"),
    "places365": Archive("val_256.tar", ("http://data.csail.mit.edu/places/places365/val_256.tar",),
                         "e27b17d8d44f4af9a78502beb927f808", TV + "places365.py"),
    "lsun_crop": Archive("LSUN.tar.gz", ("https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz?dl=1",),
                         "458a0a0ab8e5f1cb4516d7400568e460", ODIN),
    "lsun_resize": Archive("LSUN_resize.tar.gz",
                           ("https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz?dl=1",),
                           "278b7b31c8cb7e804a1465a8ce03a2dc", ODIN),
    "isun": Archive("iSUN.tar.gz", ("https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz?dl=1",),
                    "be77b0f2c26fda898afac5f99645ee70",
                    "the ODIN release as linked by weitliu/energy_ood's README; MD5 from "
                    "edadaltocg/detectors src/detectors/data/isun.py"),
    "mnist": Archive("mnist-t10k-images-idx3-ubyte.gz",
                     ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
                      "http://yann.lecun.com/exdb/mnist/t10k-images-idx3-ubyte.gz"),
                     "9fb629c4189551a2d022fa330f9573f3", TV + "mnist.py"),
    "kmnist": Archive("kmnist-t10k-images-idx3-ubyte.gz",
                      ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/t10k-images-idx3-ubyte.gz",),
                      "5c965bf0a639b31b8f53240b1b52f4d7", TV + "mnist.py"),
}



# ------------------------------------------------------------------------------------------- readers
def _pil_to_tensor(img) -> torch.Tensor:
    """PIL image -> uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def resize_center_crop(img) -> torch.Tensor:
    """torchvision's ``Resize(32)`` (shorter side, bilinear, antialiased) then ``CenterCrop(32)``; (3, 32, 32)."""
    from torchvision.transforms import functional as TF

    if img.size != (SIZE, SIZE):
        img = TF.center_crop(TF.resize(img, SIZE), SIZE)
    return _pil_to_tensor(img)


def center_crop(img) -> torch.Tensor:
    """The central 32×32 of an image at least that large (LSUN-C), else :func:`resize_center_crop`."""
    from torchvision.transforms import functional as TF

    if min(img.size) < SIZE:
        return resize_center_crop(img)
    return _pil_to_tensor(TF.center_crop(img, SIZE))


def tar_images(path: Path, folder: str, to_tensor: Callable, keep: Callable[[list[str]], list[str]] | None = None):
    """uint8 (N, 3, 32, 32) from the images under ``folder`` in tar archive ``path``, in name order.

    ``keep`` may choose among the sorted member names (a seeded subset). Reads the archive without unpacking.
    """
    from PIL import Image

    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile() and m.name.startswith(folder)
                   and m.name.lower().endswith(IMAGE_SUFFIXES)}
        names = sorted(members)
        if keep:
            names = keep(names)
        if not names:
            raise ValueError(f"{path} holds no images under {folder!r}: not the archive this set expects")
        out = torch.empty(len(names), 3, SIZE, SIZE, dtype=torch.uint8)
        for i, name in enumerate(names):
            with Image.open(tar.extractfile(members[name])) as img:
                out[i] = to_tensor(img)
    return out


def read_svhn(path: Path) -> torch.Tensor:
    """``test_32x32.mat``: ``X`` is (32, 32, 3, N) uint8 -> (N, 3, 32, 32)."""
    from scipy.io import loadmat

    return torch.from_numpy(np.ascontiguousarray(loadmat(path)["X"].transpose(3, 2, 0, 1)))


def read_idx_images(path: Path) -> torch.Tensor:
    """A gzipped IDX image file (MNIST format: magic 2051, N, H, W, then bytes) -> uint8 (N, 1, H, W)."""
    with gzip.open(path) as f:
        data = f.read()
    magic, n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051 or len(data) != 16 + n * h * w:
        raise ValueError(f"{path} is not an IDX image file (magic {magic}, {len(data)} bytes)")
    return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, 1, h, w)


def _seeded_subset(n: int) -> Callable[[list[str]], list[str]]:
    def keep(names):
        order = np.random.default_rng(0).permutation(len(names))[:n]
        return [names[i] for i in sorted(order)]
    return keep


READERS: dict[str, Callable[[Path], torch.Tensor]] = {
    "svhn": read_svhn,
    "textures_dtd": lambda p: tar_images(p, "dtd/images/", resize_center_crop),
    "places365": lambda p: tar_images(p, "val_256/", resize_center_crop, _seeded_subset(PLACES_SUBSET)),
    "lsun_crop": lambda p: tar_images(p, "LSUN/test/", center_crop),
    "lsun_resize": lambda p: tar_images(p, "LSUN_resize/", resize_center_crop),
    "isun": lambda p: tar_images(p, "iSUN/iSUN_patches/", resize_center_crop),
    "mnist": read_idx_images,
    "kmnist": read_idx_images,
}
PAPER_OOD_SETS = tuple(ARCHIVES)
TABLE1_SETS = ("textures_dtd", "svhn", "lsun_crop", "lsun_resize", "isun", "places365")  # the official order
FASHION_MNIST_SETS = ("mnist", "kmnist")  # the literature's OOD sets for Fashion-MNIST: used wherever fetched


def fetch_command() -> str:
    """The shell command that downloads the paper benchmark once: CIFAR-10/100 and the six OOD sets of Table 1."""
    return f'make data SETS="{" ".join([*CIFAR, *TABLE1_SETS])}"'


# ------------------------------------------------------------------------------------------ fetch, load
def _check(name: str) -> None:
    if name not in ARCHIVES:
        raise ValueError(f"OOD set {name!r} is not a full-scale set; choose one of {sorted(ARCHIVES)}")


def cache_path(name: str) -> Path:
    return data_dir() / "cache" / "ood" / f"{name}.pt"


def available(name: str) -> bool:
    """Whether the full-scale set ``name`` is cached on this machine."""
    return cache_path(name).exists()


def fetch(name: str, progress: bool | None = None) -> Path:
    """Download (or find in ``data/raw/``) and verify the archive of ``name``, read it once, cache it."""
    _check(name)
    path = cache_path(name)
    if not path.exists():
        archive = ensure(ARCHIVES[name], data_dir() / "raw", progress)
        images = READERS[name](archive)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"images": images, "archive": ARCHIVES[name].filename, "md5": ARCHIVES[name].digest}, path)
    return path


def load(name: str, shape: tuple[int, int, int]):
    """The cached set as an :class:`~lnlib.data.ImageSet` shaped ``shape`` (C, H, W) of the ID set.

    Another shape is made the way the offline sets are: RGB to grey by luma, antialiased bilinear resize.
    Raises :class:`~lnlib.data.DataMissingError` with the fetch command when the set is not cached.
    """
    _check(name)
    path = cache_path(name)
    if not path.exists():
        raise DataMissingError(f"OOD set {name!r} is not on this machine (looked for {path}). Get it with: "
                               f"python -m lnlib data fetch {name}   (needs internet once, or its archive "
                               f"{ARCHIVES[name].filename} placed in data/raw/ by hand)")
    images = adapt_images(load_tensors(path, what=f"the uint8 cache of {name}")["images"], shape)
    return ImageSet(name, images, torch.full((len(images),), -1, dtype=torch.long))


def fetch_set(name: str, progress: bool | None = None) -> Path:
    """Any set by name onto this machine (``make data SETS="..."``): an ID set (:func:`lnlib.data.fetch`) or a
    full-scale OOD set (:func:`fetch`). Returns its cache file."""
    if name in ARCHIVES:
        return fetch(name, progress)
    if name in ID_SETS:
        return fetch_id_set(name)
    raise ValueError(f"dataset {name!r} is not valid; choose an ID set {sorted(ID_SETS)} or a full-scale "
                     f"OOD set {sorted(ARCHIVES)}")
