"""`speechrole train`: LoRA on the thinker with the transformers Trainer, resumable, with its records.

The output folder holds:
- `plan.yaml` (the plan as run) and `state.json` (digests of the plan, the data and the base model: a
  later run resumes only while all three are unchanged, and refuses otherwise);
- `data.json`: sources and their digest, examples read, excluded, held out, dropped (too long for
  `max_length`, a clip past the encoder's window, an unreadable clip) with the reason of each;
- `checkpoints/checkpoint-N/` (the Trainer's, adapter + optimizer + scheduler + RNG state): a killed run
  started again resumes from the last one;
- `loss.json`: the Trainer's log history (train loss per logging step, eval loss per epoch), rewritten
  at every checkpoint;
- `adapter/` (the trained LoRA adapter) and `train.json` (steps, time, tokens/s, losses, versions).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speechrole.fileio import write_json_atomic, write_text_atomic
from speechrole.problems import DataError, Problem
from speechrole.train.data import Example, data_digest, exclude, official_role_ids, read_source, split
from speechrole.train.encode import ChatEncoder, ClipTooLongError, Encoded, collate, feature_frames
from speechrole.train.model import adapter_digest, add_lora, model_digest, model_folder
from speechrole.train.plan import TrainPlan

Note = Callable[[str], None]


@dataclass
class Prepared:
    """The examples to train and evaluate on, and what happened to the others."""

    train: list[Example]
    held_out: list[Example]
    lengths: dict[str, int]
    record: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)


def prepare(plan: TrainPlan, encoder: ChatEncoder) -> Prepared:
    """Read the sources, apply exclusions and the split, and measure every example in tokens: one longer
    than `max_length`, or with a clip the encoder cannot take whole, is dropped and counted."""
    examples: list[Example] = []
    problems: list[Problem] = []
    sources = [Path(d).expanduser() for d in plan.data]
    for path in sources:
        try:
            found, bad = read_source(path)
        except DataError as exc:
            raise DataError(exc.problem.file, "data", exc.problem.reason) from None
        examples += found
        problems += bad
    read = len(examples)
    roles = official_role_ids() if plan.exclude_roles == "official" else set(plan.exclude_roles)
    answers: list[str] = []
    if plan.exclude_dialogues_of:
        from speechrole.bench import load_benchmark

        bench, _ = load_benchmark(plan.exclude_dialogues_of)
        answers = [t.reference_text for s in bench.samples for t in s.turns]
    examples, excluded = exclude(examples, roles, answers)
    train, held_out = split(
        examples,
        by=plan.split.by,
        fraction=plan.split.fraction,
        seed=plan.seed,
        eval_roles=plan.split.eval_roles,
    )
    lengths: dict[str, int] = {}
    dropped: list[dict[str, str]] = []
    frames: dict[Path, int] = {}
    for ex in (*train, *held_out):
        try:
            for clip in ex.audios:
                if clip not in frames:
                    frames[clip] = feature_frames(len(ChatEncoder.load_clip(clip)))
            n = len(
                encoder.encode_frames(ex.messages, [frames[c] for c in ex.audios], train_on=plan.train_on)
            )
        except (ClipTooLongError, DataError) as exc:
            reason = exc.problem.describe() if isinstance(exc, DataError) else str(exc)
            dropped.append({"id": ex.id, "source": ex.source, "why": "clip", "reason": reason})
            continue
        if n > plan.max_length:
            dropped.append(
                {
                    "id": ex.id,
                    "source": ex.source,
                    "why": "too long",
                    "reason": f"{n} tokens > max_length {plan.max_length}",
                }
            )
            continue
        lengths[ex.id] = n
    train = [ex for ex in train if ex.id in lengths]
    held_out = [ex for ex in held_out if ex.id in lengths]
    if not train:
        raise DataError("data", "", f"no example left to train on ({read} read, {len(dropped)} dropped)")
    record = {
        "sources": [str(p) for p in sources],
        "digest": data_digest(sources, (*train, *held_out)),
        "read": read,
        "excluded": excluded,
        "excluded_roles": "official (98 SpeechRole-Eval roles)"
        if plan.exclude_roles == "official"
        else sorted(roles),
        "split": plan.split.model_dump(mode="json"),
        "train": len(train),
        "held_out": len(held_out),
        "train_roles": sorted({ex.role for ex in train}),
        "held_out_roles": sorted({ex.role for ex in held_out}),
        "dropped": len(dropped),
        "dropped_too_long": sum(d["why"] == "too long" for d in dropped),
        "dropped_examples": dropped,
        "problems": [p.to_dict() for p in problems],
        "tokens": {
            "train": sum(lengths[ex.id] for ex in train),
            "held_out": sum(lengths[ex.id] for ex in held_out),
        },
    }
    return Prepared(train, held_out, lengths, record, problems)


class EncodedDataset:
    """Examples encoded on demand (clips decoded each time: features are never all held in memory)."""

    def __init__(self, examples: Sequence[Example], encoder: ChatEncoder, train_on: str) -> None:
        self.examples, self.encoder, self.train_on = list(examples), encoder, train_on

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Encoded:
        ex = self.examples[index]
        clips = [self.encoder.load_clip(c) for c in ex.audios]
        return self.encoder.encode(ex.messages, clips, train_on=self.train_on)  # type: ignore[arg-type]


def _state(plan: TrainPlan, prepared: Prepared, base: Path) -> dict[str, str]:
    return {"plan": plan.digest(), "data": prepared.record["digest"], "model": model_digest(base)}


def check_resume(out: Path, state: dict[str, str], restart: bool) -> Path | None:
    """The checkpoint to resume from, if the folder was trained with the same plan, data and model;
    a changed input is refused (or, with `restart`, the old checkpoints are removed)."""
    saved = out / "state.json"
    checkpoints = out / "checkpoints"
    if restart:
        for stale in (checkpoints, out / "adapter"):
            if stale.exists():
                shutil.rmtree(stale)
        return None
    if saved.is_file() and checkpoints.is_dir():
        old = json.loads(saved.read_text(encoding="utf-8"))
        changed = [k for k in state if old.get(k) != state[k]]
        if changed:
            raise DataError(
                out,
                "state.json",
                f"this folder was trained with another {' and '.join(changed)}: use --restart to start over, "
                "or another output folder",
            )
        return last_checkpoint(checkpoints)
    return None


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The latest complete checkpoint (the Trainer writes trainer_state.json last); a later one that a
    kill left half-written is removed."""
    steps = sorted(
        (int(p.name.rpartition("-")[2]), p)
        for p in checkpoints.glob("checkpoint-*")
        if p.name.rpartition("-")[2].isdigit()
    )
    complete = [(n, p) for n, p in steps if (p / "trainer_state.json").is_file()]
    if not complete:
        return None
    last_step, last = complete[-1]
    for n, p in steps:
        if n > last_step:
            shutil.rmtree(p)
    return last


