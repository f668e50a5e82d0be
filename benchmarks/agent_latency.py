"""Per-stage latency of the offline cascade (whisper tiny.en -> SmolLM2-135M -> voice bank), streaming
against non-streaming, over a fixed set of spoken turns.

Streaming cuts the LLM's text at sentence boundaries and speaks each sentence as it comes; the figure
that matters is the time to first audio (from the end of the user's turn to the first spoken sample),
set against the non-streaming time to the full answer, both measured here in the same run.

    python benchmarks/agent_latency.py [--turns 6] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechrole.agents.base import TurnRequest  # noqa: E402
from speechrole.agents.cascaded import CascadedAgent  # noqa: E402
from speechrole.agents.tts import DEFAULT_BANK, synthesize_with  # noqa: E402
from speechrole.audio import write_wav  # noqa: E402
from speechrole.bench.profile import SCRIPT_INTRO, render_profile  # noqa: E402
from speechrole.schema import Language, Mode, Role, Sample, Turn  # noqa: E402

QUESTIONS = (
    "Holmes, how did you know I had been in Afghanistan?",
    "What do you make of the muddy boots by the door?",
    "Why do you keep a violin if you hardly play it for company?",
    "Tell me, what is the most dangerous case you ever took?",
    "How do you decide whether a clue is worth your time?",
    "What would you do if Moriarty walked into this room right now?",
    "Do you ever regret not choosing a quieter profession?",
    "What is the first thing you notice about a stranger?",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    profile = render_profile(
        "Sherlock Holmes", "A-Study-in-Scarlet", "A consulting detective in London, sharp and vain."
    )
    role = Role(
        id="Holmes", name="Sherlock Holmes", work="A-Study-in-Scarlet", language=Language.EN, profile=profile
    )
    user_voice = next(v for v in DEFAULT_BANK if v.id == "espeak:en-us+m3")
    llm = {"name": "smollm2", "max_new_tokens": args.max_new_tokens}
    agents = {
        "non-streaming": CascadedAgent(
            asr="whisper-tiny-en", llm=llm, tts="voicebank", hint="Answer in character."
        ),
        "streaming": CascadedAgent(
            asr="whisper-tiny-en", llm=llm, tts="voicebank", hint="Answer in character.", streaming=True
        ),
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in agents}
    with tempfile.TemporaryDirectory() as tmp:
        for i, question in enumerate(QUESTIONS[: args.turns]):
            audio = Path(tmp) / f"user{i}.wav"
            write_wav(audio, *synthesize_with(user_voice, question))
            sample = Sample(
                role=role.id,
                mode=Mode.SINGLE,
                index=i,
                turns=(Turn(user_text=question, reference_text=""),),
                system_prompt=profile + SCRIPT_INTRO + "Holmes at Baker Street.",
            )
            for name, agent in agents.items():
                request = TurnRequest(role, sample, 0, (), question, audio, Path(tmp) / f"{name}{i}.wav")
                rows[name].append(agent.reply(request).latency_s)
    print(
        f"offline cascade, {args.turns} turns, up to {args.max_new_tokens} new tokens; medians in seconds\n"
    )
    print(f"{'mode':15s} {'asr':>6s} {'llm':>6s} {'tts':>6s} {'first audio':>12s} {'total':>7s}")
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("asr", "llm", "tts", "first_audio", "total")}
        for name, rs in rows.items()
    }
    for name, m in med.items():
        print(
            f"{name:15s} {m['asr']:6.2f} {m['llm']:6.2f} {m['tts']:6.2f} {m['first_audio']:12.2f} {m['total']:7.2f}"
        )
    ratio = med["streaming"]["first_audio"] / med["non-streaming"]["total"]
    per_turn = [
        s["first_audio"] / n["total"] for s, n in zip(rows["streaming"], rows["non-streaming"], strict=True)
    ]
    print(
        f"\nstreaming time to first audio / non-streaming time to full answer: {ratio:.2f} (target <= 0.50)"
    )
    print("per turn: " + ", ".join(f"{r:.2f}" for r in per_turn))


if __name__ == "__main__":
    main()
