import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { describe, expect, it, vi } from "vitest";
import { type Schemas, api } from "../src/api/client";
import { createQueryClient } from "../src/api/queries";
import { AgentsPage } from "../src/pages/AgentsPage";

vi.mock("../src/auth/session", () => ({ useSession: () => ({ tenant: "acme" }) }));

const AGENT: Schemas["AgentOut"] = {
  id: "00000000-0000-0000-0000-000000000001",
  name: "calc",
  description: "",
  lora_rank: 16,
  lora_alpha: 32,
  lora_target_modules: [],
  live_version: null,
  environment: "calculator",
  default_max_tokens: 256,
  fine_tuning_promotes: true,
};

function answer(status: number, body: unknown) {
  const ok = status < 400;
  return Promise.resolve({ data: ok ? body : undefined, error: ok ? undefined : body, response: { ok, status } as Response });
}

function gateway(post: (body: unknown) => [number, unknown]) {
  vi.spyOn(api, "GET").mockImplementation((() => answer(200, [AGENT])) as unknown as typeof api.GET);
  return vi
    .spyOn(api, "POST")
    .mockImplementation(((_path: string, init: { body?: unknown }) => answer(...post(init?.body))) as unknown as typeof api.POST);
}

async function renderPage() {
  render(
    <QueryClientProvider client={createQueryClient()}>
      <MemoryRouter>
        <AgentsPage />
      </MemoryRouter>
    </QueryClientProvider>,
  );
  await screen.findByText("calc");
}

async function replace(label: string, value: string) {
  const input = screen.getByLabelText(label);
  await userEvent.clear(input);
  if (value) await userEvent.type(input, value);
}

describe("AgentsPage", () => {
  it("lists each agent's environment", async () => {
    gateway(() => [200, AGENT]);
    await renderPage();
    expect(document.querySelector('tr[data-agent="calc"]')?.textContent).toContain("calculator");
  });

  it("creates an agent with an environment and a default completion cap", async () => {
    const post = gateway((body) => [200, { ...AGENT, id: "00000000-0000-0000-0000-000000000002", ...(body as object) }]);
    await renderPage();
    expect((screen.getByLabelText("Default max tokens") as HTMLInputElement).value).toBe("256");
    expect([...(screen.getByLabelText("Environment") as HTMLSelectElement).options].map((o) => o.value)).toEqual(["", "calculator"]);
    await userEvent.type(screen.getByLabelText("Name"), "solver");
    await userEvent.selectOptions(screen.getByLabelText("Environment"), "calculator");
    await replace("Default max tokens", "512");
    await userEvent.click(screen.getByRole("button", { name: "Create agent" }));
    await waitFor(() => expect(post).toHaveBeenCalledTimes(1));
    expect(post.mock.calls[0]![1]).toMatchObject({
      body: { name: "solver", environment: "calculator", default_max_tokens: 512, lora_rank: 16, lora_alpha: 32 },
    });
  });

  it("sends no environment for none, and keeps a bad cap in the browser", async () => {
    const post = gateway((body) => [200, { ...AGENT, id: "00000000-0000-0000-0000-000000000002", ...(body as object) }]);
    await renderPage();
    await userEvent.type(screen.getByLabelText("Name"), "plain");
    await replace("Default max tokens", "40000");
    await userEvent.click(screen.getByRole("button", { name: "Create agent" }));
    expect(screen.getByText("The default max tokens must be between 1 and 32768.")).toBeTruthy();
    await replace("Default max tokens", "0");
    await userEvent.click(screen.getByRole("button", { name: "Create agent" }));
    expect(screen.getByText("The default max tokens must be between 1 and 32768.")).toBeTruthy();
    expect(post).not.toHaveBeenCalled();
    await replace("Default max tokens", "64");
    await userEvent.click(screen.getByRole("button", { name: "Create agent" }));
    await waitFor(() => expect(post).toHaveBeenCalledTimes(1));
    expect(post.mock.calls[0]![1]).toMatchObject({ body: { name: "plain", environment: null, default_max_tokens: 64 } });
  });

  it("puts the gateway's refusal of an environment on its field", async () => {
    gateway(() => [400, { error: { message: "unknown environment 'chess'", type: "invalid_request_error", param: "environment", code: null } }]);
    await renderPage();
    await userEvent.type(screen.getByLabelText("Name"), "x");
    await userEvent.click(screen.getByRole("button", { name: "Create agent" }));
    await screen.findByText("unknown environment 'chess'");
    expect(screen.getByLabelText("Environment").closest(".field")?.classList.contains("invalid")).toBe(true);
  });
});
