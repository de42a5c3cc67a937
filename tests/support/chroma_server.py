"""A real Chroma server process for tests (``chroma run``).

::

    with start_chroma_server(tmp_path / "chroma") as chroma:
        client = chromadb.HttpClient(host=chroma.host, port=chroma.port)

The ``chroma`` console script installed next to the running interpreter is
preferred (it belongs to the same chromadb); otherwise the same entry point is
run as ``python -c "...chromadb.cli.cli.app()"`` (chromadb has no
``python -m chromadb.cli.cli``: that module has no ``__main__`` block).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ENTRY_POINT = "import sys; sys.argv[0] = 'chroma'; from chromadb.cli.cli import app; app()"


class ChromaServerError(RuntimeError):
    """The Chroma server could not be started or reached."""


def chroma_command() -> list[str]:
    """The argv prefix that runs the ``chroma`` CLI of the current interpreter."""
    script = Path(sys.executable).with_name("chroma")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", _ENTRY_POINT]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ChromaServer:
    """Handle on a running ``chroma run`` process."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, path: Path, log_path: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.path = path
        self.log_path = log_path
        self.url = f"http://{host}:{port}"

    def client(self, **kwargs):
        """A ``chromadb.HttpClient`` for this server."""
        import chromadb
        from chromadb.config import Settings

        kwargs.setdefault("settings", Settings(anonymized_telemetry=False))
        return chromadb.HttpClient(host=self.host, port=self.port, **kwargs)

    def heartbeat(self) -> int:
        return self.client().heartbeat()

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``. Idempotent; keeps the data dir."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._cleanup_log()

    def kill(self) -> None:
        """SIGKILL now (crash simulation), and reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def _cleanup_log(self) -> None:
        shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def __enter__(self) -> ChromaServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ChromaServer(url={self.url!r}, path={str(self.path)!r})"


def start_chroma_server(
    path: str | os.PathLike,
    *,
    timeout: float = 60.0,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> ChromaServer:
    """Run ``chroma run --path PATH --host HOST --port PORT`` and wait for its heartbeat.

    ``port=None`` picks a free port.  Raises :class:`ChromaServerError` with the
    log tail if the process exits or no heartbeat answers within ``timeout``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    logdir = Path(tempfile.mkdtemp(prefix="cronaca-chroma-"))
    log_path = logdir / "chroma.log"
    cmd = [*chroma_command(), "run", "--path", str(path), "--host", host, "--port", str(port)]
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False", NO_COLOR="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = ChromaServer(process, host, port, path, log_path)

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _tail(log_path, 40)
            server.stop()
            raise ChromaServerError(
                f"chroma exited with code {process.returncode} (cmd: {' '.join(cmd)})\n{tail}"
            )
        try:
            server.heartbeat()
            return server
        except Exception as exc:  # connection refused while it boots
            last_error = exc
            time.sleep(0.1)
    tail = _tail(log_path, 40)
    server.stop()
    raise ChromaServerError(
        f"chroma gave no heartbeat within {timeout:.0f}s (last error: {last_error!r})\n{tail}"
    )


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
