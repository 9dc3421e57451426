import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { describe, expect, it, vi } from "vitest";
import { type Schemas, api } from "../src/api/client";
import { createQueryClient } from "../src/api/queries";
import { AgentPage } from "../src/pages/AgentPage";

vi.mock("../src/auth/session", () => ({ useSession: () => ({ tenant: "acme" }) }));

// The gateway, as the page's typed client sees it: each call answers from these tables.
type Answer = { status: number; body: unknown };

const AGENT: Schemas["AgentOut"] = {
  id: "00000000-0000-0000-0000-000000000001",
  name: "learner",
  description: "",
  lora_rank: 16,
  lora_alpha: 32,
  lora_target_modules: ["q_proj"],
  live_version: 2,
  environment: "calculator",
  default_max_tokens: 256,
  fine_tuning_promotes: true,
};

const SIGNALS = {
  corrections: { n: 4, before: 0.25, after: 1 },
  held_out: { n: 10, before: 0.8, after: 0.6 },
  preservation: { n: 40, agreement: 0.975, min: 0.95 },
};

function version(number: number, status: string, metrics: Record<string, unknown>): Schemas["VersionOut"] {
  return {
    id: `00000000-0000-0000-0000-00000000010${number}`,
    number,
    name: `t/learner@v${number}`,
    status,
    source: "cycle",
    parent: number > 1 ? number - 1 : null,
    checksum: "abcdef0123456789",
    metrics,
    // The typed record the gateway reads from the metrics (app/cycles/signals.py).
    signals: (metrics["signals"] ?? null) as Schemas["Signals"] | null,
    created_at: "2026-12-01T10:00:00Z",
  };
}

const VERSIONS = [
  version(2, "live", {
    gate: { verdict: "passed", reason: "promoted: no regression on held_out", failed_signal: null },
    signals: SIGNALS,
  }),
  version(3, "rejected", {
    gate: { verdict: "failed", reason: "held_out: held-out corrections fell from 0.800 to 0.600 (n=10)", failed_signal: "held_out" },
    signals: SIGNALS,
  }),
  version(4, "candidate", {
    gate: { verdict: "needs_evaluation", reason: "needs evaluation: no signal has 5 or more examples", failed_signal: null },
    signals: { corrections: { n: 2, before: 0, after: 1 }, held_out: { n: 0, before: null, after: null } },
    forced: { by: "ops@example.com", at: "2026-12-01T11:00:00Z", verdict: "needs_evaluation" },
  }),
  version(5, "candidate", { gate: { verdict: "passed", reason: "promoted", failed_signal: null }, signals: SIGNALS }),
  version(6, "candidate", {
    gate: { verdict: "failed", reason: "validation: the validation file's score fell from 0.800 to 0.400 (n=5)", failed_signal: "validation" },
    signals: { corrections: { n: 5, before: 0, after: 1 }, validation: { n: 5, before: 0.8, after: 0.4 } },
    fine_tuning: { job: "ftjob-abc123", method: "supervised", suffix: "calc" },
  }),
];

const RUN: Schemas["CycleRunOut"] = {
  id: "11111111-2222-3333-4444-555555555555",
  agent: "learner",
  status: "needs_evaluation",
  trigger: "manual",
  progress: 1,
  created_at: "2026-12-01T10:00:00Z",
  started_at: "2026-12-01T10:00:01Z",
  finished_at: "2026-12-01T10:05:00Z",
  candidate_version: 4,
  metrics: {
    decision: "needs evaluation: no signal has 5 or more examples to compare the candidate with its parent.",
    failed_signal: null,
    signals: { corrections: { n: 2, before: 0, after: 1 }, preservation: { n: 3, agreement: 1, min: 0.95 } },
  },
  signals: { corrections: { n: 2, before: 0, after: 1 }, preservation: { n: 3, agreement: 1, min: 0.95, upper_bound: 1 } },
  error: null,
};

const SCHEDULE: Schemas["ScheduleUpdate"] = {
  mode: "manual",
  cron: null,
  every_k: null,
  loss_mixture: { sft: 1 },
  steps: 30,
  learning_rate: 0.001,
  replay_share: 0.5,
  kl_coef: 0,
  copy_guard: 0.1,
  promotion_rule: { max_regression: 0.01, require_improvement: true, refuse_copies: true, preserve_min: 0.95, preserve_tolerance: 0.05, min_examples: 5, environment_tasks: 200 },
};

