"""The shared adapter fixtures (``adapter_store`` on every built-in driver, the private
Redis and PostgreSQL servers) come from the repository's tests/adapters/plugin.py."""

pytest_plugins = ["tests.adapters.plugin"]
