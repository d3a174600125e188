"""Datasets as uint8 tensors: the in-distribution (ID) registry and the offline OOD sets.

Every set is an :class:`ImageSet` of ``uint8`` images shaped ``(N, C, H, W)`` and ``int64`` labels
(``-1`` for OOD sets). Models see them only after :func:`to_device`, which moves them once and normalises
them once with the ID set's mean and std (as the LogitNorm code does for every OOD set).

Where data comes from:

* ``fashion_mnist`` — ``data/raw/FashionMNIST/raw`` (torchvision's layout), else Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``, copied and verified), else a
  torchvision download by ``python -m lnlib data fetch fashion_mnist``.
* ``cifar10``, ``cifar100`` — the python-pickle archive in ``data/raw/`` (:data:`CIFAR`, MD5-checked by
  :mod:`lnlib.download`), downloaded by ``python -m lnlib data fetch cifar10`` (needs internet once, or the
  archive placed by hand).
* OOD sets generated offline and deterministically from a seed: ``digits`` (scikit-learn), ``textures``
  and ``natural_crops`` (scikit-image / scikit-learn bundled photos), ``gaussian_noise``,
  ``uniform_noise``, ``permuted`` (pixel-permuted ID test images) and ``blurred_noise`` (Hein et al. 2019);
  ``letters`` (notMNIST-style A–J) and ``scripts`` (Omniglot-style non-Latin letters), rendered by
  :mod:`lnlib.glyphs` from the fonts of Debian packages that ``make data`` installs; and, for choosing
  hyperparameters only, the validation set ``symbols`` (marks and symbols from the same fonts).
* the near-OOD set ``held_out``: the ID test images of classes a run holds out of training
  (``TrainConfig.held_out``, :func:`run_splits`).

Loading never downloads. A set that is not found raises :class:`DataMissingError`, which says where it
looked and the one command that gets it.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lnlib.download import Archive, ensure, verify
from lnlib.files import DataMissingError, atomic_torch_save, data_dir, file_digest, load_tensors
from lnlib.glyphs import letters, scripts, symbols

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLIT_SEED = 0  # the train/validation split is the same for every run, whatever cfg.seed says
OOD_SIZE = 2000  # images per generated OOD set (digits has 1797 in all)


@dataclass
class ImageSet:
    """``images``: uint8 ``(N, C, H, W)``; ``labels``: int64 ``(N,)``, ``-1`` for OOD data."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, (self.name, self.images.shape)
        assert len(self.images) == len(self.labels), self.name

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int = SPLIT_SEED) -> ImageSet:
        """A fixed random subset of ``n`` images (all of them if ``n >= len``)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageSet(self.name, self.images[idx], self.labels[idx])


# ---------------------------------------------------------------------------------------------- ID sets
@dataclass(frozen=True)
class IDSpec:
    """An in-distribution dataset: its shape, classes, normalisation and how to get it."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, on [0, 1] pixels, from the training split
    std: tuple[float, ...]
    n_train: int  # images in the training split (the validation images are carved from it)
    fetch_hint: str  # what the user runs to get it

    @property
    def num_classes(self) -> int:
        return len(self.classes)


