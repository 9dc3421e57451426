import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { GateSummary, SignalsTable } from "../src/components/Gate";
import { gateOf, needsForce, share, signalRows, signalsOf } from "../src/lib/gate";

// What a cycle records on its candidate when the held-out score fell (app/cycles/runner.py).
const FAILED_METRICS = {
  gate: {
    verdict: "failed",
    reason: "held_out: held-out corrections fell from 0.800 to 0.600 (n=10)",
    failed_signal: "held_out",
  },
  signals: {
    corrections: { n: 4, before: 0.25, after: 1 },
    held_out: { n: 10, before: 0.8, after: 0.6 },
    preservation: { n: 40, agreement: 0.975, min: 0.95 },
    environment: { name: "calculator", n: 200, before: 0.5, after: 0.515 },
  },
  losses: { sft: 0.12 },
};

const cells = (row: HTMLElement) => [...row.querySelectorAll("td")].map((td) => td.textContent);

describe("gate metrics", () => {
  it("reads the verdict, the signals and whether promoting needs force", () => {
    expect(gateOf(FAILED_METRICS)).toEqual({
      verdict: "failed",
      reason: FAILED_METRICS.gate.reason,
      failedSignal: "held_out",
    });
    expect(needsForce(FAILED_METRICS)).toBe(true);
    expect(needsForce({ gate: { verdict: "needs_evaluation", reason: "", failed_signal: null } })).toBe(true);
    expect(needsForce({ gate: { verdict: "passed", reason: "", failed_signal: null } })).toBe(false);
    // Versions no cycle made (uploads, rollbacks) have no gate and need no force.
    expect(needsForce({ losses: { sft: 1 } })).toBe(false);
    expect(gateOf({ gate: { verdict: "maybe" } })).toBeNull();
    expect(signalsOf({})).toBeNull();
  });

  it("formats shares as percentages", () => {
    expect(share(0.95)).toBe("95%");
    expect(share(0.9462)).toBe("94.6%");
    expect(share(null)).toBe("—");
  });

  it("orders the rows and marks the failed signal", () => {
    const rows = signalRows(signalsOf(FAILED_METRICS.signals)!, "held_out");
    expect(rows.map((r) => [r.name, r.result, r.failed])).toEqual([
      ["corrections", "25% → 100%", false],
      ["held_out", "80% → 60%", true],
      ["preservation", "97.5% (min 95%)", false],
      ["environment", "50% → 51.5%", false],
    ]);
    expect(rows[1]!.delta).toBe(-20);
    expect(rows[2]!.meetsMin).toBe(true);
    expect(rows[3]!.label).toBe("environment (calculator)");
  });

  it("judges preservation below the minimum by the bound the gate compared", () => {
    const row = (agreement: number, upper: number) =>
      signalRows(signalsOf({ preservation: { n: 23, agreement, min: 0.95, upper_bound: upper } })!)[0]!;
    const passed = row(21 / 23, 0.9633);
    expect(passed.result).toBe("91.3% (min 95%; up to 96.3% with 90% confidence)");
    expect(passed.meetsMin).toBe(true);
    const refused = row(17 / 23, 0.8377);
    expect(refused.result).toBe("73.9% (min 95%; up to 83.8% with 90% confidence)");
    expect(refused.meetsMin).toBe(false);
  });

  it("judges no row the gate did not count", () => {
    const few = signalRows(
      signalsOf({ preservation: { n: 3, agreement: 2 / 3, min: 0.95, min_examples: 5, upper_bound: 0.9 } })!,
    )[0]!;
    expect(few.result).toBe("66.7% (min 95%; too few to count, under 5)");
    expect(few.meetsMin).toBeNull();
  });
});

