"""``python -m sessionstore`` -- the same as the ``sessionstore`` command (see docs/cli.md)."""

from __future__ import annotations

from sessionstore.cli import main

if __name__ == "__main__":
    main()
