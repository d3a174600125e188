"""lnlib.glyphs: the letters (notMNIST-style) and scripts (Omniglot-style) OOD sets, rendered from Debian's fonts."""

import os

import numpy as np
import pytest
from conftest import REPO

from lnlib import glyphs
from lnlib.data import NOISE_OOD_SETS, OOD_SETS, VALIDATION_OOD_SETS
from lnlib.files import DataMissingError

GENERATORS = {"letters": glyphs.letters, "scripts": glyphs.scripts, "symbols": glyphs.symbols}


@pytest.fixture(scope="module")
def fonts_installed():
    missing = glyphs.missing_packages()
    if missing:
        if os.environ.get("CI"):
            raise DataMissingError(f"font packages not installed: {' '.join(missing)}; run make data")
        pytest.skip(f"font packages not installed ({' '.join(missing)}): run make data")


@pytest.fixture
def fresh_caches():
    """Font discovery is cached per process; a test that changes what is installed starts and ends afresh (the
    last test of the file, so that the others share one discovery)."""
    caches = (glyphs.letter_fonts, glyphs.script_fonts, glyphs.symbol_fonts)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


def test_registered_as_offline_ood_sets_of_real_images():
    assert OOD_SETS["letters"] is glyphs.letters and OOD_SETS["scripts"] is glyphs.scripts
    assert not {"letters", "scripts"} & set(NOISE_OOD_SETS)
    # symbols is for choosing hyperparameters only: never a test set, and none of its characters is a test one's
    assert VALIDATION_OOD_SETS == {"symbols": glyphs.symbols} and "symbols" not in OOD_SETS
    assert not set(glyphs.SYMBOLS) & set("0123456789" + glyphs.LETTERS + glyphs.LETTERS.lower())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_shape_range_and_determinism(fonts_installed, name, shape):
    make = GENERATORS[name]
    x = make(16, shape, np.random.default_rng(0), None)
    assert x.shape == (16, *shape) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    assert np.array_equal(x, make(16, shape, np.random.default_rng(0), None))
    assert not np.array_equal(x, make(16, shape, np.random.default_rng(1), None))
    assert (x == x[:, :1]).all()  # grey repeated to every channel


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 24)])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_glyphs_fill_the_box_and_are_centred_by_mass(fonts_installed, name, shape):
    _, h, w = shape
    x = GENERATORS[name](150, shape, np.random.default_rng(0), None)[:, 0]
    mass = x.sum(axis=(1, 2))
    assert (mass > 3).all() and (x.max(axis=(1, 2)) > 0.3).all()  # no blank (or ghost) image
    cy = x.sum(axis=2) @ np.arange(h) / mass
    cx = x.sum(axis=1) @ np.arange(w) / mass
    assert np.abs(cy - (h - 1) / 2).max() <= 1 and np.abs(cx - (w - 1) / 2).max() <= 1
    rows, cols = (x > 0.05).any(axis=2), (x > 0.05).any(axis=1)  # the ink's extent: at most the box, about
    height = h - rows.argmax(1) - rows[:, ::-1].argmax(1)        # one pixel of anti-aliasing either side
    width = w - cols.argmax(1) - cols[:, ::-1].argmax(1)
    box_h, box_w = round(h * 20 / 28), round(w * 20 / 28)
    assert (height <= box_h + 2).all() and (width <= box_w + 2).all()
    assert ((height >= box_h - 1) | (width >= box_w - 1)).all()  # scaled to fill it one way


def test_letters_use_at_least_100_fonts(fonts_installed, monkeypatch):
    used = []
    monkeypatch.setattr(glyphs, "render", lambda path, ch, h, w: used.append((path, ch)) or np.zeros((h, w)))
    glyphs.letters(2000, (1, 28, 28), np.random.default_rng(0), None)
    family = {p: fam for fam, paths in glyphs.letter_fonts().items() for p in paths}
    assert len({p for p, _ in used}) >= 100 and len({family[p] for p, _ in used}) >= 100
    assert {ch for _, ch in used} == set(glyphs.LETTERS)


def test_fonts_are_found_through_dpkg_lists_sorted(tmp_path, monkeypatch):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for name in ("b.ttf", "a.OTF", "c.pfb"):
        (fonts / name).touch()
    info = tmp_path / "info"
    info.mkdir()
    (info / "fonts-x.list").write_text(f"/.\n{fonts}\n{fonts}/b.ttf\n{fonts}/c.pfb\n/usr/share/doc/fonts-x\n")
    (info / "fonts-y:amd64.list").write_text(f"{fonts}/a.OTF\n{fonts}/gone.ttf\n")
    monkeypatch.setattr(glyphs, "DPKG_INFO", info)
    assert glyphs.missing_packages(("fonts-x", "fonts-y", "fonts-z")) == ["fonts-z"]
    assert glyphs.font_files(("fonts-y", "fonts-x")) == [fonts / "a.OTF", fonts / "b.ttf"]
    with pytest.raises(DataMissingError, match=r"not installed: fonts-z .*make data"):
        glyphs.font_files(("fonts-x", "fonts-z"))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_sources_describe_the_set(fonts_installed, name):
    s = glyphs.sources(name)
    assert s["name"] == name and s["what"] and s["licences"]
    packages = glyphs.SCRIPT_PACKAGES if name == "scripts" else glyphs.LETTER_PACKAGES
    assert s["packages"] == packages and set(s["licence_by_package"]) == set(packages)
    assert s["font_files"] >= s["families"] >= (100 if name == "letters" else 50)
    if name == "letters":
        assert s["characters"] == {"Latin": "ABCDEFGHIJ"}
    elif name == "symbols":
        assert s["characters"] == {"marks and symbols": glyphs.SYMBOLS}
    else:
        assert len(s["characters"]) >= 40 and all(s["characters"].values())
        assert not set("".join(s["characters"].values())) & set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    with pytest.raises(ValueError, match="letters"):
        glyphs.sources("digits")


def test_make_data_installs_the_font_packages():
    makefile = (REPO / "Makefile").read_text()
    data_target = makefile.split("\ndata:", 1)[1].split("\n\n", 1)[0]
    assert "from lnlib.glyphs import missing_packages" in data_target and "apt-get install" in data_target


def test_a_missing_font_package_is_named_with_the_fix(monkeypatch, fresh_caches):
    monkeypatch.setattr(glyphs, "LETTER_PACKAGES", (*glyphs.LETTER_PACKAGES, "fonts-no-such-package"))
    with pytest.raises(DataMissingError, match=r"fonts-no-such-package.*make data") as err:
        glyphs.letters(4, (1, 28, 28), np.random.default_rng(0), None)
    if not glyphs.missing_packages(glyphs.LETTER_PACKAGES[:-1]):  # the others are installed: only it is named
        assert str(err.value).startswith("font package(s) not installed: fonts-no-such-package (looked in")