def make_callbacks(out: Path, note: Note) -> list[Any]:
    """Progress lines (loss, tokens/s, ETA) and `loss.json` written at every checkpoint and at the end."""
    from transformers import TrainerCallback

    class Records(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.step0 = 0
            self.tokens0 = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.t0, self.step0, self.tokens0 = (
                time.perf_counter(),
                state.global_step,
                state.num_input_tokens_seen,
            )

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any
        ) -> None:
            logs = logs or {}
            elapsed = time.perf_counter() - self.t0
            steps = state.global_step - self.step0
            rate = (state.num_input_tokens_seen - self.tokens0) / elapsed if elapsed > 0 else 0.0
            eta = (state.max_steps - state.global_step) * elapsed / steps if steps else float("nan")
            if "loss" in logs:
                note(
                    f"step {state.global_step}/{state.max_steps} · epoch {state.epoch:.2f} · loss {logs['loss']:.4f} · "
                    f"{rate:,.0f} tokens/s · ETA {eta:.0f} s"
                )
            if "eval_loss" in logs:
                note(
                    f"step {state.global_step} · epoch {state.epoch:.2f} · eval loss {logs['eval_loss']:.4f}"
                )

        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            write_json_atomic(out / "loss.json", state.log_history)

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            write_json_atomic(out / "loss.json", state.log_history)

    return [Records()]


