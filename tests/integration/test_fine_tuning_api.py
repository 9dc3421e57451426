"""The Files and fine-tuning APIs through the official `openai` SDK, unmodified: uploads
checked line by line, OpenAI-shaped errors, jobs created, listed, paged and cancelled,
another tenant's files, jobs and models answering 404. (Training a job to its end, and
chatting with what it made, is tests/e2e/test_fine_tuning.py.)"""

from __future__ import annotations

import io
import json

import openai
import pytest

from tests.helpers.gateway import Gateway, make_tenant

USER = {"role": "user", "content": "What is 12 times 5?"}
ANSWER = {"role": "assistant", "content": "60"}
CHAT = "\n".join(json.dumps({"messages": [USER, ANSWER]}) for _ in range(6)).encode()
PREFERENCE = "\n".join(
    json.dumps(
        {
            "input": {"messages": [USER]},
            "preferred_output": [ANSWER],
            "non_preferred_output": [{"role": "assistant", "content": "61"}],
        }
    )
    for _ in range(4)
).encode()


@pytest.fixture
def held_cycles(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The cycles jobs queue are recorded, not sent: no worker runs them, even when the
    session's worker is up (the gateway runs in this process)."""
    sent: list[tuple] = []
    monkeypatch.setattr(
        "app.cycles.service.enqueue", lambda _s, name, *args, **_o: sent.append((name, *args))
    )
    return sent


def upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune").id


def test_files_round_trip_and_are_checked_line_by_line(gateway: Gateway) -> None:
    client = make_tenant("filer").client(gateway)
    made = client.files.create(file=("chat.jsonl", io.BytesIO(CHAT)), purpose="fine-tune")
    assert made.object == "file" and made.purpose == "fine-tune" and made.status == "processed"
    assert made.bytes == len(CHAT) and made.filename == "chat.jsonl"
    assert client.files.retrieve(made.id).id == made.id
    assert client.files.content(made.id).content == CHAT
    second = upload(client, PREFERENCE, "pref.jsonl")
    listed = [f.id for f in client.files.list()]
    assert listed == [second, made.id]  # newest first
    page = client.files.list(limit=1, order="asc")
    assert [f.id for f in page.data] == [made.id] and page.has_more
    assert [f.id for f in client.files.list(limit=1, after=made.id, order="asc").data] == [second]
    deleted = client.files.delete(second)
    assert deleted.deleted and deleted.id == second
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(second)

    bad = (
        CHAT + b"\n" + json.dumps({"messages": [USER, {"role": "robot", "content": "x"}]}).encode()
    )
    with pytest.raises(openai.BadRequestError) as info:
        upload(client, bad)
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "invalid_file_format"
    assert error["param"] == "file" and "line 7: messages.1" in error["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.jsonl", io.BytesIO(CHAT)), purpose="assistants")
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "purpose"
    assert [f.id for f in client.files.list()] == [made.id]  # nothing half-kept


