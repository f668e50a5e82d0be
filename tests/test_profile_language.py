from __future__ import annotations

import pytest

from speechrole.bench.language import detect_language, official_role_languages, parse_overrides
from speechrole.bench.profile import SCRIPT_INTRO, parse_profile, profile_from_system_prompt, render_profile
from speechrole.schema import Language


def test_profile_round_trip_and_judge_name() -> None:
    text = render_profile("Gregory House", "House-M.D.", "A brilliant, abrasive doctor.")
    assert text.splitlines()[0] == "I want you to act like Gregory House from House-M.D.."
    parsed = parse_profile(text)
    assert parsed is not None
    assert (parsed.name, parsed.work) == ("Gregory House", "House-M.D.")
    # The official judge strips exactly one trailing character from the first line.
    assert parsed.judge_name == "Gregory House from House-M.D."
    assert parsed.persona == "A brilliant, abrasive doctor."


def test_profile_without_convention_is_none() -> None:
    assert parse_profile("You are Sherlock Holmes.") is None


def test_chinese_profile() -> None:
    parsed = parse_profile(render_profile("胡桃", "原神", "往生堂堂主。"))
    assert parsed is not None and (parsed.name, parsed.work, parsed.persona) == (
        "胡桃",
        "原神",
        "往生堂堂主。",
    )


def test_profile_recovered_from_system_prompt() -> None:
    profile = render_profile("Thor", "Thor-Ragnarok", "God of thunder.")
    assert profile_from_system_prompt(profile + SCRIPT_INTRO + "context") == profile
    assert profile_from_system_prompt("no profile here") is None


def test_detect_language() -> None:
    assert detect_language(["What drives you?", "Curiosity."]) is Language.EN
    assert detect_language(["你为什么喜欢写诗？", "诗是我心中的酒。"]) is Language.ZH
    # English text that quotes a Chinese name stays English.
    assert (
        detect_language(["I once met 胡桃 at the parlour and we talked for hours about it."]) is Language.EN
    )


def test_official_role_languages() -> None:
    langs = official_role_languages()
    assert len(langs) == 98
    assert sum(v is Language.ZH for v in langs.values()) == 16
    assert langs["hutao"] is Language.ZH and langs["Luna"] is Language.EN


def test_parse_overrides() -> None:
    assert parse_overrides(["Queen Elizabeth I=zh"]) == {"Queen Elizabeth I": Language.ZH}
    with pytest.raises(ValueError, match="ROLE=en"):
        parse_overrides(["Thor"])
    with pytest.raises(ValueError, match="unknown language"):
        parse_overrides(["Thor=fr"])
