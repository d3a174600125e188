"""Sphinx extension: write each <script> into a page once.

With Jupyter Book 1.0.4 (sphinx-thebe 0.3.1, sphinx-togglebutton) some inline scripts reach every page twice,
at two priorities. Twice is harmless for ``var`` but not for sphinx-thebe's ``const THEBE_JS_URL = ...``: the
second copy is a SyntaxError on every page (the browser test, tests/test_book_browser.py, reports it).
This keeps the first copy of each script (same file, same attributes and inline body), in page order.
"""


def dedupe(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in sorted(context.get("script_files", []), key=lambda js: js.priority):
        key = (str(js.filename or ""), tuple(sorted(js.attributes.items())))  # inline: None or ""
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", dedupe, priority=900)  # after every extension that adds scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
