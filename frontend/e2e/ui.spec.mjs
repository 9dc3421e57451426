// The browser story of the web UI against a running gateway: Playwright Test driving Debian's
// Chromium (playwright.config.mjs). tests/e2e/test_ui.py prepares the stack and the data, then
// runs one phase at a time (CLORA_E2E_PHASE), each a test:
//
//   operator   sign-in, review queue, correction with diff, ratings, preference, the queue's
//              feedback badges, tenant isolation through the UI and through the UI's session
//   admin      agents, API keys, schedule editor, a learning cycle run from the UI until the new
//              version is live, an RL experiment's charts
//   platform   tenants and acting on one tenant as a platform admin
//   people     a tenant admin adds a user, changes the role, disables them; changes their own
//              password, and the old one no longer signs in
//
// Every phase fails on a console error, and every form is given bad input first, which must
// show a message and send nothing. Screenshots go to CLORA_E2E_SCREENSHOTS; a failing phase
// leaves failure-<phase>.png, its trace and a report under CLORA_E2E_ARTIFACTS.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { test as base, expect } from "@playwright/test";

const env = process.env;
const need = (name) => {
  const value = env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const BASE = need("CLORA_UI_URL");
const SHOTS = env.CLORA_E2E_SCREENSHOTS ?? "screenshots";
const ARTIFACTS = env.CLORA_E2E_ARTIFACTS ?? "e2e-artifacts";
const LONG = Number(env.CLORA_E2E_LONG_TIMEOUT_MS ?? 600_000);
mkdirSync(SHOTS, { recursive: true });
mkdirSync(ARTIFACTS, { recursive: true });

// ---- harness ------------------------------------------------------------------------------

// Chromium logs every 4xx answer to fetch as "Failed to load resource"; those are API answers
// the UI shows as messages (a wrong password, another tenant's id), not faults of the page.
const EXPECTED_HTTP = /^Failed to load resource: the server responded with a status of 4\d\d/;

// The sticky top bar would cover parts of an element that is scrolled into view.
const SHOT_STYLE = ".topbar { position: static !important; }";

let log = (...args) => console.log(...args);

/**
 * The page of a phase, watched: its console errors fail the phase (checked when it ends), and
 * its API requests are kept, so that a check can tell that bad input sent nothing.
 */
const test = base.extend({
  requests: async ({ page }, use, testInfo) => {
    const phase = testInfo.tags[0]?.slice(1) ?? testInfo.title;
    log = (...args) => console.log(`[${phase}]`, ...args);
    const consoleErrors = [];
    const requests = [];
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      if (EXPECTED_HTTP.test(msg.text())) return;
      consoleErrors.push(`${page.url()}: ${msg.text()}`);
    });
    page.on("pageerror", (error) => consoleErrors.push(`${page.url()}: uncaught ${error.message}`));
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.pathname.startsWith("/api/") || url.pathname.startsWith("/v1/")) {
        requests.push({ method: request.method(), path: url.pathname, search: url.search });
      }
    });
    await use(requests);
    if (testInfo.status !== testInfo.expectedStatus) {
      await page.screenshot({ path: join(ARTIFACTS, `failure-${phase}.png`), fullPage: true }).catch(() => {});
    }
    log(`${testInfo.status} (${requests.length} API requests)`);
    expect(consoleErrors, "console errors on the pages").toEqual([]);
  },
});

/** Save a screenshot: of `target` (a locator), of the viewport (`"viewport"`), or of the whole page. */
async function shot(page, name, target) {
  const path = join(SHOTS, `${name}.png`);
  if (target === "viewport") await page.screenshot({ path, style: SHOT_STYLE });
  else if (target) await target.screenshot({ path, style: SHOT_STYLE });
  else await page.screenshot({ path, fullPage: true, style: SHOT_STYLE });
  log("screenshot", path);
}

/** Run `act` (a bad submission) and assert that it showed `message` and sent no request matching `matches`. */
async function rejects(page, requests, what, act, message, matches = (r) => r.method !== "GET") {
  const before = requests.length;
  await act();
  await page.getByText(message, { exact: false }).first().waitFor({ state: "visible", timeout: 5_000 });
  await page.waitForTimeout(300);
  const sent = requests.slice(before).filter(matches);
  assert.deepEqual(sent, [], `${what}: bad input must send nothing, but sent ${JSON.stringify(sent)}`);
  log(`bad input rejected: ${what}`);
}

