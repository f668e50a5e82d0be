"""Data-pipeline throughput on the offline tier: hours of source audio processed per CPU-hour, per
stage, with the local executor and with Ray at several worker counts, measured in one run on the same
input; the Ray part ends with each stage's speed-up and parallel efficiency.

CPU-hours = wall-clock hours x the cores the run may use: all of `--cores` for the local executor
(its stages spread a batch over every core), min(workers, cores) for Ray (one core per actor). A
stage's time includes loading its models (`setup`, printed apart for the local run); the steady rate
leaves setup out, which is what a long run approaches. The input is the synthetic episode of the test
suite, repeated `--repeat` times as separate media files (about 65 s each).

Speed-up at k workers = T(1 worker) / T(k workers); parallel efficiency = speed-up / k. Worker counts
above `--cores` oversubscribe the machine and say nothing about a cluster: run it where the cores are.

    python benchmarks/pipeline_throughput.py [--repeat 3] [--through embed|all] [--workers 1,2]
    python benchmarks/pipeline_throughput.py --through embed --rates src/speechrole/pipeline/rates.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from speechrole.pipeline import LocalExecutor, StageSummary, load_pipeline
from speechrole.pipeline.example import CAST, pipeline_yaml, render_episode
from speechrole.pipeline.stage import available_cpus


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


def copy_inputs(source: Path, target: Path) -> None:
    target.mkdir()
    for f in source.iterdir():
        if f.is_file():
            shutil.copyfile(f, target / f.name)


def run(folder: Path, workers: int | None) -> list[StageSummary]:
    """The pipeline in `folder`: local executor (workers None) or Ray with that many actors per stage."""
    pipeline = load_pipeline(folder / "pipeline.yaml")
    if workers is None:
        return LocalExecutor(pipeline).run()
    from speechrole.pipeline.ray_executor import RayExecutor

    try:
        return RayExecutor(pipeline, workers=workers, num_cpus=workers).run()
    finally:
        import ray

        ray.shutdown()


def rate(hours: float, seconds: float, cores: int) -> float:
    return hours / (seconds / 3600 * cores) if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the episode (about 65 s each)")
    parser.add_argument(
        "--through", choices=("embed", "all"), default="all", help="stop after the audio stages, or run all"
    )
    parser.add_argument("--cores", type=int, default=available_cpus(), help="cores the runs may use")
    parser.add_argument(
        "--workers", default="1,2", help="Ray actors per stage, comma-separated ('' skips Ray)"
    )
    parser.add_argument("--rates", type=Path, help="write the local run's per-stage rates here (for --plan)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="speechrole-pipeline-") as tmp:
        base = Path(tmp) / "local"
        _, hours = prepare(base, args.repeat, args.through)
        for k in counts:
            copy_inputs(base, Path(tmp) / f"ray-{k}")
        print(
            f"input: {args.repeat} media files, {hours * 3600:.0f} s of audio; {len(CAST)} voices; "
            f"{args.cores} cores"
        )
        local = run(base, None)
        ray = {k: run(Path(tmp) / f"ray-{k}", k) for k in counts}

    print(f"\nlocal executor, {args.cores} cores (h/CPU-h: hours of audio per CPU-hour)")
    print(f"{'stage':<20}{'seconds':>9}{'setup':>8}{'h/CPU-h':>10}{'steady h/CPU-h':>16}")
    for s in local:
        setup = s.setup_seconds or 0.0
        steady = rate(hours, s.seconds - setup, args.cores)
        print(
            f"{s.name:<20}{s.seconds:>9.1f}{setup:>8.1f}{rate(hours, s.seconds, args.cores):>10.1f}{steady:>16.1f}"
        )
    total = sum(s.seconds for s in local)
    setup = sum(s.setup_seconds or 0.0 for s in local)
    print(
        f"{'all stages':<20}{total:>9.1f}{setup:>8.1f}{rate(hours, total, args.cores):>10.1f}"
        f"{rate(hours, total - setup, args.cores):>16.1f}"
    )
    slowest = max(local, key=lambda s: s.seconds)
    print(f"slowest stage: {slowest.name}, {slowest.seconds:.1f} s of {total:.1f} s")
    if args.rates:
        write_rates(args.rates, local, hours, args.cores)
        print(f"per-stage rates written to {args.rates}")
    if counts:
        report_ray(ray, local, hours, args.cores)


def report_ray(
    ray: dict[int, list[StageSummary]], local: list[StageSummary], hours: float, cores: int
) -> None:
    counts = sorted(ray)
    names = [s.name for s in local]
    seconds = {k: {s.name: s.seconds for s in ray[k]} for k in counts}
    for k in counts:
        seconds[k]["all stages"] = sum(seconds[k].values())
    print("\nRay executor: seconds per stage (actor start and model loading included), h/CPU-h")
    head = "".join(f"{f'{k} w s':>9}" for k in counts) + "".join(f"{f'{k} w h/CPU-h':>14}" for k in counts)
    print(f"{'stage':<20}{head}")
    for name in [*names, "all stages"]:
        t = {k: seconds[k].get(name, 0.0) for k in counts}
        cells = "".join(f"{t[k]:>9.1f}" for k in counts)
        cells += "".join(f"{rate(hours, t[k], min(k, cores)):>14.1f}" for k in counts)
        print(f"{name:<20}{cells}")
    if len(counts) > 1 and counts[0] == 1:
        print("\nspeed-up over 1 worker (parallel efficiency = speed-up / workers)")
        print(f"{'stage':<20}" + "".join(f"{f'{k} workers':>18}" for k in counts[1:]))
        for name in [*names, "all stages"]:
            t = {k: seconds[k].get(name, 0.0) for k in counts}
            cells = "".join(
                f"{t[1] / t[k]:>9.2f}x ({t[1] / t[k] / k:>4.0%})" if t[k] else f"{'-':>18}"
                for k in counts[1:]
            )
            print(f"{name:<20}{cells}")
    if max(counts) > cores:
        print(
            f"\n{max(counts)} workers on {cores} cores oversubscribe this machine: those columns say nothing about a cluster"
        )


def write_rates(path: Path, local: list[StageSummary], hours: float, cores: int) -> None:
    """Per stage: steady hours of audio per CPU-hour and setup seconds, for `data run --plan`."""
    stages = {
        s.name: {
            "hours_per_cpu_hour": round(rate(hours, s.seconds - (s.setup_seconds or 0.0), cores), 2),
            "setup_s": round(s.setup_seconds or 0.0, 2),
        }
        for s in local
    }
    meta = {
        "measured_with": "benchmarks/pipeline_throughput.py",
        "audio_s": round(hours * 3600),
        "cores": cores,
    }
    path.write_text(json.dumps({**meta, "stages": stages}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
