"""Usernames: one spelling per name, and no look-alikes of a name already taken.

A name is normalised with NFKC before anything else, so the full-width form of ``admin`` and
compatibility forms become the plain ASCII they look like (and then meet the ASCII-only
username pattern, or are refused by it). Names compare case-insensitively (casefold).

``skeleton`` folds a name further into what a reader sees: case, digits that pass for
letters (``0``/``o``, ``1``/``l``/``i``), letter pairs that pass for one letter (``rn``/``m``,
``vv``/``w``, ``cl``/``d``) and the separators ``.``, ``_`` and ``-``. Two names with the
same skeleton are confusable: the second is refused. Usernames are ASCII after NFKC, so
a small mapping of our own covers them; Unicode's full confusables table (as in the
``confusable_homoglyphs`` package) would be needed only if non-ASCII names were allowed.
"""

from __future__ import annotations

import re
import unicodedata

_LOOK_ALIKE = str.maketrans({"0": "o", "1": "l", "i": "l", "5": "s", "_": "-", ".": "-"})
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_SEPARATORS = re.compile(r"-+")


def normalise(name: str) -> str:
    """The spelling a name is stored and shown in: NFKC, without surrounding spaces."""
    return unicodedata.normalize("NFKC", name).strip()


def comparable(name: str) -> str:
    """What two spellings of one name have in common (used to compare logins)."""
    return normalise(name).casefold()


def skeleton(name: str) -> str:
    """The look of a name: names with equal skeletons are confusable."""
    folded = comparable(name).translate(_LOOK_ALIKE)
    for pair, single in _PAIRS:
        folded = folded.replace(pair, single)
    return _SEPARATORS.sub("-", folded).strip("-")