const GETS: Record<string, unknown> = {
  "/api/agents": [AGENT],
  "/api/agents/{name}/versions": VERSIONS,
  "/api/agents/{name}/schedule": SCHEDULE,
  "/api/cycles": [RUN],
};

function answer({ status, body }: Answer) {
  const ok = status < 400;
  return Promise.resolve({ data: ok ? body : undefined, error: ok ? undefined : body, response: { ok, status } as Response });
}

/** Serve the page's reads from GETS and its writes with `post`; returns the POST spy. */
function gateway(post: (path: string, body: unknown) => Answer = () => ({ status: 200, body: AGENT })) {
  vi.spyOn(api, "GET").mockImplementation(((path: string) => answer({ status: 200, body: GETS[path] })) as unknown as typeof api.GET);
  return vi
    .spyOn(api, "POST")
    .mockImplementation(((path: string, init: { body?: unknown }) => answer(post(path, init?.body))) as unknown as typeof api.POST);
}

async function renderPage() {
  render(
    <QueryClientProvider client={createQueryClient()}>
      <MemoryRouter initialEntries={["/admin/agents/learner"]}>
        <Routes>
          <Route path="/admin/agents/:name" element={<AgentPage />} />
        </Routes>
      </MemoryRouter>
    </QueryClientProvider>,
  );
  await waitFor(() => expect(document.querySelector('tr[data-version="3"]')).not.toBeNull());
}

const row = (n: number) => document.querySelector(`tr[data-version="${n}"]`) as HTMLElement;

describe("AgentPage versions", () => {
  it("shows each version's verdict, failing signal, signals and forced promotion", async () => {
    gateway();
    await renderPage();
    const failed = row(3);
    expect(within(failed).getByText("failed", { selector: "[data-verdict]" })).toBeTruthy();
    expect(within(failed).getByTestId("gate-reason").textContent).toBe(
      "held-out failed: held-out corrections fell from 0.800 to 0.600 (n=10)",
    );
    expect(failed.querySelector('tr[data-signal="held_out"]')?.classList.contains("failed-signal")).toBe(true);
    expect(within(failed).getByText("80% → 60%")).toBeTruthy();
    expect(within(row(2)).getByText("passed", { selector: "[data-verdict]" })).toBeTruthy();
    expect(within(row(4)).getByText("needs evaluation", { selector: "[data-verdict]" })).toBeTruthy();
    expect(within(row(4)).getByTestId("forced").textContent).toBe("forced by ops@example.com");
    expect(within(row(3)).queryByTestId("forced")).toBeNull();
    // The agent's environment and completion cap are in the header.
    expect(screen.getByText(/environment calculator · default max tokens 256/)).toBeTruthy();
  });

  it("names the fine-tuning job that trained a version and its validation signal", async () => {
    gateway();
    await renderPage();
    const tuned = row(6);
    expect(within(tuned).getByText("ftjob-abc123 (calc)")).toBeTruthy();
    expect(tuned.querySelector('tr[data-signal="validation"]')?.classList.contains("failed-signal")).toBe(true);
    expect(within(tuned).getByText("80% → 40%")).toBeTruthy();
    expect(within(row(5)).queryByText(/ftjob-/)).toBeNull();
  });

  it("force promotes a version the gate failed only after a confirmation", async () => {
    const post = gateway(() => ({ status: 200, body: { ...AGENT, live_version: 3 } }));
    await renderPage();
    expect(within(row(3)).queryByRole("button", { name: "Promote v3" })).toBeNull();
    await userEvent.click(within(row(3)).getByRole("button", { name: "Force promote v3" }));
    expect(post).not.toHaveBeenCalled();
    const confirm = within(row(3)).getByRole("group", { name: "Confirm force promote v3" });
    expect(confirm.textContent).toContain("did not pass the promotion gate (failed)");
    await userEvent.click(within(confirm).getByRole("button", { name: "Confirm: force promote v3" }));
    await waitFor(() => expect(post).toHaveBeenCalledTimes(1));
    expect(post).toHaveBeenCalledWith("/api/agents/{name}/promote", {
      params: { path: { name: "learner" } },
      body: { version: 3, force: true },
    });
    await waitFor(() => expect(within(row(3)).queryByRole("group")).toBeNull());
  });

  it("cancels a force promotion without sending it", async () => {
    const post = gateway();
    await renderPage();
    await userEvent.click(within(row(4)).getByRole("button", { name: "Force promote v4" }));
    expect(within(row(4)).getByRole("group").textContent).toContain("(needs evaluation)");
    await userEvent.click(within(row(4)).getByRole("button", { name: "Cancel" }));
    expect(within(row(4)).getByRole("button", { name: "Force promote v4" })).toBeTruthy();
    expect(post).not.toHaveBeenCalled();
  });

  it("promotes a passed version without force", async () => {
    const post = gateway();
    await renderPage();
    expect(within(row(5)).queryByRole("button", { name: /Force/ })).toBeNull();
    await userEvent.click(within(row(5)).getByRole("button", { name: "Promote v5" }));
    await waitFor(() => expect(post).toHaveBeenCalledTimes(1));
    expect(post.mock.calls[0]![1]).toMatchObject({ body: { version: 5, force: false } });
  });

  it("shows the gateway's refusal and then offers the confirmation", async () => {
    const message = "version 5 did not pass the promotion gate (failed: corrections); promote it with force to override";
    const post = gateway(() => ({
      status: 409,
      body: { error: { message, type: "invalid_request_error", param: "force", code: "conflict" } },
    }));
    await renderPage();
    await userEvent.click(within(row(5)).getByRole("button", { name: "Promote v5" }));
    const alert = await within(row(5)).findByRole("alert");
    expect(alert.textContent).toBe(`${message} (409)`);
    expect(within(row(5)).getByRole("button", { name: "Confirm: force promote v5" })).toBeTruthy();
    expect(post).toHaveBeenCalledTimes(1);
  });
});

