"""Run the HTTP API for tests: in-process under uvicorn, or the real ``cronaca serve`` command.

::

    with ServerThread(rag.api.create_app(lib)) as server:
        httpx.get(server.url + "/api/v1/health")

    proc = ServeProcess(home, env={"CRONACA_API_KEY": "k"}, log_path=tmp / "serve.log").start()
    ...
    proc.stop()

Both listen on 127.0.0.1 only, wait a bounded time for the server to answer, and stop it
(``should_exit`` for the thread, SIGTERM then SIGKILL for the process).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` from a thread, on a socket bound before it starts (no port race)."""

    def __init__(self, app, start_timeout: float = 60.0) -> None:
        import uvicorn

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                                    timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="test-uvicorn", daemon=True)
        self._timeout = start_timeout

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._sock.close()

    def __exit__(self, *exc) -> None:
        self.stop()


def cronaca_command() -> list[str]:
    """The installed ``cronaca`` console script next to this Python, else ``python -m rag.cli``."""
    script = Path(sys.executable).with_name("cronaca")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rag.cli"]


class ServeProcess:
    """``cronaca serve`` as its own process on a free loopback port, over ``home``."""

    def __init__(self, home: Path, log_path: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CRONACA_", "CHROMA_", "GRADIO_"))}
        self.env = {**base, "CRONACA_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.argv = [*cronaca_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), *(args or [])]
        self.cwd = cwd or home.parent
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240.0) -> ServeProcess:
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cronaca serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"cronaca serve did not answer within {timeout:g} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