describe("copies and the agreement floor", () => {
  it("shows the copies signal as parent → candidate counts against what the gate allows", () => {
    const copied = [{ prompt: "What is 13 times 5?", parent: "65", candidate: "60" }];
    const metrics = { signals: { copies: { n: 19, near: 12, before: 0, after: 12, allowed: 1, copied } } };
    const row = signalRows(signalsOf(metrics.signals)!, "copies")[0]!;
    expect([row.name, row.result, row.meetsMin, row.failed]).toEqual(["copies", "0 → 12 copies (at most 1)", false, true]);
    const kept = signalRows(signalsOf({ copies: { n: 19, near: 0, before: 0, after: 1, allowed: 1, copied: [] } })!)[0]!;
    expect(kept.meetsMin).toBe(true);
    render(<GateSummary metrics={metrics} signals={metrics.signals} />);
    expect(screen.getByTestId("copied-answers").querySelector("summary")!.textContent).toBe(
      "12 of 19 held-back prompts answered with a correction's answer verbatim (the parent: 0)",
    );
    const rows = within(screen.getByRole("table", { name: "Copied answers" })).getAllByRole("row").slice(1);
    expect(rows.map(cells)).toEqual([["What is 13 times 5?", "65", "60"]]);
  });

  it("marks preservation below its floor as refused, whatever the bound", () => {
    const row = signalRows(
      signalsOf({ preservation: { n: 17, agreement: 15 / 17, min: 0.95, floor: 0.9, upper_bound: 0.967 } })!,
    )[0]!;
    expect(row.result).toBe("88.2% (min 95%; refused below 90%)");
    expect(row.meetsMin).toBe(false);
  });
});

describe("ChangedAnswers", () => {
  it("lists the held-back answers the candidate changed, with the count of all changes", () => {
    const changed = [
      { prompt: "Zoe buys 8 boxes with 85 cards in each box.", parent: 'final_answer({"answer": 10})', candidate: 'final_answer({"answer": 12})' },
      { prompt: "Tom buys 2 packs of 29 coins.", parent: 'final_answer({"answer": 12})', candidate: 'calculator({"expression": "2*29+94"})' },
    ];
    const signals = { preservation: { n: 58, agreement: 54 / 58, min: 0.95, upper_bound: 0.962, changed } };
    render(<GateSummary metrics={{ signals }} signals={signals} />);
    const box = screen.getByTestId("changed-answers");
    expect(box.querySelector("summary")!.textContent).toBe("4 of 58 held-back answers changed (first 2 shown)");
    const rows = within(screen.getByRole("table", { name: "Changed answers" })).getAllByRole("row").slice(1);
    expect(rows.map(cells)).toEqual(changed.map((c) => [c.prompt, c.parent, c.candidate]));
  });

  it("counts graded changes that are no worse, and says how each was graded", () => {
    const changed = [
      { prompt: "Zoe buys 6 boxes with 11 apples in each box.", parent: 'calculator({"expression": "6*11"})', candidate: 'final_answer({"answer": 12})', kind: "right->wrong" },
      { prompt: "Zoe buys 92 boxes with 63 coins in each box.", parent: 'final_answer({"answer": 120})', candidate: 'final_answer({"answer": 122})', kind: "wrong->wrong" },
    ];
    // 13 prompts, 2 changed, 1 of them no worse: agreement 12/13.
    const signals = { preservation: { n: 13, agreement: 12 / 13, min: 0.95, upper_bound: 0.99, changed, graded: 13, no_worse: 1 } };
    render(<GateSummary metrics={{ signals }} signals={signals} />);
    expect(screen.getByTestId("changed-answers").querySelector("summary")!.textContent).toBe(
      "2 of 13 held-back answers changed; 1 of them no worse by the environment's grading, counted as kept",
    );
    const rows = within(screen.getByRole("table", { name: "Changed answers" })).getAllByRole("row").slice(1);
    expect(rows.map(cells).map((r) => r[2])).toEqual([
      'final_answer({"answer": 12}) (right → wrong)',
      'final_answer({"answer": 122}) (wrong → wrong)',
    ]);
  });

  it("shows nothing when every held-back answer was kept", () => {
    const signals = { preservation: { n: 40, agreement: 1, min: 0.95, upper_bound: 1, changed: [] } };
    render(<GateSummary metrics={{ signals }} signals={signals} />);
    expect(screen.queryByTestId("changed-answers")).toBeNull();
  });
});