describe("AgentPage cycle runs", () => {
  it("shows a run that needs evaluation with what to add and its signals", async () => {
    gateway();
    await renderPage();
    const run = document.querySelector("tr[data-run]") as HTMLElement;
    expect(run.getAttribute("data-status")).toBe("needs_evaluation");
    const badge = within(run).getByText("needs evaluation", { selector: ".badge" });
    expect(badge.classList.contains("attention")).toBe(true);
    const reason = within(run).getByTestId("gate-reason");
    expect(reason.textContent).toBe(RUN.metrics["decision"]);
    expect(reason.classList.contains("attention")).toBe(true);
    expect(within(run).getByText(/v4 stays a candidate/)).toBeTruthy();
    const signals = within(run).getByRole("table", { name: "Gate signals" });
    expect([...signals.querySelectorAll("tr[data-signal]")].map((r) => r.getAttribute("data-signal"))).toEqual([
      "corrections",
      "preservation",
    ]);
    expect(within(signals).getByText("100% (min 95%)")).toBeTruthy();
  });

  it("names the failed signal of a rejected run", async () => {
    GETS["/api/cycles"] = [
      {
        ...RUN,
        status: "rejected",
        candidate_version: 3,
        metrics: { decision: "preservation: the candidate answers 80.0% of untouched prompts as the parent does (n=40), below 95%", failed_signal: "preservation", signals: { preservation: { n: 40, agreement: 0.8, min: 0.95 } } },
      },
    ];
    try {
      gateway();
      await renderPage();
      const run = document.querySelector("tr[data-run]") as HTMLElement;
      expect(within(run).getByText("rejected", { selector: ".badge" })).toBeTruthy();
      expect(within(run).getByTestId("gate-reason").textContent).toBe(
        "preservation failed: the candidate answers 80.0% of untouched prompts as the parent does (n=40), below 95%",
      );
      expect(run.querySelector('tr[data-signal="preservation"]')?.classList.contains("failed-signal")).toBe(true);
      expect(within(run).queryByText(/stays a candidate/)).toBeNull();
    } finally {
      GETS["/api/cycles"] = [RUN];
    }
  });
});
