"""A Griffe extension for the docs site: Sphinx roles in docstrings become cross-references.

The docstrings name other objects the way Sphinx does (``:class:`Session```,
``:meth:`~sessionstore.SessionStore.trim_events```). mkdocstrings renders Markdown, so
each role is rewritten into an autorefs link (```[`Session`][Session]```) that the Python
handler resolves in the scope of the documented object (``scoped_crossrefs`` in
mkdocs.yml). A name that does not resolve fails ``mkdocs build --strict``: a docstring
never points at something that is not there.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`<>]+)`")


def crossref(match: re.Match[str]) -> str:
    short, target = match[1] == "~", match[2].strip()
    title = target.rsplit(".", 1)[-1] if short else target
    return f"[`{title}`][{target}]"


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(crossref, obj.docstring.value)
