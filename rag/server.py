"""``cronaca serve`` (and ``python app.py``): one process serving the page at ``/`` and the API.

One FastAPI app: the routes of ``rag.api`` first, then the Gradio page (``rag.ui.build_ui``, which
also ingests the sample on first start) mounted at ``/`` so that it gets every other path.
uvicorn runs it. Around that, what a long-running server needs and a single command does not:
the feed refresh on a schedule in a background thread (writes take the index's file lock,
questions read without it), logging without per-chunk noise, and a clean stop. Access is
``rag.access``'s: one gate in front of the whole app (page, Gradio API, REST, ``/v1``, the MCP
endpoint ``/mcp`` of ``rag.mcp_server``, and any sub-app mounted later), from
``CRONACA_AUTH=user:password`` and ``CRONACA_API_KEY``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from rag import access, api, mcp_server
from rag.library import Library
from rag.validation import RequestError

log = logging.getLogger("cronaca.server")

MIN_REFRESH_SECONDS = 10.0  # feeds are other people's servers
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_QUIET = ("bm25s", "httpx", "httpcore", "chromadb", "urllib3", "onnxruntime")


def parse_every(text: str | None) -> float | None:
    """``90s``, ``15m``, ``1h`` (a bare number is seconds) → seconds; empty, ``0`` or ``off`` → None."""
    value = (text or "").strip().lower()
    if value in ("", "0", "off", "never", "no"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", value)
    if not m:
        raise RequestError("refresh_every", f"'{value[:20]}' is not an interval (use e.g. 90s, 15m or 1h)",
                           code="interval", value=value)
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < MIN_REFRESH_SECONDS:
        raise RequestError("refresh_every", f"must be at least {MIN_REFRESH_SECONDS:g}s", code="range", value=value)
    return seconds


def auth_from_env() -> tuple[str, str] | None:
    """The page's login, ``CRONACA_AUTH=user:password`` (None when unset)."""
    user, password = access.parse_login(os.environ.get("CRONACA_AUTH", ""))
    return (user, password) if user else None


class FeedRefresher:
    """Refreshes the followed feeds now and then every ``every`` seconds, in a daemon thread.

    One log line per run; an exception is logged and the next run happens on schedule; ``stop``
    wakes the thread and waits a little for a run in progress (a write cut short by the process
    ending is what the index's crash-safety is for)."""

    def __init__(self, lib: Library, every: float, run: Callable[[], Any] | None = None) -> None:
        self.every = every
        self._run = run or lib.refresh_feeds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cronaca-feeds", daemon=True)
        self._thread.start()
        log.info("feeds: refreshing every %s", _interval(self.every))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("feeds: a refresh is still running; leaving it to end with the process")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            if self._stop.wait(self.every):
                break

    def run_once(self) -> None:
        t0 = time.monotonic()
        self.runs += 1
        try:
            report = self._run()
        except Exception as exc:  # one bad run must not end the schedule
            self.failures += 1
            log.warning("feeds: refresh failed after %.1f s: %s", time.monotonic() - t0, exc)
            return
        errors = getattr(report, "errors", [])
        first = f"; first error: {errors[0]}" if errors else ""
        log.info("feeds: %s in %.1f s%s", report.summary(), time.monotonic() - t0, first)


def _interval(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def build_app(lib: Library, *, api_key: str | None = None, refresh_every: float | None = None,
              page: bool = True, host: str = "127.0.0.1", port: int = 7860,
              policy: access.Policy | None = None) -> FastAPI:
    """The API routes, then the page at ``/`` (which ingests the sample on first start); the feed
    refresher lives as long as the app does. ``policy``: who may use it (default: from the
    environment; ``api_key``, when given, replaces ``CRONACA_API_KEY``)."""
    refresher = FeedRefresher(lib, refresh_every) if refresh_every else None
    mcp = mcp_server.http_endpoint(lib, host=host)  # /mcp: behind the same gate as every route

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if refresher:
            refresher.start()
        try:
            async with mcp.running():
                yield
        finally:
            if refresher:
                refresher.stop()

    if policy is None:
        policy = access.Policy.from_env()
        if api_key is not None:
            policy.key = api_key
    app = api.create_app(lib, policy=policy, lifespan=lifespan)
    app.router.routes.append(mcp.route)  # before the page, which takes every other path; behind the gate
    app.state.refresher = refresher
    if page:
        mount_page(app, lib, host=host, port=port, policy=policy)
    return app


def mount_page(app: FastAPI, lib: Library, host: str, port: int, policy: access.Policy) -> None:
    """The Gradio page at ``/``, with the options ``launch()`` used to take (gradio 6 moved them).

    Two things ``launch()`` would do and mounting does not: the Blocks are marked launched, so
    Gradio accepts only files a client uploaded (in its upload folder) where a component takes a
    file, whatever path a client sends; and the page's login sessions are handed to the policy,
    so a page login opens the API for that browser too."""
    import gradio as gr
    from gradio.routes import App as GradioApp

    from rag import page, ui

    blocks = ui.build_ui(lib)
    gr.mount_gradio_app(app, blocks, path="/", server_name=host, server_port=port,
                        auth=policy.login_ok if policy.required else None,
                        auth_message="cronaca: accesso riservato" if policy.required else None,
                        max_file_size=ui.transport_limit(lib.config), theme=ui.theme(), css=page.CSS,
                        head=page.HEAD, footer_links=["api"], show_error=False)
    blocks.has_launched = True  # gradio.processing_utils._check_allowed skips its checks otherwise
    mounted = next(r.app for r in app.routes if isinstance(getattr(r, "app", None), GradioApp))
    policy.sessions = access.PageSessions(mounted)


def configure_logging() -> None:
    """Readable INFO lines from cronaca and uvicorn's start/stop; libraries only when they warn."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for name in ("cronaca", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.INFO)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(lib: Library, host: str = "127.0.0.1", port: int = 7860, refresh_every: float | None = None,
          insecure: bool = False) -> int:
    import uvicorn

    configure_logging()
    policy = access.Policy.from_env()
    refusal = access.refuse_open_bind(host, policy, insecure)
    if refusal:
        raise SystemExit(f"error: {refusal}")
    if not policy.required and not access.is_loopback(host):
        log.warning("listening on %s without credentials (--insecure): whoever reaches this port can read, "
                    "add and delete articles", host)
    app = build_app(lib, refresh_every=refresh_every, host=host, port=port, policy=policy)
    log.info("cronaca on http://%s:%d — page /, API %s (docs /docs), OpenAI-compatible /v1, MCP %s%s",
             host, port, api.PREFIX, mcp_server.PATH, " (credentials required)" if policy.required else "")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           timeout_graceful_shutdown=5))
    server.run()
    return 0 if server.started else 1