async function signIn(page, email, password) {
  await page.goto(`${BASE}/signin`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.match(page.url(), /\/signin$/);
}

/** Call the API from inside the page, with the page's cookies and CSRF token. */
function fromPage(page, method, path, { body, headers } = {}) {
  return page.evaluate(
    async ({ method, path, body, headers }) => {
      const csrf = document.cookie.split("; ").find((c) => c.startsWith("clora_csrf="))?.split("=")[1] ?? "";
      const response = await fetch(path, {
        method,
        headers: { "content-type": "application/json", "x-csrf-token": decodeURIComponent(csrf), ...(headers ?? {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: response.status, body: await response.text() };
    },
    { method, path, body, headers },
  );
}

async function operatorPhase(page, requests) {
  const interactionId = need("CLORA_E2E_INTERACTION");
  const agent = need("CLORA_E2E_AGENT");
  const [helperA, helperB] = need("CLORA_E2E_HELPER_INTERACTIONS").split(",");
  const otherTenantId = need("CLORA_E2E_OTHER_INTERACTION");
  const otherSlug = need("CLORA_E2E_OTHER_TENANT");
  const otherAgent = need("CLORA_E2E_OTHER_AGENT");
  const targetTool = need("CLORA_E2E_TARGET_TOOL");
  const targetArgs = need("CLORA_E2E_TARGET_ARGS");

  await test.step("sign-in, bad input first", async () => {
    // Signed out, every page leads to sign-in.
    await page.goto(`${BASE}/review`);
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    assert.match(page.url(), /\/signin$/);
    await shot(page, "sign-in");
    await rejects(page, requests, "sign-in without an email", () => page.getByRole("button", { name: "Sign in" }).click(), "Give your email address.", () => true);
    await page.getByLabel("Email").fill("not-an-email");
    await page.getByLabel("Password").fill("x");
    await rejects(page, requests, "sign-in with a malformed email", () => page.getByRole("button", { name: "Sign in" }).click(), "That is not an email address.", () => true);
    await page.getByLabel("Email").fill(need("CLORA_E2E_OPERATOR_EMAIL"));
    await page.getByLabel("Password").fill("definitely the wrong password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("wrong email or password").waitFor();

    await signIn(page, need("CLORA_E2E_OPERATOR_EMAIL"), need("CLORA_E2E_PASSWORD"));
    await page.waitForURL(/\/review$/);
  });

  await test.step("the review queue and its filters", async () => {
    // The queue: the official client's interaction is there, newest first; tenant B's is not.
    const row = page.locator(`tr[data-id="${interactionId}"]`);
    await row.waitFor();
    const ids = await page.locator("tr[data-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    assert.ok(!ids.includes(otherTenantId), "tenant B's interaction must not be in tenant A's queue");
    assert.equal(ids[0], helperB, "the queue is newest first");

    // Filters: bad input stays in the browser; good filters find the interaction.
    const filters = page.getByRole("form", { name: "Filters" });
    const queueCalls = (r) => r.path === "/api/interactions";
    await filters.getByLabel("Adapter version").fill("abc");
    await rejects(page, requests, "filter by a version that is not a number", () => filters.getByRole("button", { name: "Apply filters" }).click(), "The version must be a whole number.", queueCalls);
    await filters.getByLabel("Adapter version").fill("");
    await filters.getByLabel("Since").fill("2030-01-02T10:00");
    await filters.getByLabel("Until").fill("2030-01-01T10:00");
    await rejects(page, requests, "filter with until before since", () => filters.getByRole("button", { name: "Apply filters" }).click(), "'Until' must be after 'since'.", queueCalls);
    await filters.getByLabel("Until").fill("");
    const since = new Date(Date.now() - 6 * 3600_000);
    const local = new Date(since.getTime() - since.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    await filters.getByLabel("Since").fill(local);
    await filters.getByLabel("Agent").selectOption(agent);
    await filters.getByLabel("unrated").check();
    await filters.getByLabel("Correction").selectOption("no");
    await filters.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForURL(/agent=/);
    await page.locator(`tr[data-id="${helperB}"]`).waitFor({ state: "detached" });
    await row.waitFor();
    const filtered = await page.locator("tr[data-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    assert.ok(!filtered.includes(helperA) && !filtered.includes(helperB), "the agent filter leaves the other agent's interactions out");
    assert.equal(filtered[0], interactionId, "the corrected interaction is the newest of its agent");
    await shot(page, "review-queue-filtered", "viewport");
  });

  await test.step("correct the answer in place, with a diff", async () => {
    // The conversation view, opened from the queue with the keyboard.
    await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
    await page.keyboard.press("Enter");
    await page.waitForURL(new RegExp(`/review/${interactionId}$`));
    await page.getByText("Conversation", { exact: true }).waitFor();
    for (const role of ["system", "user", "assistant"]) {
      assert.ok((await page.locator(`article[data-role="${role}"]`).count()) > 0, `the conversation shows a ${role} message`);
    }
    await shot(page, "interaction");

    // Correct the answer in place: first bad input, then the right tool call, with a diff.
    await page.keyboard.press("e");
    const editor = page.getByRole("form", { name: "Correct the answer" });
    await editor.waitFor();
    await editor.getByLabel("Assistant text").fill("");
    while ((await editor.locator("fieldset.tool-call-edit").count()) > 1) {
      await editor.getByRole("button", { name: /Remove tool call/ }).last().click();
    }
    if ((await editor.locator("fieldset.tool-call-edit").count()) === 0) {
      await editor.getByRole("button", { name: "Add tool call" }).click();
    }
    await editor.getByLabel("Function").fill(targetTool);
    await editor.getByLabel("Arguments (JSON)").fill("{\"expression\": ");
    await rejects(page, requests, "a correction whose arguments are not JSON", () => editor.getByRole("button", { name: "Save correction" }).click(), "The arguments are not valid JSON");
    await editor.getByLabel("Function").fill("no_such_tool");
    await editor.getByLabel("Arguments (JSON)").fill(targetArgs);
    await rejects(page, requests, "a correction calling a tool the request did not offer", () => editor.getByRole("button", { name: "Save correction" }).click(), "This request offered no tool 'no_such_tool'");
    await editor.getByLabel("Function").fill(targetTool);
    await page.locator(".diff-line.add").first().waitFor();
    await shot(page, "correction-diff", page.getByRole("region", { name: "Answer" }));
    const before = requests.length;
    await editor.getByLabel("Arguments (JSON)").press("Control+Enter");
    await page.getByText("Correction saved").waitFor();
    const posted = requests.slice(before).filter((r) => r.method === "POST" && r.path === "/api/feedback");
    assert.equal(posted.length, 1, "the correction is one POST /api/feedback");
    await page.locator('li[data-kind="correction"]').waitFor();
    await shot(page, "interaction-corrected");
  });

  await test.step("rate, score, and pick the better of two answers", async () => {
    // Ratings with the keyboard, a score form, and picking the better of two answers.
    await page.goto(`${BASE}/review/${helperA}`);
    await page.getByText("The answer", { exact: true }).waitFor();
    for (const role of ["system", "user", "tool"]) {
      assert.ok((await page.locator(`article[data-role="${role}"]`).count()) > 0, `the conversation shows a ${role} message`);
    }
    assert.ok((await page.locator(".conversation .tool-call").count()) > 0, "the conversation shows the tool call");
    await page.keyboard.press("u");
    await page.getByText("Rated: good.").waitFor();
    await page.locator('li[data-kind="rating"]').waitFor();
    const score = page.getByRole("form", { name: "Rate with a score" });
    await score.getByLabel("Score (−1 … 1)").fill("2");
    await rejects(page, requests, "a score outside [-1, 1]", () => score.getByRole("button", { name: "Rate" }).click(), "The score must be at least -1 and at most 1.");
    const compare = page.getByRole("form", { name: "Compare with an interaction id" });
    await compare.getByLabel("…or compare with interaction id").fill("chatcmpl-nope");
    await rejects(page, requests, "comparing with a malformed id", () => compare.getByRole("button", { name: "Compare" }).click(), "An interaction id looks like chatcmpl-", () => true);
    await page.locator(`button[data-sibling="${helperB}"]`).click();
    await page.getByRole("button", { name: /B is better/ }).waitFor();
    await shot(page, "compare");
    await page.keyboard.press("2");
    await page.getByText(/Saved: .* is better than /).waitFor();
  });

  await test.step("the queue shows what was reviewed", async () => {
    // Each row says which feedback its interaction already has.
    await page.getByRole("link", { name: "Review queue", exact: true }).click();
    const badges = (id) =>
      page.locator(`tr[data-id="${id}"] [data-feedback]`).evaluateAll((els) => els.map((e) => e.getAttribute("data-feedback")));
    await page.locator(`tr[data-id="${interactionId}"] [data-feedback="correction"]`).waitFor();
    assert.deepEqual(await badges(interactionId), ["correction"], "the corrected interaction");
    assert.deepEqual(await badges(helperA), ["rating"], "the interaction rated with u");
    assert.deepEqual(await badges(helperB), ["preference"], "the answer picked as the better one");
    await shot(page, "review-queue", "viewport");
  });

  await test.step("tenant isolation, in the UI and through its session", async () => {
    // Tenant isolation: tenant B's interaction is out of reach in the UI ...
    await page.goto(`${BASE}/review/${otherTenantId}`);
    await page.getByText(`no interaction '${otherTenantId}'`).waitFor();
    await shot(page, "isolation");
    // ... and through the API with the UI's own session, whatever tenant the call names.
    const read = await fromPage(page, "GET", `/api/interactions/${otherTenantId}`);
    assert.equal(read.status, 404, `reading B's interaction: ${read.body}`);
    for (const [path, headers] of [
      [`/api/interactions?tenant=${otherSlug}&limit=200`, {}],
      ["/api/interactions?limit=200", { "x-clora-tenant": otherSlug }],
    ]) {
      const list = await fromPage(page, "GET", path, { headers });
      assert.equal(list.status, 200);
      const listed = JSON.parse(list.body).items.map((i) => i.id);
      assert.ok(listed.includes(interactionId) && !listed.includes(otherTenantId), `${path} stays in tenant A`);
    }
    const byAgent = await fromPage(page, "GET", `/api/interactions?agent=${otherAgent}`);
    assert.equal(byAgent.status, 404, "tenant B's agent is unknown to tenant A");
    for (const body of [
      { interaction_id: otherTenantId, kind: "rating", rating: { thumbs: "down" } },
      { interaction_id: otherTenantId, kind: "correction", correction: { content: "hijacked" } },
      { interaction_id: interactionId, kind: "preference", preference: { rejected_interaction_id: otherTenantId } },
    ]) {
      const write = await fromPage(page, "POST", "/api/feedback", { body });
      assert.equal(write.status, 404, `feedback on B's interaction (${body.kind}): ${write.body}`);
    }
    const adminOnly = await fromPage(page, "POST", `/api/agents/${agent}/cycles`);
    assert.equal(adminOnly.status, 403, "an operator cannot start a cycle");
    const noCsrf = await page.evaluate(
      async (id) =>
        (
          await fetch("/api/feedback", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ interaction_id: id, kind: "rating", rating: { thumbs: "up" } }),
          })
        ).status,
      interactionId,
    );
    assert.equal(noCsrf, 403, "a write without the CSRF token is refused");
    await page.goto(`${BASE}/admin/agents`);
    await page.getByText("This page needs an admin").waitFor();
    await signOut(page);
  });

}

async function adminPhase(page, requests) {
  const agent = need("CLORA_E2E_AGENT");
  const run = Date.now().toString(36);
  const scratch = `scratch-${run}`;
  const keyName = `ci-robot-${run}`;
  const rlAgent = need("CLORA_E2E_RL_AGENT");
  await signIn(page, need("CLORA_E2E_ADMIN_EMAIL"), need("CLORA_E2E_PASSWORD"));
  await page.waitForURL(/\/admin\/agents$/);
  await page.locator(`tr[data-agent="${agent}"]`).waitFor();

  await test.step("agents, bad input first", async () => {
    // Agents: create one (bad input first).
    const create = page.getByRole("form", { name: "Create an agent" });
    await create.getByLabel("Name").fill("Not A Slug!");
    await rejects(page, requests, "an agent name that is not a slug", () => create.getByRole("button", { name: "Create agent" }).click(), "The agent name is 1-63 lowercase letters");
    await create.getByLabel("Name").fill(scratch);
    await create.getByLabel("LoRA rank").fill("65");
    await rejects(page, requests, "a LoRA rank above 64", () => create.getByRole("button", { name: "Create agent" }).click(), "The LoRA rank must be between 1 and 64.");
    await create.getByLabel("LoRA rank").fill("8");
    await create.getByRole("button", { name: "Create agent" }).click();
    await page.locator(`tr[data-agent="${scratch}"]`).waitFor();
    await create.getByLabel("Name").fill(scratch);
    await create.getByRole("button", { name: "Create agent" }).click();
    await page.getByText(`agent '${scratch}' already exists`).waitFor();
    await shot(page, "agents");
  });

  await test.step("API keys: shown once, revoked", async () => {
    // API keys: the key is shown once; revoke.
    await page.getByRole("link", { name: "API keys" }).click();
    const keyForm = page.getByRole("form", { name: "Create an API key" });
    await rejects(page, requests, "a key without a name", () => keyForm.getByRole("button", { name: "Create key" }).click(), "Give a name for the key.");
    await keyForm.getByLabel("Name").fill(keyName);
    await keyForm.getByRole("button", { name: "Create key" }).click();
    const secret = await page.getByTestId("new-key").textContent();
    assert.match(secret ?? "", /^clora_/);
    await shot(page, "api-keys");
    await page.reload();
    await page.locator(`tr[data-key="${keyName}"]`).waitFor();
    assert.equal(await page.getByTestId("new-key").count(), 0, "the key is shown only once");
    assert.ok(!(await page.content()).includes(secret), "the key is not on the page after a reload");
    const keyRow = page.locator(`tr[data-key="${keyName}"]`);
    await keyRow.getByRole("button", { name: "Revoke" }).click();
    await keyRow.getByRole("button", { name: /Confirm: revoke/ }).click();
    await keyRow.getByText(/revoked/).waitFor();
  });

  await test.step("the schedule editor, then a learning cycle until v1 is live", async () => {
    // The agent: schedule editor (bad input first), then a learning cycle run from the UI.
    await page.goto(`${BASE}/admin/agents/${agent}`);
    const schedule = page.getByRole("form", { name: "Learning-cycle schedule" });
    await schedule.waitFor();
    const saves = (r) => r.method === "PUT";
    await schedule.getByLabel("Steps").fill("0");
    await rejects(page, requests, "a schedule with 0 steps", () => schedule.getByRole("button", { name: "Save schedule" }).click(), "Steps must be between 1 and 10000.", saves);
    await schedule.getByLabel("Steps").fill("40");
    await schedule.getByLabel("On a cron schedule").check();
    await schedule.getByLabel("Cron expression").fill("61 * * *");
    await rejects(page, requests, "a cron expression with 4 fields", () => schedule.getByRole("button", { name: "Save schedule" }).click(), "A cron expression has 5 fields", saves);
    await schedule.getByLabel("Cron expression").fill("61 * * * *");
    await rejects(page, requests, "a cron minute of 61", () => schedule.getByRole("button", { name: "Save schedule" }).click(), "The minute field '61' is not valid", saves);
    await schedule.getByLabel("SFT weight").fill("0");
    await schedule.getByLabel("DPO weight").fill("0");
    await schedule.getByLabel("PG weight").fill("0");
    await rejects(page, requests, "a loss mixture with no weight", () => schedule.getByRole("button", { name: "Save schedule" }).click(), "At least one loss needs a weight above 0.", saves);
    await schedule.getByLabel("By hand").check();
    await schedule.getByLabel("SFT weight").fill("1");
    // This story is about the UI, not the gate (tested in tests/unit/cycles/test_gate.py and the learning
    // loop tests): a step size that surely learns the correction, no KL, and a lenient rule.
    await schedule.getByLabel("Learning rate").fill("0.002");
    await schedule.getByLabel("KL coefficient").fill("0");
    await schedule.getByLabel("Largest allowed drop of the held-out score").fill("1");
    await schedule.getByLabel("Least agreement with the parent on untouched prompts").fill("0");
    await schedule.getByLabel("Refuse a candidate that copies a correction's answer onto other prompts", { exact: false }).uncheck();
    await schedule.getByRole("button", { name: "Save schedule" }).click();
    await schedule.getByText("Saved.").waitFor();
    await shot(page, "schedule-editor", schedule);

    await page.getByRole("button", { name: "Run a cycle now" }).click();
    const progress = page.getByRole("progressbar").first();
    await progress.waitFor({ timeout: 30_000 });
    // A screenshot once training has moved the bar (or the run has already ended).
    await page.waitForFunction(
      () => {
        const bar = document.querySelector("tr[data-run] [role=progressbar]");
        return !bar || Number(bar.getAttribute("aria-valuenow")) > 0;
      },
      null,
      { timeout: LONG, polling: 500 },
    );
    await shot(page, "cycle-running");
    const cycle = page.locator("tr[data-run]").first();
    await page.waitForFunction(
      () => {
        const status = document.querySelector("tr[data-run]")?.getAttribute("data-status");
        return status && !["queued", "running"].includes(status);
      },
      null,
      { timeout: LONG, polling: 1000 },
    );
    const status = await cycle.getAttribute("data-status");
    assert.equal(status, "succeeded", `the cycle ended ${status}: ${await cycle.textContent()}`);
    await page.getByTestId("live-version").getByText("v1").waitFor({ timeout: 20_000 });
    await page.locator('tr[data-version="1"]').getByText("serving", { exact: true }).waitFor();
    await page.locator('tr[data-version="1"]').getByText("live", { exact: true }).waitFor();
    await shot(page, "agent-versions");
    // With no earlier version, rollback is refused, and the reason is shown next to the button.
    await page.getByRole("button", { name: "Roll back to the previous version" }).click();
    await page.getByText("there is no earlier version to roll back to").waitFor();
  });

  await test.step("an RL experiment and its charts", async () => {
    // RL experiments: bad input, then a short real run whose curves are drawn as it goes.
    await page.getByRole("link", { name: "Experiments" }).click();
    const start = page.getByRole("form", { name: "Start an experiment" });
    await start.waitFor();
    await rejects(page, requests, "an experiment without an agent", () => start.getByRole("button", { name: "Start experiment" }).click(), "Pick the agent to train.");
    await start.getByLabel("Agent").selectOption(rlAgent);
    await start.getByLabel("Samples per prompt (G)").fill("1");
    await rejects(page, requests, "a group of one sample", () => start.getByRole("button", { name: "Start experiment" }).click(), "The group size must be between 2 and 64.");
    await start.getByLabel("Samples per prompt (G)").fill("4");
    await start.getByLabel("Steps").fill(env.CLORA_E2E_RL_STEPS ?? "5");
    await start.getByLabel("Prompts per step").fill("4");
    await start.getByLabel("Max tokens per turn").fill("64");
    await start.getByLabel("Seed").fill("3");
    await start.getByRole("button", { name: "Start experiment" }).click();
    await page.waitForURL(/[?&]id=/);
    await page.waitForFunction(
      () => {
        const row = document.querySelector("tr[data-experiment].selected");
        const badge = row?.querySelector(".badge")?.textContent;
        return badge && !["queued", "running"].includes(badge);
      },
      null,
      { timeout: LONG, polling: 1000 },
    );
    const badge = await page.locator("tr[data-experiment].selected .badge").textContent();
    assert.equal(badge, "succeeded", "the experiment finished");
    const charts = page.getByTestId("experiment-charts");
    await charts.waitFor();
    const points = await charts.locator('g[data-series="reward (mean)"] circle').count();
    assert.ok(points >= 2, `the reward chart has a point per step (${points})`);
    for (const title of ["Reward and accuracy per step", "Policy-gradient loss per step", "Time per step"]) {
      await charts.getByText(title).waitFor();
    }
    await shot(page, "experiment-charts", page.getByRole("region", { name: "Experiment charts" }));
    await shot(page, "experiments");
    await signOut(page);
  });

}

async function platformPhase(page, requests) {
  const tenantA = need("CLORA_E2E_TENANT");
  await signIn(page, need("CLORA_E2E_PLATFORM_EMAIL"), need("CLORA_E2E_PASSWORD"));
  await page.goto(`${BASE}/review`);
  await page.getByText("Pick a tenant").waitFor();
  await page.getByRole("link", { name: "Tenants" }).click();
  await page.locator(`tr[data-tenant="${tenantA}"]`).waitFor();
  const form = page.getByRole("form", { name: "Create a tenant" });
  await form.getByLabel("Slug").fill("Bad Slug");
  await rejects(page, requests, "a tenant slug with capitals and a space", () => form.getByRole("button", { name: "Create tenant" }).click(), "The slug is 1-63 lowercase letters");
  const slug = `ui-${Date.now().toString(36)}`;
  await form.getByLabel("Slug").fill(slug);
  await form.getByLabel("Name").fill("Made in the UI");
  await form.getByRole("button", { name: "Create tenant" }).click();
  await page.locator(`tr[data-tenant="${slug}"]`).waitFor();
  await shot(page, "tenants");
  await page.locator(`tr[data-tenant="${tenantA}"]`).getByRole("button", { name: `Act on ${tenantA}` }).click();
  await page.getByRole("link", { name: "Review queue", exact: true }).click();
  await page.locator(`tr[data-id="${need("CLORA_E2E_INTERACTION")}"]`).waitFor();
  await signOut(page);
}

async function peoplePhase(page, requests) {
  const password = need("CLORA_E2E_PASSWORD");
  const adminEmail = need("CLORA_E2E_ADMIN_EMAIL");
  const newEmail = need("CLORA_E2E_NEW_USER");
  const newPassword = need("CLORA_E2E_NEW_PASSWORD");
  await signIn(page, adminEmail, password);
  await page.getByRole("link", { name: "Users" }).click();
  await page.locator(`tr[data-user="${need("CLORA_E2E_OPERATOR_EMAIL")}"]`).waitFor();
  const form = page.getByRole("form", { name: "Add a user" });
  const add = () => form.getByRole("button", { name: "Add user" }).click();
  await form.getByLabel("Email").fill("not an address");
  await form.getByLabel("First password").fill("long enough password");
  await rejects(page, requests, "an email without @", add, "That is not an email address.");
  await form.getByLabel("Email").fill(newEmail);
  await form.getByLabel("First password").fill("short");
  await rejects(page, requests, "a short first password", add, "at least 10 characters");
  await form.getByLabel("First password").fill("the first password");
  await add();
  const row = page.locator(`tr[data-user="${newEmail}"]`);
  await row.waitFor();
  const patched = page.waitForResponse((r) => r.url().includes("/api/users/") && r.request().method() === "PATCH");
  await row.getByLabel(`Role of ${newEmail}`).selectOption("admin");
  assert.equal((await patched).status(), 200, "the role change was saved");
  await row.getByRole("button", { name: "Disable" }).click();
  await row.getByText("disabled").waitFor();
  await shot(page, "users");
  await page.getByRole("link", { name: adminEmail }).click();
  const change = page.getByRole("form", { name: "Change password" });
  await change.getByLabel("Current password").fill("not my password at all");
  await change.getByLabel("New password").fill(newPassword);
  await change.getByRole("button", { name: "Change password" }).click();
  await page.getByText("the current password is wrong").waitFor();
  await change.getByLabel("Current password").fill(password);
  await change.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("status").getByText("Password changed").waitFor();
  // A personal access token: a nameless one refused, shown once, acting as this user on /api
  // (as `clora --url --token` uses it), then revoked and refused.
  const tokens = page.getByRole("form", { name: "Create a personal access token" });
  await rejects(page, requests, "a token without a name", () => tokens.getByRole("button", { name: "Create token" }).click(), "Give a name for the token.");
  await tokens.getByLabel("Token name").fill("laptop");
  await tokens.getByRole("button", { name: "Create token" }).click();
  const token = (await page.getByTestId("new-token").textContent()) ?? "";
  assert.match(token, /^clorapat_/);
  const asToken = () => fetch(`${BASE}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal((await (await asToken()).json()).email, adminEmail, "the token acts as its user");
  await shot(page, "access-tokens");
  const tokenRow = page.locator('tr[data-token="laptop"]');
  await tokenRow.getByRole("button", { name: "Revoke" }).click();
  await tokenRow.getByRole("button", { name: /Confirm: revoke/ }).click();
  await tokenRow.getByText(/revoked/).waitFor();
  assert.equal((await asToken()).status, 401, "a revoked token is refused");
  await page.goto(`${BASE}/admin/users`);
  await page.locator(`tr[data-user="${newEmail}"]`).waitFor(); // this session goes on
  await signOut(page);
  await page.getByLabel("Email").fill(adminEmail);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("wrong email or password").waitFor();
  await signIn(page, adminEmail, newPassword);
  await signOut(page);
}

// ---- the phases, one test each ----------------------------------------------------------

test("operator", { tag: "@operator" }, async ({ page, requests }) => {
  test.setTimeout(9 * 60_000);
  await operatorPhase(page, requests);
});

test("admin", { tag: "@admin" }, async ({ page, requests }) => {
  test.setTimeout(24 * 60_000);
  await adminPhase(page, requests);
});

test("platform", { tag: "@platform" }, async ({ page, requests }) => {
  test.setTimeout(4 * 60_000);
  await platformPhase(page, requests);
});

test("people", { tag: "@people" }, async ({ page, requests }) => {
  test.setTimeout(4 * 60_000);
  await peoplePhase(page, requests);
});
