import { describe, expect, it } from "vitest";
import { components } from "../openapi.json";
import { PROMOTION_BOUNDS, PROMOTION_DEFAULTS } from "../src/lib/apiSchema";
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
  copy_guard: 0.1,
  promotion_rule: { max_regression: 0, require_improvement: true, refuse_copies: true, preserve_min: 0.95, preserve_tolerance: 0.05, min_examples: 5, environment_tasks: 200 },
};

describe("cronProblem", () => {
  // Each case was checked against the gateway's croniter.is_valid; the browser is stricter only
  // where noted.
  it.each([
    "*/15 * * * *",
    "0 3 * * 1-5",
    "0 2 * * *",
    "0 9-17 * * mon-fri",
    "0 0 1,15 jan,jul *",
    "30 3 * * 7",
    "0-59/5 * * * *",
    "0 0 * JAN-MAR *",
    " 0  2 * * * ",
  ])("accepts %s", (expr) => {
    expect(cronProblem(expr)).toBeNull();
  });

  it.each([
    ["61 * * * *", /^The minute field '61' is not valid: use 0-59, \*, ranges a-b, steps \/n, lists a,b\.$/],
    ["* * *", /^A cron expression has 5 fields .*this one has 3\.$/],
    ["0 2 * *", /5 fields/],
    ["0 0 * * * *", /5 fields.*this one has 6/], // croniter would take a sixth (seconds) field
    ["60 * * * *", /minute/],
    ["0 24 * * *", /^The hour field '24' is not valid/],
    ["0 0 0 * *", /day of month/],
    ["0 0 * 13 *", /^The month field '13' is not valid: use 1-12 or jan-dec/],
    ["0 0 * * 8", /day of week/],
    ["*/0 * * * *", /minute/],
    ["1,,2 * * * *", /minute/],
    ["1.5 * * * *", /minute field '1.5' is not valid/],
    ["a b c d e", /minute/],
    ["H * * * *", /minute/], // cron-parser's hash extension, which croniter refuses
    ["0 0 * * 5L", /day of week/], // likewise "last Friday"
    ["0 0 31 2 *", /^'0 0 31 2 \*' is not a valid cron expression: invalid explicit day of month definition\.$/], // never fires; croniter takes it
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
      copyGuard: "11",
      maxRegression: "2",
    };
    const { errors, value } = validateSchedule(form);
    expect(value).toBeUndefined();
    expect(Object.keys(errors).sort()).toEqual(
      ["copyGuard", "everyK", "klCoef", "learningRate", "maxRegression", "replayShare", "sft", "steps"].sort(),
    );
    expect(errors.copyGuard).toBe("The copy guard must be at least 0 and at most 10.");
    expect(errors.steps).toBe("Steps must be a whole number.");
    expect(errors.learningRate).toBe("The learning rate must be above 0 and at most 1.");
  });

  it("trains on ratings with the PG weight", () => {
    const { value } = validateSchedule({ ...formFromSchedule(SCHEDULE), sft: "1", dpo: "0", pg: "0.25" });
    expect(value?.loss_mixture).toEqual({ sft: 1, pg: 0.25 });
    expect(validateSchedule({ ...formFromSchedule(SCHEDULE), sft: "0", pg: "1" }).value?.loss_mixture).toEqual({ pg: 1 });
    expect(validateSchedule({ ...formFromSchedule(SCHEDULE), pg: "-1" }).errors.pg).toBe(
      "The PG (ratings) weight must be at least 0 and at most 1000.",
    );
    expect(formFromSchedule({ ...SCHEDULE, loss_mixture: { dpo: 1, pg: 2 } })).toMatchObject({ sft: "0", dpo: "1", pg: "2" });
  });

  it("sends the whole promotion rule", () => {
    const form = {
      ...formFromSchedule(SCHEDULE),
      maxRegression: "0.02",
      preserveMin: "0.9",
      preserveTolerance: "0.1",
      minExamples: "20",
      environmentTasks: "0",
    };
    expect(validateSchedule(form).value?.promotion_rule).toEqual({
      max_regression: 0.02,
      require_improvement: true,
      refuse_copies: true,
      preserve_min: 0.9,
      preserve_tolerance: 0.1,
      min_examples: 20,
      environment_tasks: 0,
    });
  });

  it.each([
    ["preserveMin", "1.5", "The least agreement must be at least 0 and at most 1."],
    ["preserveMin", "-0.1", "The least agreement must be at least 0 and at most 1."],
    ["preserveMin", "high", "The least agreement must be a number."],
    ["minExamples", "0", "The examples a signal needs must be between 1 and 10000."],
    ["minExamples", "2.5", "The examples a signal needs must be a whole number."],
    ["environmentTasks", "5001", "Environment tasks must be between 0 and 5000."],
    ["environmentTasks", "-1", "Environment tasks must be between 0 and 5000."],
    ["environmentTasks", "", "Environment tasks must be a whole number."],
  ] as const)("rejects %s = '%s'", (field, text, message) => {
    const { errors, value } = validateSchedule({ ...formFromSchedule(SCHEDULE), [field]: text });
    expect(value).toBeUndefined();
    expect(errors).toEqual({ [field]: message });
  });

  it("accepts the bounds of the promotion rule", () => {
    const low = { ...formFromSchedule(SCHEDULE), preserveMin: "0", minExamples: "1", environmentTasks: "0" };
    const high = { ...formFromSchedule(SCHEDULE), preserveMin: "1", minExamples: "10000", environmentTasks: "5000" };
    expect(validateSchedule(low).errors).toEqual({});
    expect(validateSchedule(high).errors).toEqual({});
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

describe("the gateway's schema", () => {
  it("gives the promotion rule's defaults and bounds", () => {
    const rule = components.schemas.PromotionRule.properties;
    expect(PROMOTION_DEFAULTS).toEqual({
      max_regression: rule.max_regression.default,
      require_improvement: rule.require_improvement.default,
      refuse_copies: rule.refuse_copies.default,
      preserve_min: rule.preserve_min.default,
      preserve_tolerance: rule.preserve_tolerance.default,
      min_examples: rule.min_examples.default,
      environment_tasks: rule.environment_tasks.default,
    });
    expect(PROMOTION_BOUNDS.environment_tasks).toEqual({ min: 0, max: 5000, default: 200 });
    expect(PROMOTION_BOUNDS.preserve_min).toEqual({ min: 0, max: 1, default: 0.95 });
    expect(PROMOTION_BOUNDS.preserve_tolerance).toEqual({ min: 0, max: 1, default: 0.05 });
  });

  it("carries the copies switch both ways", () => {
    const off = { ...SCHEDULE, promotion_rule: { ...SCHEDULE.promotion_rule!, refuse_copies: false } };
    const form = formFromSchedule(off);
    expect(form.refuseCopies).toBe(false);
    expect(validateSchedule(form).value?.promotion_rule?.refuse_copies).toBe(false);
    expect(validateSchedule(formFromSchedule(SCHEDULE)).value?.promotion_rule?.refuse_copies).toBe(true);
  });

  it("refuses a tolerance outside its bounds, naming the field", () => {
    const form = { ...formFromSchedule(SCHEDULE), preserveTolerance: "1.5" };
    expect(validateSchedule(form).errors.preserveTolerance).toBe("The agreement's tolerance must be at least 0 and at most 1.");
    expect(fieldOfParam("promotion_rule.preserve_tolerance")).toBe("preserveTolerance");
  });

  it("fills what a stored rule lacks with the defaults", () => {
    const old = { ...SCHEDULE, promotion_rule: { max_regression: 0.1 } as Schedule["promotion_rule"] };
    expect(formFromSchedule(old)).toMatchObject({
      maxRegression: "0.1",
      requireImprovement: true,
      preserveMin: "0.95",
      minExamples: "5",
      environmentTasks: "200",
    });
    expect(formFromSchedule({ ...SCHEDULE, promotion_rule: undefined }).maxRegression).toBe("0.01");
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
    expect(mixtureShares({ sft: "1", dpo: "0", pg: "3" })).toBe("SFT 25% · PG 75%");
  });

  it("maps API params to fields", () => {
    expect(fieldOfParam("promotion_rule.max_regression")).toBe("maxRegression");
    expect(fieldOfParam("loss_mixture.sft")).toBe("lossMixture");
    expect(fieldOfParam("promotion_rule.preserve_min")).toBe("preserveMin");
    expect(fieldOfParam("promotion_rule.environment_tasks")).toBe("environmentTasks");
    expect(fieldOfParam(null)).toBeNull();
  });
});
