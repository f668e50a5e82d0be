"""Decide a role's language (English or Chinese) from its text, with user overrides."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib import resources

import yaml

from speechrole.schema import Language

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")

#: Above this share of Han characters among letters, a role is Chinese. Chinese roles in the official
#: data still carry English instruction lines, so the share is well below 1 for them (about 0.6 and up)
#: while English roles sit near 0 (a quoted Chinese name at most).
HAN_SHARE_THRESHOLD = 0.3


def detect_language(texts: Iterable[str]) -> Language:
    han = latin = 0
    for text in texts:
        han += len(_HAN.findall(text))
        latin += len(_LATIN.findall(text))
    # Latin letters are counted per letter, Han characters per word-ish unit: weight Han up so that
    # "one Han character ~ one short word" and a mostly-Chinese text wins clearly.
    weighted = 4 * han
    total = weighted + latin
    return Language.ZH if total and weighted / total > HAN_SHARE_THRESHOLD else Language.EN


@cache
def official_role_languages() -> dict[str, Language]:
    """Languages of the 98 official SpeechRole-Eval roles, for scoring result trees without test data."""
    text = resources.files("speechrole.data").joinpath("official_roles.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return {role: Language(lang) for lang, roles in data["languages"].items() for role in roles}


def parse_overrides(pairs: Iterable[str]) -> dict[str, Language]:
    """Parse `ROLE=en|zh` strings (CLI `--language`)."""
    out: dict[str, Language] = {}
    for pair in pairs:
        role, sep, lang = pair.rpartition("=")
        if not sep or not role:
            raise ValueError(f"expected ROLE=en|zh, got {pair!r}")
        try:
            out[role] = Language(lang.strip().lower())
        except ValueError:
            raise ValueError(f"unknown language {lang!r} for role {role!r} (use en or zh)") from None
    return out
