"""Which untouched prompts a correction covers: its own template, numbers and names aside."""

from __future__ import annotations

from app.cycles.untouched import away_pairs, near_any
from app.cycles.untouched import near as _near
from app.cycles.untouched import words as _words


def user(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": text},
    ]


CORRECTED = [_words(user("Leo had 96 apples and gave away 4. How many apples are left?"))]


def test_the_corrected_template_is_covered_whatever_the_numbers_and_names() -> None:
    for text in (
        "Ana had 90 shells and gave away 5. How many shells are left?",
        "Zoe had 262 coins and gave away 36. How many coins are left?",
        "Leo had 96 apples and gave away 4. How many apples are left?",
    ):
        assert _near(_words(user(text)), CORRECTED), text


def test_other_questions_are_not_covered() -> None:
    for text in (
        "Tom shares 180 pens equally among 2 friends. How many pens does each friend get?",
        "Ana has 4 cards, gets 4 more each day for 2 days and then gives away 2. How many cards?",
        "What is 13 times 5?",
        "",
    ):
        assert not _near(_words(user(text)), CORRECTED), text
    assert not _near(_words(user("Leo had 96 apples")), [frozenset()])


def test_an_environment_task_near_a_correction_is_not_anchored() -> None:
    """The KL anchors (the parent's answers to environment tasks) follow the same rule."""
    corrected = [user("Leo had 96 apples and gave away 4. How many apples are left?")]
    assert near_any("Ana had 90 shells and gave away 5. How many shells are left?", corrected)
    assert not near_any("What is 13 times 5?", corrected)
    assert not near_any("Ana had 90 shells and gave away 5.", [])


def _answer(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_each_near_prompt_is_trained_away_from_the_nearest_corrections_answer() -> None:
    times = {"messages": [*user("What is 12 times 5?"), _answer("60")]}
    apples = {
        "messages": [
            *user("Leo had 96 apples and gave away 4. How many apples are left?"),
            _answer("92"),
        ]
    }

    def served(text: str, answer: str) -> dict:
        return {"messages": user(text), "tools": None, "output": _answer(answer)}

    pairs = away_pairs(
        [
            served("What is 7 times 8?", "56"),
            served("Ana had 90 shells and gave away 5. How many shells are left?", "85"),
            served("What is 6 times 10?", "60"),  # served the correction's answer already
            served("Write a haiku about the sea", "waves"),  # near nothing
            {**served("What is 3 times 9?", ""), "output": {"role": "assistant", "content": None}},
        ],
        [times, apples],
    )
    assert [(p["messages"][-1]["content"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("What is 7 times 8?", _answer("56"), _answer("60")),
        (
            "Ana had 90 shells and gave away 5. How many shells are left?",
            _answer("85"),
            _answer("92"),
        ),
    ]
    assert away_pairs([served("What is 7 times 8?", "56")], []) == []
