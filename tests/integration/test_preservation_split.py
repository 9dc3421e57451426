"""What a cycle keeps and what it checks: the untouched traffic it reads and how it splits it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.cycles.untouched import (
    PRESERVE_HOLDBACK,
    PRESERVE_NEAR,
    PRESERVE_NEAR_TRAIN,
    PRESERVE_TRAIN,
    PRESERVE_WINDOW,
    split_untouched,
)
from tests.helpers import factories


def test_newest_window_split_into_kl_rows_and_a_held_back_third(db: Session) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(PRESERVE_WINDOW + 20):  # 20 older than the window
        row = factories.interaction(db, owner, bot, f"untouched {i}")
        row.prompt_token_ids, row.completion_token_ids = [1, 2, i], [4, 5]
        row.completed_at, row.error = start, None
        row.created_at = start + timedelta(seconds=i)
        rows.append(row)
    db.flush()

    split = split_untouched(db, owner.id, bot.id, [])
    train, held = split.kl_rows, split.held_back

    newest_first = list(reversed(rows[-PRESERVE_WINDOW:]))
    expected_held = [r for r in newest_first if r.id.int % 3 == 0][:PRESERVE_HOLDBACK]
    assert [h["messages"] for h in held] == [r.request["messages"] for r in expected_held]
    assert len(held) > PRESERVE_HOLDBACK // 2  # about a third of 192
    # The KL rows: the newest interactions not held back, newest first, with their tokens.
    expected_train = [r for r in newest_first if r.id.int % 3 != 0][:PRESERVE_TRAIN]
    assert train == [
        {"prompt_token_ids": r.prompt_token_ids, "completion_token_ids": r.completion_token_ids}
        for r in expected_train
    ]
    assert split.near == [] and split.near_seen == 0

    # A correction whose words (numbers aside) are the same is near every one of these
    # prompts: none trains the KL term or counts for agreement. The newest with an even id
    # train away from the copy, with the answer they were served; the newest others are held
    # back for the copy check.
    corrected = [[{"role": "user", "content": "untouched 9999"}]]
    near = split_untouched(db, owner.id, bot.id, corrected)
    assert near.kl_rows == [] and near.held_back == []
    assert near.near_seen == PRESERVE_WINDOW
    away = [r for r in newest_first if r.id.int % 2 == 0][:PRESERVE_NEAR_TRAIN]
    assert [p["messages"] for p in near.near_train] == [r.request["messages"] for r in away]
    assert all(p["output"]["role"] == "assistant" for p in near.near_train)
    checked = [r for r in newest_first if r not in away][:PRESERVE_NEAR]
    assert [p["messages"] for p in near.near] == [r.request["messages"] for r in checked]
    # The corrected conversation itself is neither checked nor trained.
    own = [rows[-1].request["messages"]]
    assert rows[-1].request["messages"] not in [
        p["messages"]
        for p in split_untouched(db, owner.id, bot.id, own).near
        + split_untouched(db, owner.id, bot.id, own).held_back
    ]
