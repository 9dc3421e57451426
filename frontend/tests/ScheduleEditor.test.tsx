import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../src/api/client";
import { ScheduleEditor } from "../src/components/ScheduleEditor";
import type { Schedule } from "../src/lib/schedule";

const SCHEDULE: Schedule = {
  mode: "manual",
  cron: null,
  every_k: null,
  loss_mixture: { sft: 1 },
  steps: 30,
  learning_rate: 0.001,
  replay_share: 0.5,
  kl_coef: 0,
  copy_guard: 0.1,
  promotion_rule: { max_regression: 0, require_improvement: true, refuse_copies: true, preserve_min: 0.95, preserve_tolerance: 0.05, min_examples: 5, environment_tasks: 200 },
};

async function replace(label: string, value: string) {
  const input = screen.getByLabelText(label);
  await userEvent.clear(input);
  if (value) await userEvent.type(input, value);
}

describe("ScheduleEditor", () => {
  it("saves a valid change", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    await replace("Steps", "50");
    await replace("Learning rate", "0.003");
    await replace("Copy guard", "0");
    await userEvent.click(screen.getByLabelText(/Promote only when/));
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).toHaveBeenCalledWith({
      ...SCHEDULE,
      steps: 50,
      learning_rate: 0.003,
      copy_guard: 0,
      promotion_rule: { ...SCHEDULE.promotion_rule!, require_improvement: false },
    });
    expect(await screen.findByText("Saved.")).toBeTruthy();
  });

  it("rejects bad input with a message per field and saves nothing", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    await replace("Steps", "0");
    await replace("Replay share", "2");
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText("Steps must be between 1 and 10000.")).toBeTruthy();
    expect(screen.getByText("The replay share must be at least 0 and at most 1.")).toBeTruthy();
    expect(screen.getByText("Some fields need fixing; nothing was saved.")).toBeTruthy();
    // Fixing a field clears its message.
    await replace("Steps", "10");
    expect(screen.queryByText("Steps must be between 1 and 10000.")).toBeNull();
  });

  it("shows the field of the chosen mode and checks the cron expression", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    expect(screen.queryByLabelText("Cron expression")).toBeNull();
    await userEvent.click(screen.getByLabelText("On a cron schedule"));
    await userEvent.type(screen.getByLabelText("Cron expression"), "0 25 * * *");
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText(/The hour field '25' is not valid/)).toBeTruthy();
    await userEvent.click(screen.getByRole("button", { name: "nightly 02:00" }));
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).toHaveBeenCalledWith({ ...SCHEDULE, mode: "cron", cron: "0 2 * * *" });
  });

  it("needs a loss and shows the mixture as shares", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    await replace("DPO weight", "1");
    expect(screen.getByTestId("mixture").textContent).toContain("SFT 50% · DPO 50%");
    await replace("SFT weight", "0");
    await replace("DPO weight", "0");
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText("At least one loss needs a weight above 0.")).toBeTruthy();
  });

  it("edits the promotion rule and the PG weight", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    // The fields start from the schedule (the gateway's defaults for a new agent).
    expect((screen.getByLabelText("Least agreement with the parent on untouched prompts") as HTMLInputElement).value).toBe("0.95");
    expect((screen.getByLabelText("Examples a signal needs to count") as HTMLInputElement).value).toBe("5");
    expect((screen.getByLabelText("Environment tasks") as HTMLInputElement).value).toBe("200");
    await replace("PG weight", "1");
    expect(screen.getByTestId("mixture").textContent).toContain("SFT 50% · PG 50%");
    await replace("Least agreement with the parent on untouched prompts", "0.9");
    await replace("Examples a signal needs to count", "12");
    await replace("Environment tasks", "0");
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).toHaveBeenCalledWith({
      ...SCHEDULE,
      loss_mixture: { sft: 1, pg: 1 },
      promotion_rule: { ...SCHEDULE.promotion_rule!, preserve_min: 0.9, min_examples: 12, environment_tasks: 0 },
    });
  });

  it("keeps a bad promotion rule in the browser", async () => {
    const onSave = vi.fn();
    render(<ScheduleEditor schedule={SCHEDULE} onSave={onSave} />);
    await replace("Least agreement with the parent on untouched prompts", "95");
    await replace("Examples a signal needs to count", "0");
    await replace("Environment tasks", "6000");
    await replace("PG weight", "-2");
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText("The least agreement must be at least 0 and at most 1.")).toBeTruthy();
    expect(screen.getByText("The examples a signal needs must be between 1 and 10000.")).toBeTruthy();
    expect(screen.getByText("Environment tasks must be between 0 and 5000.")).toBeTruthy();
    expect(screen.getByText("The PG (ratings) weight must be at least 0 and at most 1000.")).toBeTruthy();
    expect(screen.getByLabelText("Environment tasks").closest(".field")?.classList.contains("invalid")).toBe(true);
  });

  it("puts the gateway's error on the field it names", async () => {
    const error = new ApiError(400, "learning_rate: too large", "learning_rate");
    render(<ScheduleEditor schedule={SCHEDULE} onSave={vi.fn()} serverError={error} />);
    await waitFor(() => expect(screen.getByText("learning_rate: too large")).toBeTruthy());
    expect(screen.getByLabelText("Learning rate").closest(".field")?.classList.contains("invalid")).toBe(true);
  });

  it("puts the gateway's error on a promotion rule field", async () => {
    const error = new ApiError(422, "promotion_rule.min_examples: too small", "promotion_rule.min_examples");
    render(<ScheduleEditor schedule={SCHEDULE} onSave={vi.fn()} serverError={error} />);
    await waitFor(() => expect(screen.getByText("promotion_rule.min_examples: too small")).toBeTruthy());
    expect(screen.getByLabelText("Examples a signal needs to count").closest(".field")?.classList.contains("invalid")).toBe(true);
  });

  it("is read-only without the save button", () => {
    render(<ScheduleEditor schedule={SCHEDULE} onSave={vi.fn()} readOnly />);
    expect(screen.queryByRole("button", { name: "Save schedule" })).toBeNull();
    expect(screen.getByLabelText("Steps").matches(":disabled")).toBe(true);
  });
});
