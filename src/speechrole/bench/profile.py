"""Role profiles in the official format.

A profile's first line is load-bearing: `I want you to act like {Name} from {Work}.` The official
judge takes the text after the prefix minus its last character as the role name shown to the judge
("Gregory House from House-M.D.."  ->  "Gregory House from House-M.D."); the data scripts split it
on " from " into name and work. We do both and keep the judge's string too.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "I want you to act like "
#: The official system prompt is `profile + SCRIPT_INTRO + context` (see the research notes, section 1.4).
SCRIPT_INTRO = (
    "\n\nThe character script below contains context that may relate to the questions. "
    "Please consider it as a helpful reference when formulating your answers:\n[Character script]\n\n"
)
INSTRUCTION_LINES = (
    "If others' questions are related with the novel, please try to reuse the original lines from the novel.",
    "I want you to respond and answer like {name} using the tone, manner and vocabulary {name} would use.",
    "You must know all of the knowledge of {name}.",
)


@dataclass(frozen=True)
class ParsedProfile:
    name: str
    work: str
    judge_name: str  # "{Name} from {Work}", exactly as the official judge derives it
    persona: str  # the free text after the fixed instruction lines


def parse_profile(text: str) -> ParsedProfile | None:
    """Parse a profile; None when its first line does not follow the official convention."""
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0].strip().lstrip("\ufeff")
    if not first.startswith(PREFIX):
        return None
    judge_name = first[len(PREFIX) :][:-1] if first.endswith(".") else first[len(PREFIX) :]
    name, sep, work = judge_name.partition(" from ")
    persona_start = 1
    for fixed in INSTRUCTION_LINES:
        if persona_start < len(lines) and lines[persona_start].strip() == fixed.format(name=name.strip()):
            persona_start += 1
    return ParsedProfile(
        name=name.strip(),
        work=work.strip() if sep else "",
        judge_name=judge_name.strip(),
        persona="\n".join(lines[persona_start:]).strip(),
    )


def profile_from_system_prompt(system_prompt: str) -> str | None:
    """Recover the profile text embedded at the start of an official system prompt."""
    if not system_prompt.startswith(PREFIX):
        return None
    head, sep, _ = system_prompt.partition(SCRIPT_INTRO)
    return head if sep else None


def render_profile(name: str, work: str, persona: str) -> str:
    """Write a profile in the official format (used by the bundled benchmark and the data pipeline)."""
    header = [f"{PREFIX}{name} from {work}.", *(line.format(name=name) for line in INSTRUCTION_LINES)]
    return "\n".join([*header, persona.strip()])
