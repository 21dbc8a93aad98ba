"""``python -m sessionstore.cli`` -- the same as the ``sessionstore`` command."""

from __future__ import annotations

from sessionstore.cli import main

if __name__ == "__main__":
    main()
