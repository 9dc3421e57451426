import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { describe, expect, it, vi } from "vitest";
import { type Schemas, api } from "../src/api/client";
import { createQueryClient } from "../src/api/queries";
import { ReviewQueue } from "../src/pages/ReviewQueue";

vi.mock("../src/auth/session", () => ({ useSession: () => ({ tenant: "acme" }) }));

function interaction(n: number, kinds: Schemas["FeedbackKind"][]): Schemas["InteractionOut"] {
  return {
    id: `chatcmpl-${n}`,
    agent: "learner",
    adapter_version: null,
    created_at: "2026-12-01T10:00:00Z",
    request: { messages: [{ role: "user", content: `question ${n}` }] },
    output: { role: "assistant", content: `answer ${n}` },
    usage: null,
    latency_ms: 12,
    finish_reason: "stop",
    error: null,
    feedback: [],
    feedback_kinds: kinds,
  };
}

const PAGE: Schemas["InteractionPage"] = {
  total: 3,
  items: [interaction(1, []), interaction(2, ["rating"]), interaction(3, ["rating", "correction", "preference"])],
};

function gateway() {
  const answer = (body: unknown) => Promise.resolve({ data: body, error: undefined, response: { ok: true, status: 200 } as Response });
  return vi
    .spyOn(api, "GET")
    .mockImplementation(((path: string) => answer(path === "/api/agents" ? [] : PAGE)) as unknown as typeof api.GET);
}

async function renderQueue() {
  render(
    <QueryClientProvider client={createQueryClient()}>
      <MemoryRouter initialEntries={["/review"]}>
        <ReviewQueue />
      </MemoryRouter>
    </QueryClientProvider>,
  );
  await screen.findByText("question 1");
}

const row = (id: string) => document.querySelector(`tr[data-id="${id}"]`) as HTMLElement;
const badges = (id: string) => [...row(id).querySelectorAll("[data-feedback]")].map((b) => b.textContent);

describe("ReviewQueue", () => {
  it("shows the feedback each interaction already has", async () => {
    gateway();
    await renderQueue();
    expect(badges("chatcmpl-1")).toEqual([]);
    expect(within(row("chatcmpl-1")).getByText("none")).toBeTruthy();
    expect(badges("chatcmpl-2")).toEqual(["rated"]);
    expect(badges("chatcmpl-3")).toEqual(["rated", "corrected", "compared"]);
  });

  it("moves the selection with j and k, and reads the page again with r", async () => {
    const get = gateway();
    await renderQueue();
    expect(row("chatcmpl-1").classList.contains("selected")).toBe(true);
    await userEvent.keyboard("jj");
    expect(row("chatcmpl-3").classList.contains("selected")).toBe(true);
    await userEvent.keyboard("j");
    expect(row("chatcmpl-3").classList.contains("selected")).toBe(true);
    await userEvent.keyboard("k");
    expect(row("chatcmpl-2").classList.contains("selected")).toBe(true);
    const pageReads = () => get.mock.calls.filter((call) => (call as unknown[])[0] === "/api/interactions").length;
    const reads = pageReads();
    await userEvent.keyboard("r");
    await vi.waitFor(() => expect(pageReads()).toBe(reads + 1));
  });
});
