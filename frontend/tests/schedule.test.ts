import { describe, expect, it } from "vitest";
import {
  cronProblem,
  fieldOfParam,
  formFromSchedule,
  mixtureShares,
  parseNumber,
  type Schedule,
  validateSchedule,
} from "../src/lib/schedule";

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

describe("cronProblem", () => {
  it.each(["0 2 * * *", "*/15 * * * *", "0 9-17 * * mon-fri", "0 0 1,15 jan,jul *", "30 3 * * 7"])("accepts %s", (expr) => {
    expect(cronProblem(expr)).toBeNull();
  });

  it.each([
    ["0 2 * *", /5 fields/],
    ["0 2 * * * *", /5 fields/],
    ["60 * * * *", /minute/],
    ["0 24 * * *", /hour/],
    ["0 0 0 * *", /day of month/],
    ["0 0 * 13 *", /month/],
    ["0 0 * * 8", /day of week/],
    ["*/0 * * * *", /minute/],
    ["5-1 * * * *", /minute/],
    ["a b c d e", /minute/],
  ])("rejects %s", (expr, message) => {
    expect(cronProblem(expr)).toMatch(message);
  });
});

describe("validateSchedule", () => {
  it("round-trips a schedule", () => {
    expect(validateSchedule(formFromSchedule(SCHEDULE))).toEqual({ errors: {}, value: SCHEDULE });
  });

  it("builds a cron schedule with a mixture of both losses", () => {
    const form = { ...formFromSchedule(SCHEDULE), mode: "cron" as const, cron: " 0  2 * * * ", dpo: "0.5", learningRate: "3e-3" };
    const { value } = validateSchedule(form);
    expect(value?.cron).toBe("0 2 * * *");
    expect(value?.every_k).toBeNull();
    expect(value?.loss_mixture).toEqual({ sft: 1, dpo: 0.5 });
    expect(value?.learning_rate).toBe(0.003);
  });

  it("drops a zero-weight loss from the mixture", () => {
    const { value } = validateSchedule({ ...formFromSchedule(SCHEDULE), sft: "0", dpo: "2" });
    expect(value?.loss_mixture).toEqual({ dpo: 2 });
  });

  it("names every bad field and gives no value", () => {
    const form = {
      ...formFromSchedule(SCHEDULE),
      mode: "every_k" as const,
      everyK: "0",
      sft: "-1",
      steps: "2.5",
      learningRate: "0",
      replayShare: "1.5",
      klCoef: "x",
      maxRegression: "2",
    };
    const { errors, value } = validateSchedule(form);
    expect(value).toBeUndefined();
    expect(Object.keys(errors).sort()).toEqual(
      ["everyK", "klCoef", "learningRate", "maxRegression", "replayShare", "sft", "steps"].sort(),
    );
    expect(errors.steps).toBe("Steps must be a whole number.");
    expect(errors.learningRate).toBe("The learning rate must be above 0 and at most 1.");
  });

  it("needs a positive loss weight", () => {
    const { errors } = validateSchedule({ ...formFromSchedule(SCHEDULE), sft: "0", dpo: "0" });
    expect(errors.lossMixture).toBe("At least one loss needs a weight above 0.");
  });

  it("needs the cron expression or K of its mode only", () => {
    expect(validateSchedule({ ...formFromSchedule(SCHEDULE), mode: "cron" }).errors.cron).toMatch(/Give a cron expression/);
    expect(validateSchedule({ ...formFromSchedule(SCHEDULE), mode: "every_k" }).errors.everyK).toMatch(/whole number/);
    expect(validateSchedule({ ...formFromSchedule(SCHEDULE), mode: "manual", cron: "bad", everyK: "x" }).errors).toEqual({});
  });
});

describe("helpers", () => {
  it("parses only plain numbers", () => {
    expect(parseNumber("3e-3")).toBe(0.003);
    expect(parseNumber(" .5 ")).toBe(0.5);
    expect(parseNumber("")).toBeNull();
    expect(parseNumber("0x10")).toBeNull();
    expect(parseNumber("1e")).toBeNull();
    expect(parseNumber("Infinity")).toBeNull();
  });

  it("shows the mixture as shares", () => {
    expect(mixtureShares({ sft: "2", dpo: "1" })).toBe("SFT 67% · DPO 33%");
    expect(mixtureShares({ sft: "0", dpo: "0" })).toBe("no loss selected");
  });

  it("maps API params to fields", () => {
    expect(fieldOfParam("promotion_rule.max_regression")).toBe("maxRegression");
    expect(fieldOfParam("loss_mixture.sft")).toBe("lossMixture");
    expect(fieldOfParam(null)).toBeNull();
  });
});