ID_SETS: dict[str, IDSpec] = {
    "fashion_mnist": IDSpec(
        "fashion_mnist", (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
        (0.2860,), (0.3530,), 60_000,
        "make data   (= sudo apt-get install dataset-fashion-mnist, or online: "
        "python -m lnlib data fetch fashion_mnist)",
    ),
    "cifar10": IDSpec(
        "cifar10", (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        # The official LogitNorm code's constants (datasets/utils.py), used for every OOD set too.
        (0.492, 0.482, 0.446), (0.247, 0.244, 0.262), 50_000,
        "python -m lnlib data fetch cifar10   (needs internet, 163 MB)",
    ),
    "cifar100": IDSpec(
        "cifar100", (3, 32, 32), tuple(f"class_{i}" for i in range(100)),
        (0.492, 0.482, 0.446), (0.247, 0.244, 0.262), 50_000,
        "python -m lnlib data fetch cifar100   (needs internet, 161 MB)",
    ),
}

# SHA-256 of the *uncompressed* Fashion-MNIST IDX files. Checked on the Debian package's files; gzip
# archives differ byte-wise between mirrors (Debian recompresses), the IDX content does not.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


TV = "torchvision 0.29.1, torchvision/datasets/"  # where torchvision's digests were read


@dataclass(frozen=True)
class Cifar:
    """A CIFAR archive: the python-pickle release, read without unpacking (``tar.gz`` of pickled batches)."""

    archive: Archive
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str


CIFAR = {  # the ID sets of the paper benchmark; archive and MD5 as torchvision's cifar.py records them
    "cifar10": Cifar(Archive("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                             "c58f30108f718f92721af3b95e74349a", TV + "cifar.py"),
                     "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels"),
    "cifar100": Cifar(Archive("cifar-100-python.tar.gz",
                              ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                              "eb9058c3a382ffc7106e4002c42a8d85", TV + "cifar.py"),
                      "cifar-100-python", ("train",), ("test",), "fine_labels"),
}


def read_cifar(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Train and test splits of a verified CIFAR archive: each batch is a pickle with ``data`` (N, 3072)
    uint8 (channel-major rows of 32×32) and the labels -> uint8 (N, 3, 32, 32) and int64 (N,)."""
    spec = CIFAR[name]
    out = {}
    with tarfile.open(path) as tar:
        for split, files in (("train", spec.train), ("test", spec.test)):
            # pickle is safe here: the archive's MD5 was checked against the published one before reading
            batches = [pickle.load(tar.extractfile(f"{spec.folder}/{f}"), encoding="latin1") for f in files]
            out[f"{split}_images"] = torch.from_numpy(
                np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32))
            out[f"{split}_labels"] = torch.tensor([y for b in batches for y in b[spec.label_key]], dtype=torch.long)
    return out


def _fashion_mnist_raw(root: Path, debian_dir: Path) -> Path:
    """Make sure torchvision's raw IDX files exist under ``root``; copy them from Debian if needed."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in FASHION_MNIST_SHA256):
        return raw
    if all((debian_dir / f"{name}.gz").exists() for name in FASHION_MNIST_SHA256):
        raw.mkdir(parents=True, exist_ok=True)
        for name, digest in FASHION_MNIST_SHA256.items():
            tmp = raw / f".{name}.tmp"
            with gzip.open(debian_dir / f"{name}.gz") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if file_digest(tmp, "sha256") != digest:
                tmp.unlink()
                raise ValueError(f"{debian_dir / name}.gz does not decompress to the known Fashion-MNIST "
                                 f"file (SHA-256 {digest[:12]}...); reinstall dataset-fashion-mnist")
            tmp.replace(raw / name)
        return raw
    raise DataMissingError(
        f"dataset 'fashion_mnist' not found. Looked in {raw} and in {debian_dir} (Debian package "
        f"dataset-fashion-mnist). Get it with: {ID_SETS['fashion_mnist'].fetch_hint}"
    )


def _read_torchvision(name: str, root: Path, download: bool) -> dict[str, torch.Tensor]:
    """Train and test splits as uint8 (N, C, H, W): Fashion-MNIST with torchvision's dataset class, CIFAR from
    its archive, MD5-checked (:mod:`lnlib.paper_sets`); ``download`` fetches what is missing."""
    import torchvision.datasets as tvd

    if name == "fashion_mnist":
        if not download:
            _fashion_mnist_raw(root, DEBIAN_FASHION_MNIST)
        splits = {s: tvd.FashionMNIST(root, train=(s == "train"), download=download) for s in ("train", "test")}
        return {
            **{f"{s}_images": d.data.unsqueeze(1).contiguous() for s, d in splits.items()},
            **{f"{s}_labels": d.targets.long() for s, d in splits.items()},
        }
    archive = CIFAR[name].archive
    path = root / archive.filename
    if download:
        return read_cifar(ensure(archive, root), name)
    if not path.exists():
        raise DataMissingError(f"dataset {name!r} not found: no {path}. Get it with: {ID_SETS[name].fetch_hint}")
    return read_cifar(verify(path, archive), name)


def _cache_path(name: str) -> Path:
    return data_dir() / "cache" / f"{name}.pt"


def fetch(name: str) -> Path:
    """Get an ID set onto this machine, downloading if needed, and write its uint8 cache. (Any set by name,
    full-scale OOD sets included, is :func:`lnlib.paper_sets.fetch_set`: ``make data SETS="..."``.)"""
    if name not in ID_SETS:
        raise ValueError(f"dataset={name!r} is not valid; choose one of {sorted(ID_SETS)}")
    path = _cache_path(name)
    if not path.exists():
        root = data_dir() / "raw"
        try:
            tensors = _read_torchvision(name, root, download=False)
        except DataMissingError:
            try:
                tensors = _read_torchvision(name, root, download=True)
            except DataMissingError:  # lnlib.download's message already says what to do
                raise
            except (OSError, RuntimeError) as err:  # URLError is an OSError
                raise DataMissingError(
                    f"could not download {name!r} into {root}: {err}. Without internet, place torchvision's "
                    f"files for it under {root} by hand and run this again."
                ) from err
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(tensors, path)
    return path


def available(name: str) -> bool:
    """Whether ID set ``name`` can be loaded here without a download (its cache, or the files it is built from)."""
    if _cache_path(name).exists():
        return True
    raw = data_dir() / "raw"
    if name == "fashion_mnist":
        return (all((raw / "FashionMNIST" / "raw" / f).exists() for f in FASHION_MNIST_SHA256)
                or all((DEBIAN_FASHION_MNIST / f"{f}.gz").exists() for f in FASHION_MNIST_SHA256))
    return (raw / CIFAR[name].archive.filename).exists()


def load_id(name: str) -> dict[str, ImageSet]:
    """The ID set's ``train`` and ``test`` splits from the uint8 cache (built from local files if needed)."""
    if name not in ID_SETS:
        raise ValueError(f"dataset={name!r} is not valid; choose one of {sorted(ID_SETS)}")
    path = _cache_path(name)
    if not path.exists():
        tensors = _read_torchvision(name, data_dir() / "raw", download=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(tensors, path)
    else:
        tensors = load_tensors(path, what=f"the uint8 cache of {name}")
    return {s: ImageSet(f"{name}_{s}", tensors[f"{s}_images"], tensors[f"{s}_labels"]) for s in ("train", "test")}


def split_train_val(train: ImageSet, val_size: int) -> tuple[ImageSet, ImageSet]:
    """Carve a fixed random validation split (seed ``SPLIT_SEED``) out of the training split.

    The validation images are never trained on; they are there for temperature scaling and early
    decisions, so that the test set is never used to fit anything.
    """
    if not 0 <= val_size < len(train):
        raise ValueError(f"val_size={val_size} must be in [0, {len(train)})")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, va = perm[val_size:], perm[:val_size]
    name = train.name.removesuffix("_train")
    return (ImageSet(f"{name}_train", train.images[tr], train.labels[tr]),
            ImageSet(f"{name}_val", train.images[va], train.labels[va]))


NEAR_OOD = "held_out"  # the near-OOD set: the ID test images of the classes a run holds out of training


def split_classes(images: ImageSet, held_out) -> tuple[ImageSet, ImageSet]:
    """``(kept, held)``: the images whose class is not in ``held_out``, labels renumbered ``0 .. K'−1`` in the
    order of the remaining classes; and the images of the ``held_out`` classes, labels ``−1`` (an OOD set).

    The open-set protocol (OpenOOD's open-set benchmarks, Neal et al. 2018): a network trained on some classes
    of a dataset meets the others at test time. They share the ID images' source, size, background and
    statistics, and differ in what they show: *near* OOD, unlike every generated set.
    """
    held = torch.as_tensor(sorted(held_out), dtype=torch.long)
    mask = torch.isin(images.labels, held)
    kept = images.labels[~mask]
    renumbered = kept - (kept[:, None] > held[None, :]).sum(dim=1)  # less one per held-out class below it
    return (ImageSet(images.name, images.images[~mask], renumbered),
            ImageSet(NEAR_OOD, images.images[mask], torch.full((int(mask.sum()),), -1, dtype=torch.long)))


def run_splits(dataset: str, val_size: int, held_out=()) -> dict[str, ImageSet]:
    """The ID images a run of ``dataset`` sees: ``train`` and ``val`` (:func:`split_train_val`), ``test``, each
    without the ``held_out`` classes (:func:`split_classes`), and where classes are held out, :data:`NEAR_OOD`:
    their test images. The validation images are the same whatever is held out, less the held-out classes."""
    ids = load_id(dataset)
    splits = dict(zip(("train", "val"), split_train_val(ids["train"], val_size), strict=True), test=ids["test"])
    if not held_out:
        return splits
    parts = {name: split_classes(s, held_out) for name, s in splits.items()}  # name -> (kept, held)
    return {**{name: kept for name, (kept, _) in parts.items()}, NEAR_OOD: parts["test"][1]}


# --------------------------------------------------------------------------------------------- OOD sets
def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (N, C, h, w) in [0, 1] -> (N, C, H, W), antialiased bilinear."""
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def adapt_images(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, *shape): RGB to grey by ITU-R 601 luma (or grey repeated to RGB), then
    an antialiased bilinear resize; unchanged when the shape already matches."""
    c, h, w = shape
    if tuple(images.shape[1:]) == (c, h, w):
        return images
    x = images.float() / 255
    if x.shape[1] == 3 and c == 1:
        x = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    elif x.shape[1] == 1 and c == 3:
        x = x.repeat(1, 3, 1, 1)
    if tuple(x.shape[2:]) != (h, w):
        x = _resize(x, (h, w))
    return (x * 255).round().to(torch.uint8)


def _to_channels(gray_or_rgb: np.ndarray, channels: int) -> np.ndarray:
    """(h, w) or (h, w, 3) uint8 -> (channels, h, w) float in [0, 1]; RGB -> grey by ITU-R 601 luma."""
    img = gray_or_rgb.astype(np.float32) / 255.0
    if img.ndim == 2:
        img = img[None]
    else:
        img = img[..., :3].transpose(2, 0, 1)
        if channels == 1:
            img = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    return np.repeat(img, channels, axis=0) if img.shape[0] == 1 and channels > 1 else img


def _random_crops(sources: list[np.ndarray], n: int, shape, rng, max_zoom: float) -> np.ndarray:
    """``n`` random square crops (side between H and ``max_zoom``·H pixels), resized to ``shape``."""
    c, h, w = shape
    out = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        img = _to_channels(sources[i % len(sources)], c)
        side = int(rng.integers(h, min(int(max_zoom * h), *img.shape[1:]) + 1))
        top = int(rng.integers(0, img.shape[1] - side + 1))
        left = int(rng.integers(0, img.shape[2] - side + 1))
        crop = torch.from_numpy(np.ascontiguousarray(img[None, :, top:top + side, left:left + side]))
        out[i] = _resize(crop, (h, w))[0].numpy()
    return out


def _digits(n, shape, rng, id_test):
    """scikit-learn's 8x8 handwritten digits, upscaled MNIST-style: digit in the central 20/28 of the image."""
    from sklearn.datasets import load_digits

    c, h, w = shape
    imgs = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    inner = (round(h * 20 / 28), round(w * 20 / 28))
    imgs = _resize(imgs, inner)
    top, left = (h - inner[0]) // 2, (w - inner[1]) // 2
    imgs = F.pad(imgs, (left, w - inner[1] - left, top, h - inner[0] - top))
    idx = rng.permutation(len(imgs))[:n]
    return imgs[idx].repeat(1, c, 1, 1).numpy()


def _textures(n, shape, rng, id_test):
    """Crops of scikit-image's bundled texture photographs (brick, grass, gravel)."""
    import skimage.data

    return _random_crops([skimage.data.brick(), skimage.data.grass(), skimage.data.gravel()], n, shape, rng, 4)


def _natural_crops(n, shape, rng, id_test):
    """Crops of bundled natural photographs (scikit-image and scikit-learn), grey for 1-channel ID sets."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [getattr(skimage.data, k)() for k in
              ("astronaut", "chelsea", "coffee", "rocket", "camera", "clock", "moon", "coins")]
    photos += list(load_sample_images().images)
    return _random_crops(photos, n, shape, rng, 8)


def _gaussian_noise(n, shape, rng, id_test):
    """i.i.d. pixels ~ N(0.5, 0.25²), clipped to [0, 1]."""
    return np.clip(rng.normal(0.5, 0.25, size=(n, *shape)), 0, 1)


def _uniform_noise(n, shape, rng, id_test):
    """i.i.d. pixels ~ U[0, 1]."""
    return rng.uniform(0, 1, size=(n, *shape))


def _permuted(n, shape, rng, id_test):
    """ID test images with their pixel positions randomly permuted (one permutation per image)."""
    idx = rng.choice(len(id_test), size=min(n, len(id_test)), replace=False)
    imgs = id_test.images[idx].numpy().astype(np.float32) / 255.0
    flat = imgs.reshape(len(idx), shape[0], -1)
    perms = np.argsort(rng.random((len(idx), flat.shape[-1])), axis=1)
    return np.take_along_axis(flat, perms[:, None, :], axis=2).reshape(imgs.shape)


def _blurred_noise(n, shape, rng, id_test):
    """Uniform noise blurred with a Gaussian of σ ~ U[1, 2.5] px, min-max rescaled to [0, 1] per image.

    The low-frequency noise of Hein et al. (CVPR 2019, Sec. 4); their training-time mix with permuted
    images lives in ``lnlib.faraway``.
    """
    from scipy.ndimage import gaussian_filter

    out = rng.uniform(0, 1, size=(n, *shape))
    for i in range(n):
        img = gaussian_filter(out[i], sigma=(0, *[rng.uniform(1.0, 2.5)] * 2))
        out[i] = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    return out


OOD_SETS: dict[str, Callable] = {
    "digits": _digits,
    "textures": _textures,
    "natural_crops": _natural_crops,
    "gaussian_noise": _gaussian_noise,
    "uniform_noise": _uniform_noise,
    "permuted": _permuted,
    "blurred_noise": _blurred_noise,
    "letters": letters,
    "scripts": scripts,
}

# OOD sets for choosing hyperparameters (LogitNorm's τ): never in a test table, and of a family no test set
# belongs to, so that a choice made on them never looks at a test set (OpenOOD keeps such a validation OOD set).
VALIDATION_OOD_SETS: dict[str, Callable] = {"symbols": symbols}

# The synthetic sets are noise of the kind CEDA and ACET train on (blurred_noise is Hein et al.'s own recipe),
# so tables that compare those methods report them apart from the sets of real images.
NOISE_OOD_SETS = ("gaussian_noise", "uniform_noise", "permuted", "blurred_noise")


_GENERATED: dict[tuple, ImageSet] = {}  # the sets this process generated, by everything they depend on


def load_ood(name: str, id_test: ImageSet, n: int = OOD_SIZE, seed: int = 0) -> ImageSet:
    """Generate OOD set ``name`` shaped like ``id_test`` (channels and size), deterministic given ``seed``.

    Returns ``n`` images (``digits`` has at most 1797), uint8, labels ``-1``. Generated once per process (rendering
    the font sets takes seconds, and a chapter trains dozens of runs): later calls return the same tensors, which
    callers must not modify. ``permuted`` is keyed by the content of ``id_test``, the others by its shape.
    """
    generators = {**OOD_SETS, **VALIDATION_OOD_SETS}
    if name not in generators:
        raise ValueError(f"OOD set {name!r} is not valid; choose one of {sorted(generators)}")
    shape = tuple(id_test.images.shape[1:])
    source = hashlib.sha256(id_test.images.numpy().tobytes()).hexdigest() if name == "permuted" else None
    key = (name, shape, n, seed, source)
    if key not in _GENERATED:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])  # independent stream per set
        images = generators[name](n, shape, rng, id_test)
        images = torch.from_numpy(np.round(np.asarray(images, dtype=np.float32) * 255).astype(np.uint8))
        _GENERATED[key] = ImageSet(name, images, torch.full((len(images),), -1, dtype=torch.long))
    return _GENERATED[key]


# ------------------------------------------------------------------------------------------- on device
def to_device(images: torch.Tensor, spec: IDSpec, device, dtype=torch.float32) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float on ``device``: ``(x/255 - mean) / std``, done once."""
    x = images.to(device, non_blocking=True).to(dtype).div_(255)
    mean = torch.tensor(spec.mean, device=device, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device, dtype=dtype).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)