def training_arguments(plan: TrainPlan, checkpoints: Path, device: str, dtype: Any, *, held_out: bool) -> Any:
    """The Trainer's arguments for a plan (shared with benchmarks/train_throughput.py)."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=plan.epochs,
        max_steps=plan.max_steps,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        learning_rate=plan.lr,
        optim=plan.optimizer,
        lr_scheduler_type=plan.scheduler,
        warmup_steps=plan.warmup_ratio,  # below 1: a fraction of the steps (transformers 5)
        weight_decay=plan.weight_decay,
        max_grad_norm=plan.max_grad_norm,
        gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if plan.gradient_checkpointing else None,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=plan.save_steps,
        save_total_limit=plan.save_total_limit,
        eval_strategy="epoch" if held_out else "no",
        logging_steps=plan.logging_steps,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=plan.workers,
        report_to=[],
        disable_tqdm=True,
        seed=plan.seed,
        data_seed=plan.seed,
    )


def train(plan: TrainPlan, *, restart: bool = False, note: Note = print) -> dict[str, Any]:
    """Train a LoRA adapter on the thinker as the plan says; returns what `train.json` records."""
    import peft
    import torch
    import transformers
    from transformers import PrinterCallback, Trainer

    from speechrole.train.model import dtype_for, load_thinker, quiet_transformers

    quiet_transformers()
    base = model_folder(plan.model)
    out = plan.output_dir()
    encoder = ChatEncoder.from_pretrained(base)
    prepared = prepare(plan, encoder)
    for problem in prepared.problems:
        note(f"skipped: {problem.describe()}")
    rec = prepared.record
    note(
        f"{rec['read']} examples read · excluded {sum(rec['excluded'].values())} · train {rec['train']} · "
        f"held out {rec['held_out']} · dropped {rec['dropped']} ({rec['dropped_too_long']} longer than "
        f"max_length {plan.max_length})"
    )
    out.mkdir(parents=True, exist_ok=True)
    state = _state(plan, prepared, base)
    resume = check_resume(out, state, restart)
    write_text_atomic(
        out / "plan.yaml", yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    )
    write_json_atomic(out / "state.json", state)
    write_json_atomic(out / "data.json", rec)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = dtype_for(device, plan.precision)
    thinker = load_thinker(base, device=device, precision=plan.precision)
    transformers.set_seed(plan.seed)  # LoRA's initial weights, whatever ran before in this process
    model = add_lora(
        thinker, r=plan.lora.r, alpha=plan.lora.alpha, dropout=plan.lora.dropout, targets=plan.lora.targets
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    note(
        f"LoRA r={plan.lora.r}: {trainable:,} trainable of {total:,} parameters ({device}, {str(dtype).removeprefix('torch.')})"
    )
    held_out = bool(prepared.held_out)
    args = training_arguments(plan, out / "checkpoints", device, dtype, held_out=held_out)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=EncodedDataset(prepared.train, encoder, plan.train_on),
        eval_dataset=EncodedDataset(prepared.held_out, encoder, plan.train_on) if held_out else None,
        data_collator=lambda batch: collate(batch, encoder.pad),
        callbacks=make_callbacks(out, note),
    )
    trainer.remove_callback(PrinterCallback)  # our callback prints the progress lines
    if resume:
        note(f"resuming from {resume.name}")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    history = trainer.state.log_history
    if held_out and not any("eval_loss" in h and h.get("step") == trainer.state.global_step for h in history):
        trainer.evaluate()  # a run stopped by max_steps mid-epoch still ends with a held-out loss
        history = trainer.state.log_history
    write_json_atomic(out / "loss.json", history)
    model.save_pretrained(out / "adapter")
    summary = {
        "base_model": str(base.resolve()),
        "adapter": str((out / "adapter").resolve()),
        "adapter_sha256": adapter_digest(out / "adapter"),
        "steps": trainer.state.global_step,
        "resumed_from": resume.name if resume else None,
        "seconds": round(seconds, 2),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train_loss": result.training_loss,
        "losses": [h["loss"] for h in history if "loss" in h],
        "eval_losses": [
            {"epoch": h["epoch"], "step": h["step"], "loss": h["eval_loss"]}
            for h in history
            if "eval_loss" in h
        ],
        "trainable_parameters": trainable,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "state": state,
    }
    write_json_atomic(out / "train.json", summary)
    return summary