def test_jobs_are_created_paged_and_cancelled(gateway: Gateway, held_cycles: list[tuple]) -> None:
    fx = make_tenant("tuner")
    client = fx.client(gateway)
    chat, pref = upload(client, CHAT), upload(client, PREFERENCE)
    first = client.fine_tuning.jobs.create(
        model="tuner",
        training_file=chat,
        validation_file=chat,
        suffix="first-try",
        seed=7,
        metadata={"team": "support"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert first.object == "fine_tuning.job" and first.status == "queued"
    assert first.model == "tuner" and first.training_file == chat and first.seed == 7
    # 6 lines, auto batch 6 (at most 8), 2 epochs of 1 batch: the hyperparameters as resolved
    assert first.hyperparameters.n_epochs == 2 and first.hyperparameters.batch_size == 6
    assert first.metadata == {"team": "support"}
    # The agent has a cycle queued now (held back, so it stays queued): the next job waits.
    assert [name for name, *_ in held_cycles] == ["cycle.run"]
    second = client.fine_tuning.jobs.create(
        model="tuner",
        training_file=pref,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": 2}}},
    )
    assert second.status == "queued" and second.method.dpo.hyperparameters.beta == 0.2
    messages = [e.message for e in client.fine_tuning.jobs.list_events(second.id)]
    assert any(m.startswith("Waiting for the agent's learning cycle") for m in messages)

    assert [j.id for j in client.fine_tuning.jobs.list()] == [second.id, first.id]
    page = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1, after=second.id).data] == [first.id]
    tagged = client.fine_tuning.jobs.list(metadata={"team": "support"})
    assert [j.id for j in tagged.data] == [first.id]

    # A file a running job needs cannot be deleted.
    with pytest.raises(openai.ConflictError):
        client.files.delete(chat)
    cancelled = client.fine_tuning.jobs.cancel(first.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    events = client.fine_tuning.jobs.list_events(first.id, limit=50)
    assert events.data[0].message == "Fine-tuning job cancelled"  # newest first
    assert events.data[-1].message.startswith("Created fine-tuning job")
    one = client.fine_tuning.jobs.list_events(first.id, limit=1)
    assert one.has_more and len(one.data) == 1
    assert client.fine_tuning.jobs.checkpoints.list(first.id).data == []
    assert client.fine_tuning.jobs.cancel(first.id).status == "cancelled"  # idempotent
    waiting = client.fine_tuning.jobs.cancel(second.id)  # never started: it never will
    assert waiting.status == "cancelled" and waiting.cycle_run_id is None  # type: ignore[attr-defined]
    client.files.delete(chat)  # no unfinished job needs it now


def test_bad_jobs_get_openai_shaped_errors(gateway: Gateway) -> None:
    client = make_tenant("strict").client(gateway)
    chat, pref = upload(client, CHAT), upload(client, PREFERENCE)

    def refused(kind: type[openai.APIStatusError], **body: object) -> dict:
        with pytest.raises(kind) as info:
            client.fine_tuning.jobs.create(**body)  # type: ignore[arg-type]
        error = info.value.body
        assert isinstance(error, dict) and set(error) >= {"message", "type", "param", "code"}
        return error

    error = refused(openai.NotFoundError, model="nobody", training_file=chat)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    error = refused(openai.NotFoundError, model="strict", training_file="file-00")
    assert error["param"] == "training_file"
    error = refused(
        openai.BadRequestError,
        model="strict",
        training_file=pref,
        method={"type": "supervised"},
    )
    assert error["code"] == "invalid_training_file" and error["param"] == "training_file"
    assert "preference lines" in error["message"]
    error = refused(
        openai.BadRequestError,
        model="strict",
        training_file=chat,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
    )
    assert "n_epochs" in error["message"]
    error = refused(
        openai.BadRequestError,
        model="strict",
        training_file=chat,
        method={"type": "reinforcement"},
    )
    assert "grader" in error["message"]
    error = refused(openai.BadRequestError, model="strict", training_file=chat, suffix="a b")
    assert error["param"] == "suffix"
    assert client.fine_tuning.jobs.list().data == []  # nothing was kept


def test_another_tenants_files_jobs_and_models_are_not_found(
    gateway: Gateway, held_cycles: list[tuple]
) -> None:
    owner = make_tenant("mine").client(gateway)
    other = make_tenant("theirs").client(gateway)
    chat = upload(owner, CHAT)
    job = owner.fine_tuning.jobs.create(model="mine", training_file=chat)
    for call in (
        lambda: other.files.retrieve(chat),
        lambda: other.files.content(chat),
        lambda: other.files.delete(chat),
        lambda: other.fine_tuning.jobs.retrieve(job.id),
        lambda: other.fine_tuning.jobs.cancel(job.id),
        lambda: other.fine_tuning.jobs.list_events(job.id),
        lambda: other.fine_tuning.jobs.checkpoints.list(job.id),
        lambda: other.fine_tuning.jobs.create(model="theirs", training_file=chat),
        lambda: other.fine_tuning.jobs.create(model="mine", training_file=upload(other, CHAT)),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert other.files.list().data[0].id != chat
    assert owner.fine_tuning.jobs.retrieve(job.id).status == "queued"  # not cancelled by them
    assert len(held_cycles) == 1  # their refused create queued nothing


@pytest.fixture
def quotas() -> object:
    """The settings the quotas read, put back after the test."""
    from app.core.config import get_settings

    settings = get_settings()
    kept = (
        settings.tenant_file_bytes,
        settings.tenant_uploads_per_hour,
        settings.tenant_max_active_jobs,
    )
    yield settings
    (
        settings.tenant_file_bytes,
        settings.tenant_uploads_per_hour,
        settings.tenant_max_active_jobs,
    ) = kept


def test_files_have_a_tenant_quota_of_bytes_and_uploads(gateway: Gateway, quotas: object) -> None:
    fx = make_tenant("quota")
    client = fx.client(gateway)
    quotas.tenant_file_bytes = int(2.5 * len(CHAT))  # type: ignore[attr-defined]
    kept = [upload(client, CHAT), upload(client, CHAT)]
    with pytest.raises(openai.APIStatusError) as over:
        upload(client, CHAT)
    assert over.value.status_code == 413
    assert "CLORA_TENANT_FILE_BYTES" in over.value.message and over.value.body["param"] == "file"  # type: ignore[index]
    client.files.delete(kept[0])  # room again
    kept.append(upload(client, CHAT))
    other = make_tenant("quota").client(gateway)
    upload(other, CHAT)  # another tenant's quota is its own
    quotas.tenant_file_bytes = 10**9  # type: ignore[attr-defined]
    quotas.tenant_uploads_per_hour = 4  # type: ignore[attr-defined]
    with pytest.raises(openai.RateLimitError) as busy:
        upload(client, CHAT)  # 4 uploads this hour already: the deleted and the refused count
    assert "CLORA_TENANT_UPLOADS_PER_HOUR" in busy.value.message
    assert len(client.files.list().data) == 2


def test_a_tenant_has_a_quota_of_jobs_queued_or_running(
    gateway: Gateway, held_cycles: list[tuple], quotas: object
) -> None:
    fx = make_tenant("jobs")
    client = fx.client(gateway)
    chat = upload(client, CHAT)
    quotas.tenant_max_active_jobs = 2  # type: ignore[attr-defined]
    first = client.fine_tuning.jobs.create(model="jobs", training_file=chat)
    client.fine_tuning.jobs.create(model="jobs", training_file=chat)  # waits for the first
    with pytest.raises(openai.RateLimitError) as refused:
        client.fine_tuning.jobs.create(model="jobs", training_file=chat)
    assert "CLORA_TENANT_MAX_ACTIVE_JOBS" in refused.value.message
    client.fine_tuning.jobs.cancel(first.id)
    third = client.fine_tuning.jobs.create(model="jobs", training_file=chat)
    assert third.status == "queued"
