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
  promotion_rule: { max_regression: 0, require_improvement: true },
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
    await userEvent.click(screen.getByLabelText(/Promote only when/));
    await userEvent.click(screen.getByRole("button", { name: "Save schedule" }));
    expect(onSave).toHaveBeenCalledWith({
      ...SCHEDULE,
      steps: 50,
      learning_rate: 0.003,
      promotion_rule: { max_regression: 0, require_improvement: false },
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

  it("puts the gateway's error on the field it names", async () => {
    const error = new ApiError(400, "learning_rate: too large", "learning_rate");
    render(<ScheduleEditor schedule={SCHEDULE} onSave={vi.fn()} serverError={error} />);
    await waitFor(() => expect(screen.getByText("learning_rate: too large")).toBeTruthy());
    expect(screen.getByLabelText("Learning rate").closest(".field")?.classList.contains("invalid")).toBe(true);
  });

  it("is read-only without the save button", () => {
    render(<ScheduleEditor schedule={SCHEDULE} onSave={vi.fn()} readOnly />);
    expect(screen.queryByRole("button", { name: "Save schedule" })).toBeNull();
    expect(screen.getByLabelText("Steps").matches(":disabled")).toBe(true);
  });
});
