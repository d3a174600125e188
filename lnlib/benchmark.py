"""The offline OOD benchmark: what each set is, where it comes from, and which tables it may be averaged into.

Every set of :data:`lnlib.data.OOD_SETS` has a :class:`SetInfo`: its kind, what it is, its source and licence,
and how many independent sources its images were drawn from (2,000 crops of three photos are not 2,000
independent images). The kinds keep sets of different nature apart in every table:

* ``near`` — ``held_out``: the ID test images of classes held out of training (``TrainConfig.held_out``; the
  open-set study, ``preset("open_set")``, holds out Bag and Ankle boot). Same source, size and statistics as the
  ID images, new in what they show: the hardest kind, and the one closest to how a deployed classifier meets
  the unknown.
* ``far`` — real shapes drawn by people or type designers, on a black background like Fashion-MNIST's:
  handwritten digits, letters from hundreds of fonts, characters of other writing systems. The headline
  "real images" verdicts average these.
* ``separable`` — real photographs (texture and natural-photo crops) that a pixel statistic alone tells from
  Fashion-MNIST (:mod:`lnlib.pixel_stats`): reported, never averaged into a verdict, because a network's score
  on them says little that counting dark pixels does not.
* ``synthetic`` — noise and permuted ID images, the inputs CEDA and ACET train on: reported apart.

Sets that need internet once (MNIST and KMNIST for Fashion-MNIST, ``make data SETS="mnist kmnist"``; the
LogitNorm paper's sets for CIFAR) are evaluated wherever they have been fetched, reported per set as
``downloaded``, and averaged into nothing, so that a verdict does not depend on what a machine has fetched.

Which set is ``separable`` is fixed here, not chosen by a run: the rule is "the best pixel statistic reaches
an FPR95 of at most 20% against the Fashion-MNIST test set", and ``tests/test_pixel_stats.py`` measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from lnlib import glyphs
from lnlib.data import NEAR_OOD, OOD_SETS

KINDS = ("near", "far", "separable", "synthetic")
SEPARABLE_AT = 0.20  # FPR95 of the best pixel statistic at or below which a set counts as separable


@dataclass(frozen=True)
class SetInfo:
    kind: str  # one of KINDS
    what: str
    source: str
    licence: str
    independent_sources: str  # how many, and of what


SETS: dict[str, SetInfo] = {
    NEAR_OOD: SetInfo(
        "near", "the ID test images of the classes held out of training (open-set recognition, Neal et al. 2018)",
        "Fashion-MNIST's test split (Xiao et al. 2017; Zalando's product photos)", "MIT",
        "one product photo each (1,000 per class)"),
    "letters": SetInfo(
        "far", "the letters A–J, one font each, MNIST-style (in the manner of notMNIST, Bulatov 2011)",
        "rendered from the fonts of Debian's font packages (lnlib.glyphs.FONT_PACKAGES)",
        "the fonts' free licences (read from the packages)", "font families (counted from the packages)"),
    "scripts": SetInfo(
        "far", "characters of non-Latin writing systems, MNIST-style (in the manner of Omniglot, Lake et al. 2015)",
        "rendered from Debian's Noto fonts (lnlib.glyphs.FONT_PACKAGES)", "SIL Open Font License 1.1",
        "writing systems and font families (counted from the package)"),
    "digits": SetInfo(
        "far", "handwritten digits, 8×8 upscaled into the central 20×20 pixels",
        "UCI Optical Recognition of Handwritten Digits (Alpaydin and Kaynak 1998), test part, via scikit-learn",
        "as listed by the UCI repository (CC BY 4.0)", "13 writers (the UCI test part)"),
    "textures": SetInfo(
        "separable", "random crops of texture photographs (brick, grass, gravel)", "scikit-image's bundled data",
        "CC0", "3 photographs"),
    "natural_crops": SetInfo(
        "separable", "random crops of natural photographs, in grey",
        "scikit-image's (8) and scikit-learn's (2) bundled photographs",
        "CC0 or public domain (scikit-image), CC BY 2.0 (scikit-learn's two)", "10 photographs"),
    "gaussian_noise": SetInfo("synthetic", "i.i.d. pixels ~ N(0.5, 0.25²), clipped", "generated", "—",
                              "none: generated"),
    "uniform_noise": SetInfo("synthetic", "i.i.d. pixels ~ U[0, 1]", "generated", "—", "none: generated"),
    "permuted": SetInfo("synthetic", "Fashion-MNIST test images with their pixels permuted",
                        "the ID test set", "as Fashion-MNIST (MIT)", "the ID test images, scrambled"),
    "blurred_noise": SetInfo("synthetic", "uniform noise blurred and rescaled (Hein et al. 2019's low-frequency noise)",
                             "generated", "—", "none: generated"),
}

def sets_of(kind: str) -> tuple[str, ...]:
    """The OOD sets of one kind, in the order of :data:`SETS` (the near set, then :data:`lnlib.data.OOD_SETS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {KINDS}")
    return tuple(n for n in SETS if SETS[n].kind == kind)


def kind_of(name: str) -> str:
    """The kind of an OOD set; ``downloaded`` for the sets fetched with internet (MNIST, KMNIST, the paper's
    CIFAR sets), which are reported per set but enter no average: the averages must not depend on what a
    machine happens to have fetched."""
    return SETS[name].kind if name in SETS else "downloaded"


def describe() -> pd.DataFrame:
    """One row per offline OOD set, the near set first: kind, what, source, licence, independent sources. For the
    sets rendered from fonts the counts and licences are read from the installed packages
    (:func:`lnlib.glyphs.sources`)."""
    rows = {n: asdict(s) for n, s in SETS.items()}
    for name in ("letters", "scripts"):
        found = glyphs.sources(name)
        systems = f"{len(found['characters'])} writing systems, " if name == "scripts" else ""
        rows[name]["independent_sources"] = (f"{systems}{found['families']} font families "
                                             f"({found['font_files']} font files)")
        rows[name]["licence"] = found["licences"]
    frame = pd.DataFrame(rows).T
    frame.index.name = "ood_set"
    return frame.reindex([NEAR_OOD, *OOD_SETS])
