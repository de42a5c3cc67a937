"""cronaca: ``python app.py [--host 127.0.0.1] [--port 7860] [--refresh-every 15m]``.

The same as ``cronaca serve`` (``rag.server``): the page at ``/`` and the HTTP API in one
process, kept here so that a clone of the repository starts with one obvious command.
Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT / CRONACA_REFRESH_EVERY (flags win);
CRONACA_AUTH=user:password and/or CRONACA_API_KEY guard every route (``rag.access``).
"""

from __future__ import annotations

# isort: off
import rag  # noqa: F401  (offline setup before gradio/chroma are imported)
# isort: on

import argparse
import sys
from typing import Any

from rag.cli import build_parser
from rag.cli import main as cli_main

# names of the old module, for tests and callers; loaded on first use, so `--help` stays instant
_MOVED = {"App": "rag.ui", "safe_name": "rag.uploads", "auth_from_env": "rag.server"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'app' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_MOVED[name]), name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``cronaca serve``, with the same defaults."""
    return build_parser().parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
