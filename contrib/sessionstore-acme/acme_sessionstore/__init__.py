"""sessionstore-acme: an example external sessionstore driver (``acme://``).

The driver keeps every record as JSON bytes in a key-value service (:class:`AcmeKV`
stands in for its client). It implements only the five primitives of
:class:`sessionstore.BaseSessionStore` and passes the conformance suite.
"""

from __future__ import annotations

from .kv import AcmeKV, ConditionFailed
from .store import AcmeOptions, AcmeStore

__all__ = ["AcmeKV", "AcmeOptions", "AcmeStore", "ConditionFailed"]
