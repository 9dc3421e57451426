// Playwright Test for the browser story (ui.spec.mjs), on Debian's Chromium: Playwright never
// downloads a browser (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1). tests/e2e/test_ui.py prepares the
// stack and the data and runs one phase at a time:
//
//   CLORA_E2E_PHASE=operator npx playwright test -c e2e
//
// Each phase is one test; a failing one keeps its trace, a screenshot and an HTML report under
// CLORA_E2E_ARTIFACTS/<phase>/ (npx playwright show-trace <trace.zip>, show-report <report>).
import { resolve } from "node:path";
import { defineConfig } from "@playwright/test";

const env = process.env;
const phase = env.CLORA_E2E_PHASE;
const artifacts = resolve(env.CLORA_E2E_ARTIFACTS ?? "e2e-artifacts", phase ?? "all");
const timeout = Number(env.CLORA_E2E_TIMEOUT_MS ?? 20_000);

export default defineConfig({
  testDir: ".",
  testMatch: "ui.spec.mjs",
  // A phase picks its test by tag; with no phase the three run in order.
  grep: phase ? new RegExp(`@${phase}$`) : undefined,
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  timeout: 10 * 60_000,
  outputDir: resolve(artifacts, "test-results"),
  reporter: [["list"], ["html", { outputFolder: resolve(artifacts, "report"), open: "never" }]],
  use: {
    browserName: "chromium",
    headless: true,
    baseURL: env.CLORA_UI_URL,
    launchOptions: {
      executablePath: env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
      ],
    },
    viewport: { width: 1360, height: 900 },
    deviceScaleFactor: 1,
    actionTimeout: timeout,
    navigationTimeout: timeout,
    // DOM snapshots per action, without a screencast: a phase waits minutes on a training run.
    trace: { mode: "retain-on-failure", screenshots: false, snapshots: true, sources: true },
    screenshot: "only-on-failure",
  },
});
