"""LoRA training throughput and peak memory of the Qwen2.5-Omni thinker, per optimizer step.

The model is randomly initialised (no weights needed): `tiny` is the `speechrole train tiny-model`
architecture, `7b` is Qwen2.5-Omni-7B's thinker at full size (text decoder 3584 x 28 layers, audio encoder
1280 x 32, vision tower 1280 x 32), which needs a GPU. Each step trains on one synthetic dialogue shaped
like SpeechRole-Data: a system prompt, then `--turns` rounds of a user clip (`--seconds` of audio, 25
tokens per second) and a spoken answer's text. The training runs through the same LoRA targets,
collator and Trainer arguments as `speechrole train` (bf16 on a GPU, fp32 on a CPU).

Baseline measured in the same run: the same step with gradient checkpointing on; the ratios show what
checkpointing costs in speed and saves in memory. Each measurement runs in a fresh process, so one's
memory never counts in the other's peak.

    python benchmarks/train_throughput.py                       # tiny, on this machine's CPU
    python benchmarks/train_throughput.py --config 7b --steps 8 # on a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from speechrole.train.encode import IGNORE, Encoded, audio_tokens, collate, feature_frames  # noqa: E402

#: Qwen2.5-Omni-7B's vision tower as its config.json gives it (transformers' defaults differ).
VISION_7B = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
}


def thinker_config(name: str) -> Any:
    from transformers import Qwen2_5OmniThinkerConfig

    if name == "tiny":
        from speechrole.train.tiny import tiny_config, tiny_tokenizer

        return tiny_config(tiny_tokenizer()).thinker_config
    return Qwen2_5OmniThinkerConfig(
        vision_config=VISION_7B, vision_start_token_id=151652, vision_end_token_id=151653
    )


def synthetic(
    config: Any, turns: int, seconds: float, answer_tokens: int, system_tokens: int, seed: int
) -> Encoded:
    """One dialogue: random text ids, audio spans of the encoder's exact length, random log-mel features."""
    rng = np.random.default_rng(seed)
    vocab = config.text_config.vocab_size
    low = 16  # ids below are the tiny vocabulary's special tokens
    text = lambda n: rng.integers(low, min(vocab, 150000), n).tolist()  # noqa: E731
    frames = feature_frames(int(seconds * 16000))
    ids, labels, features = text(system_tokens), [IGNORE] * system_tokens, []
    for _ in range(turns):
        span = [
            config.audio_start_token_id,
            *[config.audio_token_index] * audio_tokens(frames),
            config.audio_end_token_id,
        ]
        answer = text(answer_tokens)
        ids += span + answer
        labels += [IGNORE] * len(span) + answer
        features.append(rng.standard_normal((128, frames)).astype(np.float32))
    return Encoded(ids, labels, features)


def measure(name: str, checkpointing: bool, args: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch
    from transformers import (
        PrinterCallback,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Trainer,
        TrainerCallback,
    )

    from speechrole.train.fit import training_arguments
    from speechrole.train.model import add_lora, dtype_for, quiet_transformers
    from speechrole.train.plan import TrainPlan

    quiet_transformers()
    config = thinker_config(name)
    dtype = dtype_for(device)
    torch.manual_seed(0)
    built = time.perf_counter()
    with torch.device(device):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=dtype)
    built = time.perf_counter() - built
    model = add_lora(
        thinker,
        r=8,
        alpha=16,
        dropout=0.05,
        targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    examples = [
        synthetic(config, args.turns, args.seconds, args.answer_tokens, args.system_tokens, i)
        for i in range(args.steps)
    ]
    plan = TrainPlan(
        model="-",
        data=("-",),
        output="-",
        max_steps=args.steps,
        batch_size=1,
        grad_accum=1,
        save_steps=10**9,
        gradient_checkpointing=checkpointing,
        warmup_ratio=0.0,
        lr=1e-4,
    )
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model=model,
            args=training_arguments(plan, Path(tmp), device, dtype, held_out=False),
            train_dataset=examples,
            data_collator=lambda batch: collate(batch, 0),
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    warm = times[args.warmup :] or times
    step = float(np.median(warm))
    tokens = len(examples[0])
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    row = {
        "config": name,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "gradient_checkpointing": checkpointing,
        "parameters": total,
        "trainable": trainable,
        "tokens_per_step": tokens,
        "step_s": round(step, 4),
        "tokens_per_s": round(tokens / step, 1),
        "peak_memory_gib": round(peak, 2),
        "memory": "CUDA max allocated" if device.startswith("cuda") else "process max RSS (CPU)",
        "build_s": round(built, 1),
    }
    del trainer, model, thinker
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per user turn")
    parser.add_argument("--answer-tokens", type=int, default=60)
    parser.add_argument("--system-tokens", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--one", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.config == "7b" and device == "cpu":
        sys.exit("the 7b config needs a GPU (about 25 GB in bf16); use --config tiny on a CPU")
    if args.one:  # a child process: one measurement, as JSON on the last line
        print(json.dumps(measure(args.config, args.one == "checkpointing", args, device)))
        return
    rows = []
    for mode in ("plain", "checkpointing"):
        forwarded = [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in {"json", "one"}
        ]
        child = subprocess.run(
            [sys.executable, __file__, *forwarded, "--one", mode], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            sys.exit(f"the {mode} measurement failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    plain, ckpt = rows
    for r in rows:
        print(
            f"{r['config']:>4} {r['device']} {r['dtype']} checkpointing={r['gradient_checkpointing']!s:<5} "
            f"{r['parameters'] / 1e6:,.1f}M params ({r['trainable'] / 1e6:.2f}M LoRA) · {r['tokens_per_step']} tokens/step · "
            f"{r['step_s']:.3f} s/step · {r['tokens_per_s']:,.0f} tokens/s · peak {r['peak_memory_gib']:.2f} GiB ({r['memory']})"
        )
    print(
        f"gradient checkpointing vs none: speed x{ckpt['tokens_per_s'] / plain['tokens_per_s']:.2f}, "
        f"peak memory x{ckpt['peak_memory_gib'] / plain['peak_memory_gib']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
