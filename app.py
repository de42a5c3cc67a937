"""cronaca web page: ``python app.py [--host 127.0.0.1] [--port 7860]``.

The page itself is ``rag.ui`` (so that ``cronaca serve`` from an installed package serves the same
page); this file only starts it. Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (flags
win), CRONACA_AUTH=user:password.
"""

from __future__ import annotations

# isort: off
import rag  # noqa: F401  (offline setup before gradio/chroma are imported)
# isort: on

import argparse
import logging
import os
import sys

from rag import page
from rag.config import Config
from rag.library import Library
from rag.ui import App, build, ensure_sample, log, say, theme
from rag.ui import safe_name as safe_name  # re-exported for tests and callers of the old module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="cronaca web page")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860))
    return p.parse_args(argv)


def auth_from_env() -> tuple[str, str] | None:
    raw = os.environ.get("CRONACA_AUTH", "")
    if not raw:
        return None
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise SystemExit("CRONACA_AUTH must be user:password")
    return user, password


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    auth = auth_from_env()
    from rag.store import StoreError

    try:
        lib = Library(Config.load())
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    note = ensure_sample(lib)
    app = App(lib, startup_note=note)
    demo = build(app)
    demo.queue()
    say(f"pagina su http://{args.host}:{args.port}" + (" (con autenticazione)" if auth else ""))
    demo.launch(server_name=args.host, server_port=args.port, auth=auth,
                auth_message="cronaca: accesso riservato" if auth else None,
                max_file_size=f"{app.config.max_file_mb:g}mb", theme=theme(), css=page.CSS,
                head=page.HEAD, footer_links=["api"], show_error=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
