"""Evaluation harness for cronaca: retrieval, answer, citation and abstention metrics.

``python -m eval run SET`` ingests a corpus into a cached temporary store (never the user's
CRONACA_HOME), runs every case through retrieval (one or more modes) and the answerer, and
writes run.json, report.md and hitk.png. ``python -m eval compare A B`` diffs two runs.
"""
