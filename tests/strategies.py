"""Hypothesis strategies the bad-input tests share (the core's and the adapters')."""

from __future__ import annotations

from hypothesis import strategies as st

#: Characters that break naive mappings: NUL, controls, separators, the two spellings of
#: "é" (precomposed, decomposed).
AWKWARD_CHARS = '\x00\x1f\x7f_.-/ \\:,"%*{}e\u0301\u00e9'


def any_text(max_size: int) -> st.SearchStrategy[str]:
    """Any text, with lone surrogates (no UTF-8 encoding; ``st.text()`` leaves them out)
    and :data:`AWKWARD_CHARS` far more often than chance."""
    return st.text(
        st.one_of(
            st.characters(),
            st.characters(categories=["Cs"]),
            st.sampled_from(AWKWARD_CHARS),
        ),
        max_size=max_size,
    )
