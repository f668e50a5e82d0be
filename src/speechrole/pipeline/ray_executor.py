"""The Ray Data executor: the same stages and the same manifests as the local executor, with each
row-wise stage run as `map_batches` over an actor pool (CPUs and GPUs per stage from its
`resources`: `- asr: {resources: {gpus: 0.5}}` puts two ASR workers on each GPU, and a stage that asks
for more than the cluster has stops with one line instead of waiting); whole-set stages (clustering,
reference selection, deduplication, export) run on the driver. Ray is an optional extra; stage code
never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from speechrole.pipeline.local import SRC, LocalExecutor, Progress, StageError, StageSummary, run_batch
from speechrole.pipeline.spec import Pipeline
from speechrole.pipeline.stage import Context, Row, Stage


class _StageActor:
    """One Ray actor: builds its stage and loads its models once, then maps batches of JSON rows."""

    def __init__(
        self, name: str, options: dict[str, Any], work_dir: str, config: dict[str, Any], cpus: float
    ) -> None:
        from pathlib import Path

        from speechrole.pipeline.stage import stage_class

        self.stage = stage_class(name)(**options)
        self.stage.setup(Context(Path(work_dir), config, cpus=max(1, round(cpus))))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [json.loads(r) for r in batch["row"]]
        out = run_batch(self.stage, rows)
        return {"row": np.array([json.dumps(r, ensure_ascii=False) for r in out], dtype=object)}


def placement_problem(stage: Stage, cluster: dict[str, float]) -> str | None:
    """Why no worker of the stage can be placed on the cluster (Ray would wait for it forever)."""
    wanted = {"CPU": stage.resources.cpus, "GPU": stage.resources.gpus}
    for kind, amount in wanted.items():
        if amount > cluster.get(kind, 0.0):
            have = cluster.get(kind, 0.0)
            return (
                f"a worker needs {amount:g} {kind} (resources in the pipeline file) and the Ray cluster has "
                f"{have:g}" + ("; remove `gpus` to run it on CPUs" if kind == "GPU" else "")
            )
    return None


class RayExecutor(LocalExecutor):
    """`workers` actors per row-wise stage on a local Ray (or the cluster `address` names)."""

    def __init__(
        self,
        pipeline: Pipeline,
        progress: Progress | None = None,
        *,
        workers: int = 2,
        address: str | None = None,
        num_cpus: int | None = None,
    ) -> None:
        super().__init__(pipeline, progress)
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs Ray: pip install 'speechrole[ray]'") from None
        self.workers = workers
        import logging

        import ray.data  # first: importing it sets its loggers' levels, which we lower next

        for name in ("ray", "ray.data"):  # their INFO and WARNING lines would break the progress
            logging.getLogger(name).setLevel(logging.ERROR)  # display; failures reach us as exceptions
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                object_store_memory=None if address else 256 * 1024 * 1024,
            )
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # manifests in input order, as local writes
        context.enable_progress_bars = False

    def outputs(
        self, stage: Stage, todo: list[Row], summary: StageSummary
    ) -> Iterator[tuple[list[str], list[Row]]]:
        if stage.per == "all":
            yield from super().outputs(stage, todo, summary)
            return
        import ray

        if (why := placement_problem(stage, ray.cluster_resources())) is not None:
            raise StageError(stage.name, RuntimeError(why))
        ctx = self.pipeline.context
        data = ray.data.from_items([{"row": json.dumps(r, ensure_ascii=False)} for r in todo])
        mapped = data.map_batches(
            _StageActor,
            fn_constructor_kwargs={
                "name": stage.name,
                "options": stage.options,
                "work_dir": str(ctx.work_dir),
                "config": ctx.config,
                "cpus": stage.resources.cpus,
            },
            batch_size=max(1, stage.batch_size),
            batch_format="numpy",
            num_cpus=stage.resources.cpus,
            num_gpus=stage.resources.gpus,
            memory=stage.resources.memory_gb * 2**30 if stage.resources.memory_gb else None,
            # A fixed pool, every actor started at once: an autoscaling one starts with one actor and
            # adds the next only when batches queue up, after most of a short stage is done.
            compute=ray.data.ActorPoolStrategy(
                size=max(1, min(self.workers, -(-len(todo) // stage.batch_size)))
            ),
        )
        # Outputs arrive in input order, an input's rows together: an input is finished once a later
        # batch has arrived (or the stage has ended), and only then logged as done.
        finished: set[str] = set()
        pending: list[str] = []
        try:
            for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                out = [json.loads(r) for r in batch["row"]]
                sources = list(dict.fromkeys(r[SRC] for r in out))
                ready = [s for s in pending if s not in sources]
                finished.update(ready)
                yield ready, out
                pending = sources
        except ray.exceptions.RayError as exc:
            cause = str(exc).strip().splitlines()
            raise StageError(stage.name, RuntimeError(cause[-1] if cause else type(exc).__name__)) from None
        yield [r["id"] for r in todo if r["id"] not in finished], []  # the rest: inputs with no rows too


__all__ = ["RayExecutor"]
