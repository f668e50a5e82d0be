"""Exports of the verified dialogues: the official SpeechRole layout (usable as `eval --bench`),
chat-format JSONL for fine-tuning omni speech models, lhotse manifests and a Hugging Face dataset."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechrole.bench.profile import SCRIPT_INTRO, render_profile
from speechrole.fileio import write_json_atomic, write_text_atomic
from speechrole.pipeline.stage import Context, Row, Stage, register

MODES = {"single": "single", "multi": "multi"}


def system_prompt(row: Row) -> str:
    p = row["profile"]
    return (
        render_profile(p.get("name") or row["role"], p.get("work", ""), p.get("persona", ""))
        + SCRIPT_INTRO
        + row["context"]
    )


def export_speechrole(rows: list[Row], out: Path) -> None:
    """The official layout: role_profiles/, role_voices/ (clip + audios_text.json), test_data/."""
    by_role: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["role"], r["kind"], r["id"])):
        by_role[row["role"]].append(row)
    transcripts = {}
    for role, dialogues in by_role.items():
        first = dialogues[0]
        p = first["profile"]
        profile = render_profile(p.get("name") or role, p.get("work", ""), p.get("persona", ""))
        write_text_atomic(out / "role_profiles" / f"{role}_profile.txt", profile)
        (out / "role_voices").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first["ref_audio_path"], out / "role_voices" / f"{role}.wav")
        transcripts[role] = first["ref_text"]
        for mode in MODES:
            samples = []
            for i, row in enumerate(d for d in dialogues if d["kind"] == mode):
                dialogue = []
                for j, turn in enumerate(row["turns"]):
                    base = f"test_data/{mode}_turn_speech/{role}/{i + 1}_{role}_0_{j}"
                    for side, rel in (("user", f"{base}_user.wav"), ("role", f"{base}_role.wav")):
                        (out / rel).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(turn[f"{side}_audio"], out / rel)
                    dialogue.append(
                        {
                            "user": turn["user"],
                            "role": turn["role"],
                            "user_speech_path": f"{base}_user.wav",
                            "role_speech_path": f"{base}_role.wav",
                        }
                    )
                samples.append(
                    {
                        "dialogue": dialogue,
                        "context": row["context"],
                        "system_prompt": system_prompt(row),
                        "category": "generated",
                        "id": row["id"],
                    }
                )
            if samples:
                write_json_atomic(out / "test_data" / f"{mode}_turn" / f"{role}.json", samples)
    write_json_atomic(out / "role_voices" / "audios_text.json", transcripts)


def export_chat(rows: list[Row], out: Path) -> None:
    """One JSONL line per dialogue: `messages` with an `<audio>` placeholder per user turn and the role's
    answers as assistant text, `audios` (the user turns' clips, in order) and `assistant_audios`."""
    lines = []
    for row in sorted(rows, key=lambda r: r["id"]):
        messages = [{"role": "system", "content": system_prompt(row)}]
        for turn in row["turns"]:
            messages += [
                {"role": "user", "content": "<audio>"},
                {"role": "assistant", "content": turn["role"]},
            ]
        lines.append(
            json.dumps(
                {
                    "id": row["id"],
                    "role": row["role"],
                    "messages": messages,
                    "audios": [t["user_audio"] for t in row["turns"]],
                    "assistant_audios": [t["role_audio"] for t in row["turns"]],
                },
                ensure_ascii=False,
            )
        )
    write_text_atomic(out / "chat.jsonl", "\n".join(lines) + "\n")


def _utterances(rows: list[Row]) -> list[dict[str, object]]:
    out = []
    for row in sorted(rows, key=lambda r: r["id"]):
        for j, turn in enumerate(row["turns"]):
            for side in ("user", "role"):
                out.append(
                    {
                        "id": f"{row['id']}-{j}-{side}",
                        "dialogue_id": row["id"],
                        "turn": j,
                        "side": side,
                        "speaker": row["role"] if side == "role" else "user",
                        "text": turn[side],
                        "audio": turn[f"{side}_audio"],
                        "language": row["language"],
                        "role": row["role"],
                    }
                )
    return out


def export_lhotse(rows: list[Row], out: Path) -> None:
    """lhotse RecordingSet and SupervisionSet (one recording per utterance; speaker = role or `user`)."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    for u in _utterances(rows):
        rec = Recording.from_file(str(u["audio"]), recording_id=str(u["id"]))
        recordings.append(rec)
        supervisions.append(
            SupervisionSegment(
                id=str(u["id"]),
                recording_id=rec.id,
                start=0.0,
                duration=rec.duration,
                text=str(u["text"]),
                speaker=str(u["speaker"]),
                language=str(u["language"]),
                custom={
                    "dialogue_id": u["dialogue_id"],
                    "turn": u["turn"],
                    "side": u["side"],
                    "role": u["role"],
                },
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    RecordingSet.from_recordings(recordings).to_file(out / "recordings.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(out / "supervisions.jsonl.gz")


def export_hf(rows: list[Row], out: Path) -> None:
    """A Hugging Face `datasets` dataset (saved to disk) with an Audio column holding the clips' bytes."""
    from datasets import Audio, Dataset, disable_progress_bars

    disable_progress_bars()  # its bars would break the pipeline's progress display
    utterances = _utterances(rows)
    columns = {
        k: [u[k] for u in utterances]
        for k in ("id", "dialogue_id", "turn", "side", "speaker", "text", "language", "role")
    }
    columns["audio"] = [
        {"bytes": Path(str(u["audio"])).read_bytes(), "path": Path(str(u["audio"])).name} for u in utterances
    ]
    dataset = Dataset.from_dict(columns).cast_column("audio", Audio(decode=False))
    dataset.save_to_disk(str(out))


EXPORTERS: dict[str, Callable[[list[Row], Path], None]] = {
    "speechrole": export_speechrole,
    "chat": export_chat,
    "lhotse": export_lhotse,
    "hf": export_hf,
}


@register
class Export(Stage):
    """Write the dialogues in the chosen formats: speechrole (official layout), chat, lhotse, hf."""

    name = "export"
    known = frozenset({"out", "formats"})
    per = "all"
    reads = frozenset(
        {"role", "profile", "kind", "turns", "context", "ref_audio_path", "ref_text", "language"}
    )
    writes = frozenset()

    def check(self, config: dict[str, Any]) -> str | None:
        unknown = sorted(set(self.formats()) - set(EXPORTERS))
        return f"export formats {unknown}: use {sorted(EXPORTERS)}" if unknown else None

    def target(self, ctx: Context) -> Path:
        """The folder the exports go to (one subfolder per format)."""
        return Path(ctx.config.get("base_dir", ".")) / str(self.options.get("out", ctx.work_dir / "export"))

    def setup(self, ctx: Context) -> None:
        self.out = self.target(ctx)

    def formats(self) -> list[str]:
        return list(self.options.get("formats", ["speechrole", "chat"]))

    def process_batch(self, rows: list[Row]) -> list[Row]:
        for fmt in self.formats():  # each export is built aside, then swapped in whole: a failure
            target = self.out / fmt  # leaves the previous one as it was, never a mix of the two
            building, old = self.out / f".{fmt}.building", self.out / f".{fmt}.old"
            for stale in (building, old):
                if stale.exists():
                    shutil.rmtree(stale)
            EXPORTERS[fmt](rows, building)
            if target.exists():
                target.rename(old)
            building.rename(target)
            if old.exists():
                shutil.rmtree(old)
        return rows
