"""One configuration object, from an optional TOML file and environment variables.

Precedence: environment variable > TOML file > default. The TOML file is ``$CRONACA_CONFIG``
or ``./cronaca.toml`` when present; its keys are the field names below. Every field, its
variable and its default are listed in the README.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from rag.resources import prompts_dir, sample_dir


@dataclass(frozen=True)
class Config:
    home: Path = field(default=Path(".cronaca"), metadata={"env": "CRONACA_HOME"})
    collection: str = field(default="cronaca", metadata={"env": "CRONACA_COLLECTION"})
    chroma_host: str = field(default="", metadata={"env": "CHROMA_HOST"})
    chroma_port: int = field(default=8000, metadata={"env": "CHROMA_PORT"})
    chroma_ssl: bool = field(default=False, metadata={"env": "CHROMA_SSL"})
    chroma_tenant: str = field(default="default_tenant", metadata={"env": "CHROMA_TENANT"})
    chroma_database: str = field(default="default_database", metadata={"env": "CHROMA_DATABASE"})
    embedder: str = field(default="e5", metadata={"env": "CRONACA_EMBEDDER"})
    embed_model: str = field(default="text-embedding-3-small", metadata={"env": "CRONACA_EMBED_MODEL"})
    embed_base_url: str = field(default="", metadata={"env": "CRONACA_EMBED_BASE_URL"})
    embed_batch: int = field(default=32, metadata={"env": "CRONACA_EMBED_BATCH"})
    embed_threads: int = field(default=0, metadata={"env": "CRONACA_EMBED_THREADS"})
    chunk_tokens: int = field(default=250, metadata={"env": "CRONACA_CHUNK_TOKENS"})
    chunk_overlap: float = field(default=0.15, metadata={"env": "CRONACA_CHUNK_OVERLAP"})
    top_k: int = field(default=5, metadata={"env": "CRONACA_TOP_K"})
    candidates: int = field(default=40, metadata={"env": "CRONACA_CANDIDATES"})
    rrf_k: int = field(default=10, metadata={"env": "CRONACA_RRF_K"})
    fusion: str = field(default="convex", metadata={"env": "CRONACA_FUSION"})
    fusion_weight: float = field(default=0.6, metadata={"env": "CRONACA_FUSION_WEIGHT"})
    title_boost: float = field(default=0.5, metadata={"env": "CRONACA_TITLE_BOOST"})
    proximity: float = field(default=0.3, metadata={"env": "CRONACA_PROXIMITY"})
    prf_terms: int = field(default=0, metadata={"env": "CRONACA_PRF_TERMS"})
    recency_tiebreak: float = field(default=0.2, metadata={"env": "CRONACA_RECENCY_TIEBREAK"})
    # the offline answerer's trained reader (rag/reader.py), read when rag/reader_delta.npz ships (its score
    # is a feature of the answerer's fitted model), and the probability under which the offline answerer
    # declines; 0 = the threshold fitted with that model (rag/extractive_model.json, see README)
    reader: bool = field(default=True, metadata={"env": "CRONACA_READER"})
    reader_threshold: float = field(default=0.0, metadata={"env": "CRONACA_READER_THRESHOLD"})
    openai_base_url: str = field(default="", metadata={"env": "OPENAI_BASE_URL"})
    openai_api_key: str = field(default="", metadata={"env": "OPENAI_API_KEY"})
    llm_model: str = field(default="gpt-4o-mini", metadata={"env": "CRONACA_LLM_MODEL"})
    llm_timeout: float = field(default=60.0, metadata={"env": "CRONACA_LLM_TIMEOUT"})
    llm_retries: int = field(default=2, metadata={"env": "CRONACA_LLM_RETRIES"})
    llm_deadline: float = field(default=90.0, metadata={"env": "CRONACA_LLM_DEADLINE"})
    llm_temperature: float = field(default=0.1, metadata={"env": "CRONACA_LLM_TEMPERATURE"})
    context_tokens: int = field(default=3000, metadata={"env": "CRONACA_CONTEXT_TOKENS"})
    model_context_tokens: int = field(default=8192, metadata={"env": "CRONACA_MODEL_CONTEXT"})
    answer_tokens: int = field(default=600, metadata={"env": "CRONACA_ANSWER_TOKENS"})
    max_file_mb: float = field(default=10.0, metadata={"env": "CRONACA_MAX_FILE_MB"})
    fetch_timeout: float = field(default=20.0, metadata={"env": "CRONACA_FETCH_TIMEOUT"})
    max_page_mb: float = field(default=5.0, metadata={"env": "CRONACA_MAX_PAGE_MB"})
    fetch_delay: float = field(default=1.0, metadata={"env": "CRONACA_FETCH_DELAY"})
    fetch_allow_private: bool = field(default=False, metadata={"env": "CRONACA_FETCH_ALLOW_PRIVATE"})
    feed_recheck_days: int = field(default=3, metadata={"env": "CRONACA_FEED_RECHECK_DAYS"})
    user_agent: str = field(default="", metadata={"env": "CRONACA_USER_AGENT"})
    mcp_ingest: bool = field(default=False, metadata={"env": "CRONACA_MCP_INGEST"})  # MCP's add_url, refresh_feeds
    prompts_dir: Path = field(default_factory=prompts_dir, metadata={"env": "CRONACA_PROMPTS"})
    sample_dir: Path = field(default_factory=sample_dir, metadata={"env": "CRONACA_SAMPLE"})

    def __post_init__(self) -> None:
        """Numbers out of their range are refused here, once, naming the variable: a negative
        ``CRONACA_TOP_K`` would otherwise surface as a puzzling failure deep in a search."""
        for f in fields(self):
            low = _MINIMA.get(f.name)
            value = getattr(self, f.name)
            if low is not None and value < low:
                raise ValueError(f"setting {f.name} ({f.metadata['env']}): {value!r} must be at least {low:g}")
            high = _MAXIMA.get(f.name)
            if high is not None and value > high:
                raise ValueError(f"setting {f.name} ({f.metadata['env']}): {value!r} must be at most {high:g}")

    @property
    def llm_configured(self) -> bool:
        """An LLM is used only when the user pointed us at one; otherwise we stay offline."""
        return bool(self.openai_base_url or self.openai_api_key)

    def uses_llm(self, answerer: str) -> bool:
        """Whether an answerer choice ("auto", "llm", "extractive") means asking the model."""
        return answerer == "llm" or (answerer == "auto" and self.llm_configured)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def load(cls, path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        toml_path = Path(path or env.get("CRONACA_CONFIG") or "cronaca.toml")
        values: dict[str, Any] = {}
        if toml_path.is_file():
            try:
                data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{toml_path}: not valid TOML ({exc})") from exc
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValueError(f"{toml_path}: unknown setting(s) {', '.join(unknown)}")
            values.update(data)
        for f in fields(cls):
            name = f.metadata["env"]
            if env.get(name, "") != "":
                values[f.name] = env[name]
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


# the smallest and largest value each numeric setting may take (the rest are free)
_MINIMA: dict[str, float] = {
    "chroma_port": 1, "embed_batch": 1, "embed_threads": 0, "chunk_tokens": 16, "chunk_overlap": 0.0,
    "top_k": 1, "candidates": 1, "rrf_k": 1, "fusion_weight": 0.0, "title_boost": 0.0, "proximity": 0.0,
    "prf_terms": 0, "recency_tiebreak": 0.0, "llm_timeout": 0.1, "llm_retries": 0, "llm_deadline": 0.1,
    "llm_temperature": 0.0, "context_tokens": 1, "model_context_tokens": 1, "answer_tokens": 1,
    "max_file_mb": 0.0001, "fetch_timeout": 0.1, "max_page_mb": 0.0001, "fetch_delay": 0.0,
    "feed_recheck_days": 0,
}
_MAXIMA: dict[str, float] = {"chroma_port": 65535, "chunk_overlap": 0.9, "top_k": 50, "fusion_weight": 1.0}


def _coerce(cls: type, name: str, value: Any) -> Any:
    spec = next(f for f in fields(cls) if f.name == name)
    default = spec.default_factory() if spec.default is MISSING else spec.default  # type: ignore[misc]
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        if isinstance(default, Path):
            return Path(value).expanduser()
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name}: {value!r} is not a valid {type(default).__name__}") from exc
