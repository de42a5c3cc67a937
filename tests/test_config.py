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


@pytest.mark.parametrize("env,named", [({"CRONACA_TOP_K": "-3"}, "CRONACA_TOP_K"), ({"CRONACA_TOP_K": "0"}, "top_k"),
                                       ({"CRONACA_TOP_K": "500"}, "at most 50"),
                                       ({"CRONACA_FETCH_TIMEOUT": "-1"}, "CRONACA_FETCH_TIMEOUT"),
                                       ({"CRONACA_CHUNK_OVERLAP": "1.5"}, "chunk_overlap")])
def test_numbers_out_of_range_are_refused(tmp_path, env, named):
    with pytest.raises(ValueError, match=named):
        Config.load(tmp_path / "missing.toml", env=env)


def _cli(home, *args: str):
    """``cronaca`` in its own process with CRONACA_HOME set: (exit status, stderr)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stderr


@pytest.mark.parametrize("kind", ["file", "under-a-file"])
def test_a_home_that_is_not_a_folder_is_one_line_not_a_traceback(tmp_path, kind):
    target = tmp_path / "casa"
    target.write_text("non sono una cartella")
    home = target if kind == "file" else target / "dentro"
    code, err = _cli(home, "stats")
    assert code == 2 and "Traceback" not in err
    assert "CRONACA_HOME" in err and str(home) in err and len(err.strip().splitlines()) == 1, err


def test_a_negative_top_k_stops_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env.update(CRONACA_HOME=str(tmp_path / "home"), CRONACA_TOP_K="-3")
    done = subprocess.run([sys.executable, "-m", "rag.cli", "stats"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "CRONACA_TOP_K" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["99999", "0", "-1", "porta"])
def test_serve_refuses_a_port_that_is_not_one(tmp_path, port):
    code, err = _cli(tmp_path / "home", "serve", "--port", port)
    assert code == 2 and "--port" in err and "Traceback" not in err


def test_serve_refuses_an_open_address_without_credentials(tmp_path):
    code, err = _cli(tmp_path / "home", "serve", "--host", "0.0.0.0")
    assert code == 2 and "--insecure" in err and "CRONACA_API_KEY" in err
    assert not (tmp_path / "home").exists()  # refused before anything was opened
