import pytest

from rag.config import Config


def test_env_overrides_toml_overrides_defaults(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('top_k = 7\nllm_model = "from-toml"\nchunk_overlap = 0.2\n')
    cfg = Config.load(toml, env={"CRONACA_LLM_MODEL": "from-env"})
    assert (cfg.top_k, cfg.llm_model, cfg.chunk_overlap, cfg.chunk_tokens) == (7, "from-env", 0.2, 250)
    assert not cfg.llm_configured
    assert Config.load(toml, env={"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}).llm_configured


def test_bad_settings_are_named(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("topk = 7\n")
    with pytest.raises(ValueError, match="unknown setting.*topk"):
        Config.load(toml, env={})
    with pytest.raises(ValueError, match="setting top_k"):
        Config.load(tmp_path / "missing.toml", env={"CRONACA_TOP_K": "many"})


def test_every_setting_is_documented_in_the_readme():
    """The README's configuration table is the user's only reference: a setting missing there
    does not exist for them."""
    import dataclasses

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for f in dataclasses.fields(Config):
        assert f"| {f.name} | `{f.metadata['env']}` |" in readme, f.name
