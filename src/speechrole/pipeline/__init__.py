"""The SpeechRole-Data construction pipeline: stages over JSONL manifests, run by a local executor or
by Ray Data, described in YAML (see `spec.py`)."""

from __future__ import annotations

from speechrole.pipeline.local import LocalExecutor, StageSummary
from speechrole.pipeline.spec import Pipeline, load_pipeline
from speechrole.pipeline.stage import STAGES, Context, Resources, Row, Stage, drop, register, row_id

__all__ = [
    "STAGES",
    "Context",
    "LocalExecutor",
    "Pipeline",
    "Resources",
    "Row",
    "Stage",
    "StageSummary",
    "drop",
    "load_pipeline",
    "register",
    "row_id",
]
