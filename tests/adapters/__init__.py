"""Shared test plumbing of the framework adapters in ``contrib/sessionstore-<framework>/``
(see :mod:`tests.adapters.plugin`)."""
