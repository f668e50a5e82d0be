"""Dialogue generation throughput: dialogues per minute written by the `generate_dialogues` stage
against a local OpenAI-compatible stand-in server that answers every request after a fixed latency
(as a loaded vLLM server would, but with no model), at several concurrencies, measured in one run.

Each concurrency starts from an empty folder (no cached answers); the last line reruns the highest one
in its own folder, where every answer is cached. The stand-in's answers are canned text: only the
plumbing is measured (requests in flight, batching by roles, the prompt cache), not a model.

    python benchmarks/generation_throughput.py [--roles 16] [--latency 0.2] [--concurrency 1,16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from speechrole.devtools.judge_stand_in import JudgeServer
from speechrole.pipeline import Context
from speechrole.pipeline.example import synthetic_roles
from speechrole.pipeline.stages.dialogues import GenerateDialogues


def generate(
    server: JudgeServer, work: Path, concurrency: int, rows: list[dict[str, Any]]
) -> tuple[int, float]:
    """(dialogues written, seconds), in the executor's batches of `batch_size` roles."""
    stage = GenerateDialogues(llm=f"openai:stand-in@{server.base_url}", concurrency=concurrency)
    stage.setup(Context(work, {}))
    started = time.perf_counter()
    try:
        made = 0
        for i in range(0, len(rows), stage.batch_size):
            made += sum("turns" in r for r in stage.process_batch(rows[i : i + stage.batch_size]))
    finally:
        stage.teardown()
    return made, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2, help="the server's seconds per answer")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated; the first is the baseline")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = synthetic_roles(args.roles)
    print(
        f"{args.roles} roles x 3 dialogues (2 single, 1 of 2 exchanges), stepwise; server latency {args.latency} s"
    )
    print(
        f"\n{'concurrency':>11}{'dialogues':>11}{'requests':>10}{'seconds':>9}{'per minute':>12}{'vs first':>10}"
    )
    with JudgeServer(latency_s=args.latency, track=False) as server, tempfile.TemporaryDirectory() as tmp:
        base = None
        for level in levels:
            before = server.state.requests
            made, seconds = generate(server, Path(tmp) / str(level), level, rows)
            rate = made / seconds * 60
            base = base or rate
            print(
                f"{level:>11}{made:>11}{server.state.requests - before:>10}{seconds:>9.1f}{rate:>12.0f}{rate / base:>9.1f}x"
            )
        before = server.state.requests
        made, seconds = generate(server, Path(tmp) / str(levels[-1]), levels[-1], rows)
        print(
            f"{'rerun':>11}{made:>11}{server.state.requests - before:>10}{seconds:>9.1f}{made / seconds * 60:>12.0f}   (cached)"
        )


if __name__ == "__main__":
    main()
