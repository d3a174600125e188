"""The built book in a real browser: Debian's headless Chromium, driven by Playwright.

Every page of ``_toc.yml`` is opened from disk (``file://``, as an offline reader opens it) with every
network request refused, and checked: it loads without script errors, its figures load, its equations are
typeset by the vendored MathJax (no raw ``$$``), no error output, traceback or unpasted glue role is
shown, and the "next" links walk through the chapters in the order of the table of contents. A full-page
screenshot of each page goes to ``_build/screenshots/`` (CI keeps them as artifacts).

Needs a built book (``make book QUICK=1``, or ``make book``) and Chromium (``apt-get install chromium``);
skipped without either, except in CI (``CI`` set), where both are required.
"""

import os
import shutil

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.browser

HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"
# The flags this machine's Chromium needs headless, as root, without network (see the env notes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

# Run in the page once MathJax is done: everything the checks need, as plain data.
INSPECT = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const article = document.querySelector('article') || document.body;
  const text = article.innerText;
  const math = [...article.querySelectorAll('.math')];
  return {
    title: document.title,
    mathjax: Boolean(window.MathJax && MathJax.version),
    images: [...article.querySelectorAll('img')].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
    math: math.length,
    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: article.querySelectorAll('mjx-merror').length,
    rawTex: (text.match(/\\$\\$|\\\\\\[|\\\\\\(/g) || []).length,
    glueRoles: (text.match(/\\{glue:/g) || []).length,
    errorOutputs: article.querySelectorAll('.output.traceback, .output.stderr, .output.error').length,
    traceback: text.includes('Traceback (most recent call last)'),
    tables: article.querySelectorAll('table').length,
    words: text.split(/\\s+/).length,
    next: (document.querySelector('a.right-next') || {}).href || null,
  };
}"""


def toc_pages() -> list[str]:
    """Every page of the book, in reading order: the root, then each ``file`` of _toc.yml (depth first)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    yield from walk(child)
        elif isinstance(node, list):
            for child in node:
                yield from walk(child)

    return [toc["root"], *walk(toc)]


def refuse_all_but(page, allowed: tuple[str, ...]) -> list[str]:
    """Route every request of ``page``: those whose URL starts with one of ``allowed`` go on, the others are
    refused and listed in the returned list (filled as the page loads)."""
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith(allowed):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return refused


def _require(condition: bool, message: str):
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the browser test)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def visited():
    """Open every page once; returns {page: facts} plus the network requests that were refused."""
    chromium = os.environ.get("LNLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    _require(chromium is not None, "no Chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "no Playwright: pip install -r requirements.txt")
    missing = [p for p in toc_pages() if not (HTML / f"{p}.html").exists()]
    _require(not missing, f"no built book in {HTML} ({len(missing)} pages missing): make book QUICK=1")

    SHOTS.mkdir(parents=True, exist_ok=True)
    facts, failed, script_errors = {}, [], {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        refused = refuse_all_but(page, ("file://", "data:", "blob:"))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
        current = {"page": None}
        page.on("pageerror", lambda e: script_errors.setdefault(current["page"], []).append(str(e)))
        for i, name in enumerate(toc_pages()):
            current["page"] = name
            page.goto((HTML / f"{name}.html").as_uri(), wait_until="load")
            facts[name] = page.evaluate(INSPECT)
            page.screenshot(path=str(SHOTS / f"{i:02d}-{name.replace('/', '-')}.png"), full_page=True)
        browser.close()
    return {"pages": facts, "refused": refused, "failed": failed, "script_errors": script_errors}


PAGES = toc_pages()


def test_nothing_is_fetched_from_the_network_and_no_local_file_is_missing(visited):
    assert visited["refused"] == [], "the book needs the internet for: " + ", ".join(sorted(set(visited["refused"])))
    assert visited["failed"] == []
    assert visited["script_errors"] == {}


@pytest.mark.parametrize("name", PAGES)
def test_page_reads_well(visited, name):
    facts = visited["pages"][name]
    assert facts["words"] > 100, "an (almost) empty page"
    assert facts["mathjax"] or facts["math"] == 0, "the vendored MathJax did not load"  # (only pages with math)
    broken = [i["src"] for i in facts["images"] if not i["ok"]]
    assert broken == [], f"broken images: {broken}"
    assert facts["untypeset"] == [] and facts["mathErrors"] == 0 and facts["rawTex"] == 0, facts
    assert facts["glueRoles"] == 0, "a {glue:...} role was shown as text"
    assert facts["errorOutputs"] == 0 and not facts["traceback"], "an error output or a traceback is shown"


def test_chapters_have_their_figures_equations_and_tables(visited):
    pages = visited["pages"]
    with_figures = [n for n in PAGES if any(i["ok"] for i in pages[n]["images"])]
    assert {"book/generated/logit_norm_growth", "book/generated/confidence_histograms",
            "book/generated/relu_far_away", "book/generated/calibration"} <= set(with_figures)
    assert pages["book/intro"]["math"] > 0 and pages["book/generated/relu_far_away"]["math"] > 10
    assert pages["book/generated/ood_results"]["tables"] >= 3


def test_next_links_walk_through_the_chapters_in_toc_order(visited):
    pages, walked, name = visited["pages"], [], PAGES[0]
    by_uri = {(HTML / f"{p}.html").as_uri(): p for p in PAGES}
    while name is not None and name not in walked:
        walked.append(name)
        nxt = pages[name]["next"]
        name = by_uri.get(nxt.split("#")[0]) if nxt else None
    assert walked == PAGES
