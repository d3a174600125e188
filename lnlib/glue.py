"""Numbers for the book's prose, glued from the runs so that no number in the text is typed by hand.

A chapter computes what its text quotes and glues it in a cell tagged ``remove-cell``::

    glue_numbers({"ce_fpr95": 70.8, "ln_fpr95": 59.4})

and its Markdown pastes the values with MyST-NB's roles: ``{glue:text}`ce_fpr95:.1f``` on the same page, or
``{glue:text}`generated/ood_results.ipynb::ce_fpr95:.1f``` from another page (the path relative to the page
that pastes, with its suffix; a string from another page needs the format ``:s``). A key that was not glued
fails the book build (``-W``); tests/test_notebooks.py checks each chapter glues what the pages paste.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping


def plain(value):
    """A Python int, float or str: the text MyST-NB pastes is the value's ``repr``, and NumPy 2 writes
    ``np.float64(0.5)``, which no format spec can read."""
    if isinstance(value, bool):
        raise TypeError(f"glue a number or a string, not the bool {value!r}: write the sentence for each case")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot glue {value!r} of type {type(value).__name__}: a number or a string is expected")


def glue_numbers(values: Mapping[str, object]) -> dict:
    """Glue each ``key -> value`` into the notebook (not displayed); returns the plain values."""
    from myst_nb import glue  # the book's dependency, imported only when a chapter glues

    plain_values = {key: plain(value) for key, value in values.items()}  # all checked before any is glued
    for key, value in plain_values.items():
        glue(key, value, display=False)
    return plain_values
