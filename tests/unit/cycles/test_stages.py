"""The typed values between the learning loop's stages: the signals' one schema, and a
training request that says when it would train nothing."""

from __future__ import annotations

from app.adapters.signals import Signals, agreement_upper_bound, copies_allowed
from app.training.client import Examples, LoraShape, TrainingRequest

ROW = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def request(mixture: dict[str, float], **examples: list[dict]) -> TrainingRequest:
    return TrainingRequest(
        LoraShape(8, 16, ("q_proj",)), None, Examples(**examples), mixture, 10, 1e-3
    )


def test_a_record_from_an_earlier_release_reads_with_its_bounds_computed_once_here() -> None:
    """Older records lack the bound and the allowance; the gateway computes them, so the CLI
    and the UI only show what they are sent."""
    old = {
        "signals": {
            "preservation": {"n": 23, "agreement": 21 / 23, "min": 0.95, "unknown_key": 1},
            "copies": {"n": 12, "before": 0, "after": 3},
            "held_out": {"n": 0, "before": None, "after": None},
        }
    }
    signals = Signals.read(old)
    assert signals is not None and signals.preservation is not None and signals.copies is not None
    assert signals.preservation.upper_bound == agreement_upper_bound(21 / 23, 23)
    assert signals.copies.allowed == copies_allowed(0, 12) == 1
    assert signals.environment is None and signals.held_out is not None
    # Recorded again, unmeasured signals are left out and the rest round-trips.
    again = Signals.model_validate(signals.record())
    assert again == signals and "environment" not in signals.record()
    assert Signals.read({}) is None and Signals.read({"signals": "garbage"}) is None


def test_a_request_whose_rows_all_weigh_zero_says_it_would_train_nothing() -> None:
    """A cycle of only ratings under a mixture without pg ends before training, and says which
    loss to weigh; the KL term's rows alone are nothing to learn from."""
    assert request({"sft": 1.0}, kl=[ROW]).nothing_to_train() == "no new training examples"
    zero = request({"sft": 1.0, "pg": 0.0}, pg=[ROW, ROW]).nothing_to_train()
    assert zero is not None and "2 pg at 0" in zero and "loss_mixture" in zero
    assert request({"sft": 1.0, "pg": 0.5}, pg=[ROW]).nothing_to_train() is None
    assert request({"sft": 1.0}, sft=[ROW], dpo=[ROW]).nothing_to_train() is None
