"""Two offline OOD sets of glyphs rendered from real fonts of Debian's archive: ``letters`` and ``scripts``.

* ``letters`` — in the style of notMNIST (Yaroslav Bulatov, 2011: the letters A–J in thousands of fonts found on
  the web): the upper-case letters A–J, each image in one of about 700 font files of about 150 families
  from the Latin font packages of :data:`LETTER_PACKAGES`.
* ``scripts`` — in the style of Omniglot (Lake, Salakhutdinov & Tenenbaum, *Human-level concept learning through
  probabilistic program induction*, Science 2015: 1,623 characters of 50 alphabets, drawn by people): the
  letters of 50 non-Latin writing systems (:data:`SCRIPTS`), typeset in the Noto fonts of ``fonts-noto-core``.
  Ours are printed, not handwritten; only the variety of alphabets is Omniglot's.

Both are MNIST-like, as the LeCun et al. (1998) recipe made MNIST: a white glyph on black, scaled (aspect kept)
to fit a 20×20 box and translated so that its centre of mass sits at the centre of the 28×28 field. Glyphs are
rasterised large (anti-aliased by FreeType), placed on a canvas :data:`SUPERSAMPLE` times the output size and
averaged down, so edges are anti-aliased and the centring is exact to a quarter pixel. Any ``shape=(C, H, W)``
is served: the box is 20/28 of ``H`` and ``W``, grey is repeated to ``C`` channels. Nothing else varies: no
noise, no distortion; the seeded ``rng`` chooses family, font file (weight, width, slant) and character.

Why: the book's other offline OOD sets are mostly told from Fashion-MNIST by a pixel statistic; these are the
kinds the literature pairs with (Fashion-)MNIST, made of real designs from many independent sources.

Fonts are found through ``dpkg``'s list of each package's files (``/var/lib/dpkg/info/<package>.list``, what
``dpkg -L`` reads), ``.ttf``/``.otf`` only, sorted by path, so a given seed gives the same images wherever the
same packages are installed. A missing package raises :class:`~lnlib.files.DataMissingError` naming it and the
fix (``make data``). :func:`sources` says what a set is made of, for the book.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lnlib.files import DataMissingError

# Latin text fonts, as many independent designs as Debian offers. Left out on purpose: copies of designs that
# are here already (fonts-texgyre, fonts-freefont-* and fonts-uralic: the URW fonts again; fonts-croscore and
# fonts-liberation2: Liberation; fonts-cmu: Latin Modern; fonts-adf-verana: Bitstream Vera, i.e. DejaVu),
# fonts-linex (phonetic, Greek-on-Latin and ruled school fonts), the Greek-only GFS fonts, bitmap fonts.
LETTER_PACKAGES = (
    "fonts-3270", "fonts-adf-accanthis", "fonts-adf-baskervald", "fonts-adf-berenis", "fonts-adf-gillius",
    "fonts-adf-ikarius", "fonts-adf-irianis", "fonts-adf-libris", "fonts-adf-mekanus", "fonts-adf-oldania",
    "fonts-adf-romande", "fonts-adf-switzera", "fonts-adf-tribun", "fonts-adf-universalis", "fonts-agave",
    "fonts-anonymous-pro", "fonts-apropal", "fonts-averia-gwf", "fonts-averia-sans-gwf", "fonts-averia-serif-gwf",
    "fonts-bebas-neue", "fonts-beteckna", "fonts-blankenburg", "fonts-cabin", "fonts-cantarell", "fonts-cardo",
    "fonts-century-catalogue", "fonts-clear-sans", "fonts-comfortaa", "fonts-comic-neue", "fonts-courier-prime",
    "fonts-crosextra-caladea", "fonts-crosextra-carlito", "fonts-dancingscript", "fonts-dejavu-core",
    "fonts-dejavu-extra", "fonts-dkg-handwriting", "fonts-dosis", "fonts-dustin", "fonts-ebgaramond",
    "fonts-ecolier-court", "fonts-essays1743", "fonts-fanwood", "fonts-femkeklaver", "fonts-firacode",
    "fonts-gfs-artemisia", "fonts-gfs-didot", "fonts-gfs-neohellenic", "fonts-gfs-theokritos", "fonts-go",
    "fonts-goudybookletter", "fonts-hack", "fonts-hermit", "fonts-humor-sans", "fonts-inconsolata", "fonts-inter",
    "fonts-isabella", "fonts-jetbrains-mono", "fonts-jura", "fonts-karla", "fonts-kristi", "fonts-lato",
    "fonts-league-spartan", "fonts-levien-museum", "fonts-levien-typoscript", "fonts-liberation",
    "fonts-lindenhill", "fonts-linuxlibertine", "fonts-lmodern", "fonts-lobster", "fonts-lobstertwo",
    "fonts-monoid", "fonts-mononoki", "fonts-mph-2b-damase", "fonts-noto-mono", "fonts-ocr-a", "fonts-ocr-b",
    "fonts-okolaks", "fonts-oldstandard", "fonts-open-sans", "fonts-oxygen", "fonts-paratype", "fonts-play",
    "fonts-prociono", "fonts-quattrocento", "fonts-quicksand", "fonts-radisnoir", "fonts-roboto-unhinted",
    "fonts-rufscript", "fonts-sil-andika", "fonts-sil-charis", "fonts-sil-doulos", "fonts-sil-gentium",
    "fonts-staypuft", "fonts-stix", "fonts-tlwg-purisa-ttf", "fonts-tuffy", "fonts-urw-base35", "fonts-vollkorn",
    "fonts-yanone-kaffeesatz", "fonts-yrsa-rasa",
)
SCRIPT_PACKAGES = ("fonts-noto-core",)
FONT_PACKAGES = LETTER_PACKAGES + SCRIPT_PACKAGES  # what `make data` installs

LETTERS = "ABCDEFGHIJ"  # notMNIST's ten classes
SYMBOLS = "&@#%?$§¶*+=<>{}"  # the validation family (symbols): marks and symbols, none a letter or a digit
# Fonts of LETTER_PACKAGES left out, matched in "<file name> <family> <style>": not text faces (symbols, keycaps,
# mathematics), black on white (OCR B's inverted styles), or strokes so thin that 28 px keep a grey ghost.
NOT_TEXT = re.compile(r"symbol|dingbat|D050000L|math|keyboard|integrals|nonunicode|variants|inverted|hairline|"
                      r"BebasNeue-Thin", re.I)
# Words that name a weight, width or optical size, not a design: stripped from a family name to count families.
STYLE_WORDS = re.compile(r"(\s+(thin|extralight|light|book|medium|demi|semibold|bold|heavy|black|cond|condensed|"
                         r"semi-condensed|narrow|display|caption|prop|slanted|unslanted|caps|smallcaps|titling|"
                         r"minus|dunhill|quotation|o))+$|(?-i:(?<=[A-Za-z])(Alt|Bold|Italic|Condensed))$", re.I)

# Writing system -> (the tail of its Noto font files' names, Unicode ranges of its letters). Fonts are the
# files ``Noto*<tail>-<Style>.ttf`` (Sans, Serif and the like; not the ``...Slanted`` or ``...Unjoined``
# variants); characters are the code points of categories Lu, Ll, Lo (letters: no modifier letters, marks,
# digits or punctuation) in the
# ranges that every one of those fonts draws.
SCRIPTS = {
    "Adlam": ("Adlam", ((0x1E900, 0x1E943),)),
    "Arabic": ("Arabic", ((0x0620, 0x064A),)),
    "Armenian": ("Armenian", ((0x0531, 0x0587),)),
    "Balinese": ("Balinese", ((0x1B05, 0x1B33),)),
    "Bamum": ("Bamum", ((0xA6A0, 0xA6E5),)),
    "Batak": ("Batak", ((0x1BC0, 0x1BE5),)),
    "Bengali": ("Bengali", ((0x0980, 0x09FF),)),
    "Buginese": ("Buginese", ((0x1A00, 0x1A16),)),
    "Canadian Aboriginal": ("CanadianAboriginal", ((0x1401, 0x166C),)),
    "Cham": ("Cham", ((0xAA00, 0xAA28),)),
    "Cherokee": ("Cherokee", ((0x13A0, 0x13F5),)),
    "Coptic": ("Coptic", ((0x2C80, 0x2CE4),)),
    "Deseret": ("Deseret", ((0x10400, 0x1044F),)),
    "Devanagari": ("Devanagari", ((0x0904, 0x0939), (0x0958, 0x0961))),
    "Ethiopic": ("Ethiopic", ((0x1200, 0x135A),)),
    "Georgian": ("Georgian", ((0x10A0, 0x10FA),)),
    "Glagolitic": ("Glagolitic", ((0x2C00, 0x2C5F),)),
    "Gothic": ("Gothic", ((0x10330, 0x1034A),)),
    "Gujarati": ("Gujarati", ((0x0A80, 0x0AFF),)),
    "Gurmukhi": ("Gurmukhi", ((0x0A00, 0x0A7F),)),
    "Hebrew": ("Hebrew", ((0x05D0, 0x05EA),)),
    "Javanese": ("Javanese", ((0xA984, 0xA9B2),)),
    "Kannada": ("Kannada", ((0x0C80, 0x0CFF),)),
    "Kayah Li": ("KayahLi", ((0xA90A, 0xA925),)),
    "Khmer": ("Khmer", ((0x1780, 0x17B3),)),
    "Lao": ("Lao", ((0x0E80, 0x0EDF),)),
    "Lepcha": ("Lepcha", ((0x1C00, 0x1C23),)),
    "Limbu": ("Limbu", ((0x1900, 0x191E),)),
    "Malayalam": ("Malayalam", ((0x0D00, 0x0D7F),)),
    "Meetei Mayek": ("MeeteiMayek", ((0xABC0, 0xABE2),)),
    "Mongolian": ("Mongolian", ((0x1820, 0x1878),)),
    "Myanmar": ("Myanmar", ((0x1000, 0x102A),)),
    "N'Ko": ("NKo", ((0x07CA, 0x07EA),)),
    "Ogham": ("Ogham", ((0x1681, 0x169A),)),
    "Ol Chiki": ("OlChiki", ((0x1C5A, 0x1C7D),)),
    "Old Italic": ("OldItalic", ((0x10300, 0x1031F),)),
    "Old Turkic": ("OldTurkic", ((0x10C00, 0x10C48),)),
    "Oriya": ("Oriya", ((0x0B00, 0x0B7F),)),
    "Osage": ("Osage", ((0x104B0, 0x104FB),)),
    "Runic": ("Runic", ((0x16A0, 0x16EA),)),
    "Samaritan": ("Samaritan", ((0x0800, 0x0815),)),
    "Sinhala": ("Sinhala", ((0x0D80, 0x0DFF),)),
    "Syriac": ("Syriac", ((0x0710, 0x072F),)),
    "Tamil": ("Tamil", ((0x0B80, 0x0BFF),)),
    "Telugu": ("Telugu", ((0x0C00, 0x0C7F),)),
    "Thaana": ("Thaana", ((0x0780, 0x07A5),)),
    "Thai": ("Thai", ((0x0E01, 0x0E30),)),
    "Tibetan": ("Tibetan", ((0x0F40, 0x0F6C),)),
    "Tifinagh": ("Tifinagh", ((0x2D30, 0x2D67),)),
    "Vai": ("Vai", ((0xA500, 0xA60B),)),
}

DPKG_INFO = Path("/var/lib/dpkg/info")
EM = 128  # px per em at which glyphs are rasterised, before being scaled into the box
SUPERSAMPLE = 4  # the canvas is this many times the output size, then averaged down
BOX = 20 / 28  # the glyph fits in this share of the height and width (MNIST's 20 px of 28)
MIN_EXTENT = 0.3  # script letters smaller than this share of an em are dots and ticks (Canadian finals): left out
NOTDEF_PROBES = "\U0010fffd\U000effff\uffff"  # code points no font draws: their glyph is .notdef


# ------------------------------------------------------------------------------------------- fonts
def _package_files(package: str) -> list[str] | None:
    """The files dpkg installed for ``package`` (``dpkg -L``), or None if it is not installed."""
    for listing in (DPKG_INFO / f"{package}.list", *sorted(DPKG_INFO.glob(f"{package}:*.list"))):
        if listing.exists():
            return listing.read_text().splitlines()
    return None


def missing_packages(packages: tuple[str, ...] = FONT_PACKAGES) -> list[str]:
    """The packages of ``packages`` that are not installed (what ``make data`` installs)."""
    return [p for p in packages if _package_files(p) is None]


def font_files(packages: tuple[str, ...]) -> list[Path]:
    """The ``.ttf``/``.otf`` files of ``packages``, sorted by path; :class:`DataMissingError` naming the
    packages that are not installed."""
    missing = missing_packages(packages)
    if missing:
        raise DataMissingError(
            f"font package(s) not installed: {' '.join(missing)} (looked in {DPKG_INFO}). Get them with: make data "
            f"(= sudo apt-get install {' '.join(missing)})")
    return sorted({Path(f) for p in packages for f in _package_files(p)
                   if f.lower().endswith((".ttf", ".otf")) and Path(f).is_file()})


def _load(path: Path, size: int = 32) -> ImageFont.FreeTypeFont:
    # BASIC layout: one glyph from the font's character map, no shaping; the same with or without libraqm.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=1024)
def _font(path: Path) -> ImageFont.FreeTypeFont:
    """The font that renders, at :data:`EM` px, kept open (discovery's small fonts are not)."""
    return _load(path, EM)


def _ink(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray | None:
    """The glyph of ``ch`` as uint8 (h, w), cropped to its ink; None if it draws nothing."""
    left, top, right, bottom = font.getbbox(ch)
    pad = font.size // 4
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad))
    ImageDraw.Draw(img).text((pad - left, pad - top), ch, font=font, fill=255)
    box = img.getbbox()
    return None if box is None else np.asarray(img.crop(box))