describe("GateSummary", () => {
  it("shows the verdict, the failing signal with its reason, and the signals", () => {
    render(<GateSummary metrics={FAILED_METRICS} signals={FAILED_METRICS.signals} />);
    const badge = screen.getByText("failed", { selector: "[data-verdict]" });
    expect(badge.getAttribute("data-verdict")).toBe("failed");
    expect(badge.classList.contains("bad")).toBe(true);
    const reason = screen.getByTestId("gate-reason");
    expect(reason.textContent).toBe("held-out failed: held-out corrections fell from 0.800 to 0.600 (n=10)");
    expect(reason.classList.contains("failed")).toBe(true);

    const table = screen.getByRole("table", { name: "Gate signals" });
    const held = table.querySelector('tr[data-signal="held_out"]') as HTMLElement;
    expect(held.classList.contains("failed-signal")).toBe(true);
    expect(cells(held)).toEqual(["held-outfailed", "10", "80% → 60% (-20)"]);
    expect(cells(table.querySelector('tr[data-signal="preservation"]') as HTMLElement)).toEqual([
      "preservation",
      "40",
      "97.5% (min 95%)",
    ]);
    expect(cells(table.querySelector('tr[data-signal="environment"]') as HTMLElement)).toEqual([
      "environment (calculator)",
      "200",
      "50% → 51.5% (+1.5)",
    ]);
    expect(table.querySelectorAll("tr.failed-signal")).toHaveLength(1);
    expect(screen.queryByTestId("forced")).toBeNull();
  });

  it("shows needs evaluation, and who forced the promotion", () => {
    // The bound as the gateway sends it (app/cycles/signals.py): the UI computes none.
    const signals = {
      corrections: { n: 0, before: null, after: null },
      held_out: { n: 0, before: null, after: null },
      preservation: { n: 2, agreement: 0.5, min: 0.95, upper_bound: 0.8361 },
    };
    render(
      <GateSummary
        metrics={{
          gate: { verdict: "needs_evaluation", reason: "needs evaluation: no signal has 5 or more examples", failed_signal: null },
          signals,
          forced: { by: "admin@example.com", at: "2026-12-01T10:00:00+00:00", verdict: "needs_evaluation" },
        }}
        signals={signals}
      />,
    );
    const badge = screen.getByText("needs evaluation", { selector: "[data-verdict]" });
    expect(badge.classList.contains("attention")).toBe(true);
    expect(screen.getByTestId("gate-reason").classList.contains("attention")).toBe(true);
    expect(screen.getByTestId("forced").textContent).toBe("forced by admin@example.com");
    const table = screen.getByRole("table", { name: "Gate signals" });
    expect(within(table.querySelector('tr[data-signal="held_out"]') as HTMLElement).getByText("no examples")).toBeTruthy();
    // Below the least agreement: shown as a drop.
    expect(within(table).getByText("50% (min 95%; up to 83.6% with 90% confidence)").classList.contains("down")).toBe(true);
    expect(table.querySelectorAll("tr.failed-signal")).toHaveLength(0);
  });

  it("says when the force was a rollback to a version that never passed", () => {
    render(
      <GateSummary
        metrics={{ forced: { by: "cli", at: "2026-12-07T10:00:00+00:00", verdict: "failed", action: "roll back" } }}
        signals={null}
      />,
    );
    expect(screen.getByTestId("forced").textContent).toBe("forced by cli (roll back)");
  });

  it("shows nothing for a version without a gate record", () => {
    const { container } = render(<GateSummary metrics={{ losses: { sft: 0.3 } }} signals={null} />);
    expect(container.innerHTML).toBe("");
  });

  it("draws only the signals that were measured", () => {
    render(<SignalsTable signals={{ held_out: { n: 3, before: 0.5, after: 0.5 } }} />);
    const rows = screen.getAllByRole("row").slice(1);
    expect(rows.map((r) => r.getAttribute("data-signal"))).toEqual(["held_out"]);
    expect(cells(rows[0]!)).toEqual(["held-out", "3", "50% → 50%"]);
  });
});
