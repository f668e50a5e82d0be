"""Data-pipeline throughput on the offline tier: hours of source audio processed per CPU-hour, per
stage, with the local executor and with Ray (2 workers), measured in the same run on the same input.

CPU-hours = wall-clock hours x the cores the executor may use (`--cores`, default: all of this
machine's), so the two executors are compared on the same footing. The input is the synthetic episode
of the test suite, repeated `--repeat` times as separate media files.

    python benchmarks/pipeline_throughput.py [--repeat 3] [--through embed|all]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from speechrole.pipeline import LocalExecutor, StageSummary, load_pipeline
from speechrole.pipeline.example import CAST, pipeline_yaml, render_episode


def prepare(folder: Path, repeat: int, through: str) -> tuple[Path, float]:
    import soundfile as sf

    render_episode(folder)
    for k in range(1, repeat):  # more media: copies of the episode under other names (other source ids)
        shutil.copyfile(folder / "episode.wav", folder / f"episode-{k}.wav")
    path = pipeline_yaml(folder, formats="[speechrole, chat]")
    text = path.read_text(encoding="utf-8").replace(
        "  - {path: episode.wav, language: en}", "  - {path: 'episode*.wav', language: en}"
    )
    if through == "embed":
        text = text[: text.index("  - assign_roles")]
    path.write_text(text, encoding="utf-8")
    hours = sum(sf.info(str(p)).duration for p in folder.glob("episode*.wav")) / 3600
    return path, hours


def run(executor: str, folder: Path, workers: int) -> list[StageSummary]:
    pipeline = load_pipeline(folder / "pipeline.yaml")
    if executor == "local":
        return LocalExecutor(pipeline).run()
    from speechrole.pipeline.ray_executor import RayExecutor

    try:
        return RayExecutor(pipeline, workers=workers, num_cpus=workers).run()
    finally:
        import ray

        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the episode (about 65 s each)")
    parser.add_argument(
        "--through", choices=("embed", "all"), default="all", help="stop after the audio stages, or run all"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors per stage")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="speechrole-pipeline-") as tmp:
        base = Path(tmp) / "local"
        _, hours = prepare(base, args.repeat, args.through)
        other = Path(tmp) / "ray"
        other.mkdir()
        for f in base.iterdir():
            if f.is_file():
                shutil.copyfile(f, other / f.name)
        print(
            f"input: {args.repeat} media files, {hours * 3600:.0f} s of audio; {len(CAST)} voices; {args.cores} cores"
        )
        results = {
            name: run(name, folder, args.workers) for name, folder in (("local", base), ("ray", other))
        }
    print(
        f"\n{'stage':<20}{'local s':>9}{'ray s':>9}{'local h/CPU-h':>15}{'ray h/CPU-h':>13}{'ray/local':>11}"
    )
    totals = {"local": 0.0, "ray": 0.0}
    for a, b in zip(results["local"], results["ray"], strict=True):
        totals["local"] += a.seconds
        totals["ray"] += b.seconds
        rate_a = hours / (a.seconds / 3600 * args.cores) if a.seconds else float("inf")
        rate_b = hours / (b.seconds / 3600 * args.cores) if b.seconds else float("inf")
        print(
            f"{a.name:<20}{a.seconds:>9.1f}{b.seconds:>9.1f}{rate_a:>15.1f}{rate_b:>13.1f}{a.seconds / b.seconds if b.seconds else 0:>11.2f}"
        )
    rate = {k: hours / (v / 3600 * args.cores) for k, v in totals.items()}
    print(
        f"{'all stages':<20}{totals['local']:>9.1f}{totals['ray']:>9.1f}{rate['local']:>15.1f}{rate['ray']:>13.1f}{totals['local'] / totals['ray']:>11.2f}"
    )
    slowest = max(results["local"], key=lambda s: s.seconds)
    print(f"\nslowest stage (local): {slowest.name}, {slowest.seconds:.1f} s of {totals['local']:.1f} s")
    print(
        "ray/local > 1: Ray is faster (it runs 2 actors per row-wise stage; it also pays for its start and for loading models per actor)"
    )


if __name__ == "__main__":
    main()