def _drawn(font: ImageFont.FreeTypeFont, chars: str, min_extent: float = 0.0) -> str:
    """The characters of ``chars`` that ``font`` has a glyph of its own for (not blank, not the .notdef glyph),
    at least ``min_extent`` em tall or wide."""
    notdef = [g for g in (_ink(font, p) for p in NOTDEF_PROBES) if g is not None]
    return "".join(ch for ch in chars if (ink := _ink(font, ch)) is not None
                   and max(ink.shape) >= min_extent * font.size
                   and not any(ink.shape == g.shape and np.array_equal(ink, g) for g in notdef))


def _family(font: ImageFont.FreeTypeFont) -> str:
    return STYLE_WORDS.sub("", font.getname()[0]).strip()


@lru_cache(maxsize=1)
def letter_fonts() -> dict[str, tuple[Path, ...]]:
    """Family -> its font files (one per family and style name), for the text fonts of :data:`LETTER_PACKAGES`
    that draw all of :data:`LETTERS`."""
    families: dict[str, list[Path]] = {}
    seen = set()
    for path in font_files(LETTER_PACKAGES):
        font = _load(path)
        if (font.getname() in seen or NOT_TEXT.search(f"{path.name} {' '.join(font.getname())}")
                or _drawn(font, LETTERS) != LETTERS):
            continue
        seen.add(font.getname())
        families.setdefault(_family(font), []).append(path)
    return {family: tuple(paths) for family, paths in sorted(families.items())}


