r"""Vendor MathJax 3 into ``book/static/mathjax/`` so that the built book typesets its equations offline.

Sphinx's default ``mathjax_path`` is a CDN address: without internet every page would show raw ``$$ ... $$``.
This script downloads the npm package once (``data/raw/``, checked against the SHA-512 the npm registry
publishes for it) and copies the two things the book needs out of it:

* ``es5/tex-mml-chtml.js``: the combined TeX-input, CommonHTML-output component (1.2 MB);
* ``es5/output/chtml/fonts/woff-v2/``: the fonts it loads, relative to its own address (1.6 MB);
* ``es5/input/tex/extensions/``: the TeX packages it loads on first use of a macro such as ``\boldsymbol``
  or ``\color`` (0.6 MB).

``_config.yml`` adds ``book/static`` to ``html_static_path`` and points ``mathjax_path`` at the copy. Not
``_static/`` at the top: Jupyter Book 1 adds every ``.js`` file under a top-level ``_static/`` to every page,
which would load MathJax twice, and each of its extensions, and break it. Idempotent: a second call checks
the copy and returns.

    python book/mathjax.py            # run by `make book`
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from lnlib.download import Archive, ensure

ROOT = Path(__file__).resolve().parents[1]
VERSION = "3.2.2"
PACKAGE = Archive(
    f"mathjax-{VERSION}.tgz", (f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz",),
    "06df9249553c7811b6ef30a155ec0e89c62ced7b1db78d2a9b8f94a47c97ee4d3f3bd36588f73ec7bee4d7f144b0fb2328f64626fb5164"
    "cd6f3be81e5b43a11b",
    f"dist.integrity of https://registry.npmjs.org/mathjax/{VERSION} (base64 SHA-512, here as hex)", "sha512")
SCRIPT = "tex-mml-chtml.js"
FONTS = "output/chtml/fonts/woff-v2"
EXTENSIONS = "input/tex/extensions"


def vendor(target: Path = ROOT / "book" / "static" / "mathjax", raw_dir: Path = ROOT / "data" / "raw") -> Path:
    """Path of the vendored ``tex-mml-chtml.js``; downloads and unpacks the package if it is not there yet."""
    script, stamp = target / SCRIPT, target / "VERSION"
    if script.exists() and stamp.exists() and stamp.read_text().strip() == VERSION:
        return script  # complete: the folder is only ever renamed into place whole
    package = ensure(PACKAGE, raw_dir)
    # Unpack into a temporary folder beside the target, then rename: a killed run leaves no half-copied MathJax.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, tarfile.open(package) as tar:
        wanted = (f"package/es5/{SCRIPT}", f"package/es5/{FONTS}/", f"package/es5/{EXTENSIONS}/")
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(wanted)]
        if not any(m.name.endswith(SCRIPT) for m in members):
            raise FileNotFoundError(f"{package} has no package/es5/{SCRIPT}: not the MathJax 3 npm package")
        tar.extractall(tmp, members=members, filter="data")
        staged = Path(tmp) / "package" / "es5"
        (staged / "VERSION").write_text(VERSION + "\n")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return script


if __name__ == "__main__":
    path = vendor()
    size = sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())
    print(f"MathJax {VERSION}: {path} ({size / 1e6:.1f} MB with its fonts)")
    sys.exit(0)
