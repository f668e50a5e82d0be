"""Judge throughput: a benchmark-sized run (392 samples) against a local server with a fixed latency.

Prints wall time against the ideal (samples x latency / concurrency) and against a one-at-a-time loop
(concurrency 1, measured in the same run), the peak memory of this process, and how many requests a
rerun makes. The server runs in a separate process so that its work is not counted as the judge's.

    python benchmarks/judge_throughput.py [--latency 0.2] [--concurrency 32] [--repeats 3] [--serial-samples 392]

The concurrent run is repeated (each time from scratch: new log, empty cache) and the median is
reported, since a shared 2-core machine is noisy; every repeat's time is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechrole.bench import load_benchmark  # noqa: E402
from speechrole.bench.profile import SCRIPT_INTRO, render_profile  # noqa: E402
from speechrole.judge.runner import JudgeConfig, JudgeRun, JudgeTarget  # noqa: E402

ROLES, TURNS = 98, {"single": (1, 1), "multi": (2, 3)}


def make_run(root: Path, clip_seconds: float) -> tuple[Path, Path]:
    """98 roles x (2 single-turn + 2 multi-turn samples) = 392 samples, one distinct clip per turn and side."""
    bench, run = root / "bench", root / "run"
    rng = np.random.default_rng(0)
    n = int(clip_seconds * 16000)
    for r in range(ROLES):
        role = f"role{r:02d}"
        profile = render_profile(f"Role {r}", "Bench", "A test persona.")
        for mode, counts in TURNS.items():
            samples, outputs = [], {"role": role}
            for i, turns in enumerate(counts):
                dialogue, out = [], []
                for j in range(turns):
                    ref = f"test_data/{mode}_turn_speech/{role}/{i}_{j}_role.wav"
                    gen = f"model_output/{mode}_result/audio/{role}/{role}_{i}_{j}.wav"
                    for base, rel in ((bench, ref), (run, gen)):
                        (base / rel).parent.mkdir(parents=True, exist_ok=True)
                        sf.write(
                            base / rel,
                            (0.1 * rng.standard_normal(n)).astype(np.float32),
                            16000,
                            subtype="PCM_16",
                        )
                    dialogue.append({"user": f"Question {j}?", "role": "An answer.", "role_speech_path": ref})
                    out.append(
                        {
                            "turn": j,
                            "user_input": {"text": f"Question {j}?"},
                            "model_output": {"text": "Hi.", "audio_path": gen},
                        }
                    )
                system_prompt = profile + SCRIPT_INTRO + "context"
                samples.append(
                    {
                        "dialogue": dialogue,
                        "context": "context",
                        "system_prompt": system_prompt,
                        "category": "c",
                    }
                )
                outputs[f"dialogue_{i}"] = out
            for base, rel, data in (
                (bench, f"test_data/{mode}_turn/{role}.json", samples),
                (run, f"model_output/{mode}_result/json/{role}.json", outputs),
            ):
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                (base / rel).write_text(json.dumps(data), encoding="utf-8")
    return bench, run


def fresh_run(run: Path, name: str) -> Path:
    """A new run directory over the same outputs: the judge starts from nothing there."""
    fresh = run.parent / name
    fresh.mkdir()
    (fresh / "model_output").symlink_to(run / "model_output")
    return fresh


def stats(url: str) -> dict:
    with urllib.request.urlopen(url.replace("/v1", "/stats")) as resp:
        return json.loads(resp.read())


def judge_once(
    bench,
    run: Path,
    url: str,
    cache: Path,
    concurrency: int,
    limit: int | None = None,
    protocol: str = "official",
) -> tuple[float, object]:
    config = JudgeConfig(
        model="bench-judge",
        base_url=url,
        concurrency=concurrency,
        cache_path=cache,
        limit=limit,
        protocol=protocol,
    )
    started = time.perf_counter()
    outcome = asyncio.run(JudgeRun(bench, JudgeTarget.for_run(run), config).run())
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clip-seconds", type=float, default=1.0)
    parser.add_argument("--serial-samples", type=int, default=392, help="samples for the one-at-a-time loop")
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeats of the concurrent run (median reported)"
    )
    parser.add_argument(
        "--protocol", default="official", help="official (1 call a sample), swap (2), per-metric (8)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bench_root, run = make_run(tmp_path, args.clip_seconds)
        bench, _ = load_benchmark(bench_root)
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.judge_server", str(args.latency), "--lean"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().split(" on ")[1].split()[0]  # type: ignore[union-attr]
            n = len(bench.samples)
            walls = []
            for r in range(args.repeats):
                fresh = fresh_run(run, f"repeat{r}")
                wall, outcome = judge_once(
                    bench, fresh, url, tmp_path / f"cache{r}.sqlite", args.concurrency, protocol=args.protocol
                )
                walls.append(wall)
            wall = sorted(walls)[len(walls) // 2]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            requests_first = stats(url)["requests"]
            _, again = judge_once(
                bench, fresh, url, tmp_path / f"cache{r}.sqlite", args.concurrency, protocol=args.protocol
            )
            rerun_requests = stats(url)["requests"] - requests_first
            k = min(args.serial_samples, n)
            serial = fresh_run(run, "serial")
            serial_wall, _ = judge_once(
                bench, serial, url, tmp_path / "serial.sqlite", 1, limit=k, protocol=args.protocol
            )
            serial_full = serial_wall * n / k
            max_in_flight = stats(url)["max_in_flight"]
        finally:
            server.terminate()
    calls = outcome.planned  # type: ignore[attr-defined]
    ideal = calls * args.latency / args.concurrency
    print(
        f"samples: {n} · latency {args.latency:.3f} s · concurrency {args.concurrency} · clips {args.clip_seconds} s"
    )
    print(
        f"scored {outcome.scored}, unscored {outcome.unscored}, requests {outcome.requests}, server max in flight {max_in_flight}"
    )  # type: ignore[attr-defined]
    print(f"wall time (median):   {wall:7.2f} s   (repeats: {', '.join(f'{w:.2f}' for w in walls)})")
    print(
        f"ideal (calls x latency / concurrency): {ideal:.2f} s -> wall / ideal = {wall / ideal:.2f} (target <= 1.30)"
    )
    label = "one-at-a-time:" if k == n else f"one-at-a-time ({k} samples, scaled to {n}):"
    print(f"{label:22s}{serial_full:7.2f} s   -> speed-up = {serial_full / wall:.1f}x (target >= 20x)")
    print(f"peak memory (RSS):    {peak_mb:7.1f} MB  (target < 500)")
    print(
        f"rerun requests:       {rerun_requests:7d}     (target 0; rerun took its answers from the log: {again.from_log})"
    )  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