@lru_cache(maxsize=1)
def script_fonts() -> dict[str, tuple[str, tuple[Path, ...]]]:
    """Writing system -> (its characters that all its fonts draw, its Noto font files), for :data:`SCRIPTS`."""
    files = font_files(SCRIPT_PACKAGES)
    out = {}
    for script, (tail, ranges) in SCRIPTS.items():
        paths = tuple(p for p in files if re.fullmatch(rf"Noto[A-Za-z]*{tail}-\w+\.(ttf|otf)", p.name))
        chars = "".join(chr(c) for a, b in ranges for c in range(a, b + 1)
                        if unicodedata.category(chr(c)) in ("Lu", "Ll", "Lo"))
        for path in paths:
            chars = _drawn(_load(path), chars, MIN_EXTENT)
        if paths and chars:
            out[script] = (chars, paths)
    return out


# ---------------------------------------------------------------------------------------- rendering
def render(path: Path, ch: str, height: int = 28, width: int = 28) -> np.ndarray:
    """One glyph, MNIST-like: white on black, scaled (aspect kept) into the central 20/28 of the field and
    centred by its centre of mass; float32 (height, width) in [0, 1]."""
    s = SUPERSAMPLE
    ink = Image.fromarray(_ink(_font(path), ch))
    box_h, box_w = round(s * height * BOX), round(s * width * BOX)
    scale = min(box_h / ink.height, box_w / ink.width)
    glyph = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.BILINEAR)
    g = np.asarray(glyph, dtype=np.float32) / 255
    mass = g.sum()
    cy = (g.sum(1) @ np.arange(g.shape[0])) / mass + 0.5  # centre of mass, in pixels from the glyph's corner
    cx = (g.sum(0) @ np.arange(g.shape[1])) / mass + 0.5
    canvas = np.zeros((s * height, s * width), dtype=np.float32)
    top, left = round(s * height / 2 - cy), round(s * width / 2 - cx)
    # paste, cutting off what falls outside the field (as MNIST's translation would)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + g.shape[0], canvas.shape[0]), min(left + g.shape[1], canvas.shape[1])
    canvas[y0:y1, x0:x1] = g[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas.reshape(height, s, width, s).mean(axis=(1, 3))


def _render_all(picks: list[tuple[Path, str]], shape: tuple[int, int, int]) -> np.ndarray:
    c, h, w = shape
    out = np.stack([render(path, ch, h, w) for path, ch in picks]) if picks else np.zeros((0, h, w), np.float32)
    return np.repeat(out[:, None], c, axis=1)


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def letters(n, shape, rng, id_test):
    """``n`` notMNIST-style letters A–J, float32 ``(n, *shape)`` in [0, 1]: a family uniformly among
    :func:`letter_fonts`, then one of its files (weight, width, slant), then a letter. ``id_test`` is unused."""
    fonts = letter_fonts()
    families = list(fonts)
    fam, u, ch = rng.integers(0, len(families), n), rng.random(n), rng.integers(0, len(LETTERS), n)
    picks = [(_pick(fonts[families[f]], ui), LETTERS[k]) for f, ui, k in zip(fam, u, ch, strict=True)]
    return _render_all(picks, shape)


@lru_cache(maxsize=1)
def symbol_fonts() -> dict[str, tuple[Path, ...]]:
    """The families of :func:`letter_fonts` whose files all draw every one of :data:`SYMBOLS`."""
    return {family: paths for family, paths in letter_fonts().items()
            if all(_drawn(_load(p), SYMBOLS) == SYMBOLS for p in paths)}


def symbols(n, shape, rng, id_test):
    """``n`` marks and symbols of :data:`SYMBOLS` from the letter fonts that draw them all, float32
    ``(n, *shape)`` in [0, 1], drawn like :func:`letters`. The book's *validation* OOD family: no letter, digit
    or script character, so choosing a hyperparameter on it never looks at a test set. ``id_test`` is unused."""
    fonts = symbol_fonts()
    families = list(fonts)
    fam, u, ch = rng.integers(0, len(families), n), rng.random(n), rng.integers(0, len(SYMBOLS), n)
    picks = [(_pick(fonts[families[f]], ui), SYMBOLS[k]) for f, ui, k in zip(fam, u, ch, strict=True)]
    return _render_all(picks, shape)


def scripts(n, shape, rng, id_test):
    """``n`` Omniglot-style characters of non-Latin writing systems, float32 ``(n, *shape)`` in [0, 1]: a
    writing system uniformly among :func:`script_fonts`, then one of its letters, then one of its Noto fonts.
    ``id_test`` is unused."""
    table = script_fonts()
    names = list(table)
    sys_, u_ch, u_font = rng.integers(0, len(names), n), rng.random(n), rng.random(n)
    picks = [(_pick(table[names[k]][1], uf), _pick(table[names[k]][0], uc))
             for k, uc, uf in zip(sys_, u_ch, u_font, strict=True)]
    return _render_all(picks, shape)


# ------------------------------------------------------------------------------------------ sources
# Licences grouped for the summary (first match; "X or OFL-1.1" counts as OFL, which one may choose).
LICENCE_KINDS = (("OFL", r"OFL"), ("GPL family", r"GPL"), ("public domain", r"public domain"),
                 ("Apache-2.0", r"Apache"), ("MIT/BSD", r"MIT|BSD|Expat"), ("Bitstream Vera", r"vera"))


def _licence(package: str) -> str:
    """The licence of the package's fonts, short: the first ``License:`` of its Debian copyright file (DEP-5),
    else the first licence its text names."""
    path = Path("/usr/share/doc") / package / "copyright"
    text = path.read_text(errors="replace") if path.exists() else ""
    found = re.search(r"^License:[ \t]*(\S[^\n]*)", text, re.M)
    if found:
        name = found.group(1).strip()
    else:
        names = [(r"GUST Font License", "GUST Font License"), (r"Open Font License", "OFL"),
                 (r"public domain", "public domain"), (r"General Public License|\bGPL\b", "GPL")]
        name = next((short for phrase, short in names if re.search(phrase, text, re.I)), "unknown")
    if re.search(r"\b(or|and)\b|\|", name):  # a choice or a combination: as written
        return name
    if re.search(r"OFL|open.?font|sil[-_ ]1\.1", name, re.I):
        return "OFL-1.0" if "1.0" in name else "OFL-1.1"
    if re.search(r"public.?domain", name, re.I):
        return "public domain"
    return "Apache-2.0" if re.fullmatch(r"Apache-2(\.0)?", name) else name


def sources(name: str) -> dict:
    """What OOD set ``name`` (``letters``, ``scripts`` or ``symbols``) is made of, for the book: ``what`` it is,
    its Debian ``packages``, the number of distinct ``font_files`` and of ``families`` (independent designs, weights and
    widths not counted apart), a summary of the packages' ``licences`` (and ``licence_by_package``), and the
    ``characters`` used, by writing system."""
    if name in ("letters", "symbols"):
        fonts = letter_fonts() if name == "letters" else symbol_fonts()
        packages, files = LETTER_PACKAGES, [p for paths in fonts.values() for p in paths]
        families = len(fonts)
        characters = {"Latin": LETTERS} if name == "letters" else {"marks and symbols": SYMBOLS}
        what = ("notMNIST-style (Bulatov 2011): the letters A-J rendered MNIST-like from the Latin text fonts of "
                "Debian's font packages, one family drawn uniformly, then one of its files" if name == "letters" else
                "the validation OOD family: marks and symbols rendered like the letters, from the letter fonts "
                "that draw them all")
    elif name == "scripts":
        table = script_fonts()
        packages, files = SCRIPT_PACKAGES, sorted({p for _, paths in table.values() for p in paths})
        families = len({_load(p).getname()[0] for p in files})
        characters = {script: chars for script, (chars, _) in table.items()}
        what = (f"Omniglot-style (Lake et al., Science 2015): letters of {len(table)} non-Latin writing systems "
                "typeset in Noto fonts, rendered MNIST-like; a writing system drawn uniformly, then a letter, then "
                "a font")
    else:
        raise ValueError(f"sources: {name!r} is not valid; choose 'letters', 'scripts' or 'symbols'")
    by_package = {p: _licence(p) for p in packages}
    kinds = Counter(next((kind for kind, pattern in LICENCE_KINDS if re.search(pattern, lic, re.I)), lic)
                    for lic in by_package.values())
    return {"name": name, "what": what, "packages": packages, "font_files": len(files), "families": families,
            "licences": ", ".join(f"{kind} ({k})" for kind, k in kinds.most_common()) + " packages; all in Debian main",
            "licence_by_package": by_package, "characters": characters}
