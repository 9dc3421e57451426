// The learning-cycle schedule as a form: text fields in, a checked ScheduleUpdate out.
// The bounds mirror app/cycles/schemas.py so that bad input never leaves the browser; those of
// the promotion rule, and its defaults, come from the gateway's OpenAPI schema.
import { CronExpressionParser } from "cron-parser";
import type { Schemas } from "../api/client";
import { PROMOTION_BOUNDS, PROMOTION_DEFAULTS } from "./apiSchema";

export type Schedule = Schemas["ScheduleUpdate"];
export type Mode = Schedule["mode"];

export interface ScheduleForm {
  mode: Mode;
  cron: string;
  everyK: string;
  sft: string;
  dpo: string;
  pg: string;
  steps: string;
  learningRate: string;
  replayShare: string;
  klCoef: string;
  copyGuard: string;
  maxRegression: string;
  requireImprovement: boolean;
  refuseCopies: boolean;
  preserveMin: string;
  preserveTolerance: string;
  minExamples: string;
  environmentTasks: string;
}

export type ScheduleErrors = Partial<Record<keyof ScheduleForm | "lossMixture", string>>;

export const CRON_PRESETS: { label: string; cron: string }[] = [
  { label: "hourly", cron: "0 * * * *" },
  { label: "nightly 02:00", cron: "0 2 * * *" },
  { label: "weekly, Monday 03:00", cron: "0 3 * * 1" },
];

/** The loss mixture's keys: corrections (sft), preferences (dpo), ratings (pg). */
export const LOSSES = ["sft", "dpo", "pg"] as const;
export type Loss = (typeof LOSSES)[number];

export function formFromSchedule(s: Schedule): ScheduleForm {
  const rule: Partial<Schemas["PromotionRule"]> = s.promotion_rule ?? {};
  return {
    mode: s.mode,
    cron: s.cron ?? "",
    everyK: s.every_k != null ? String(s.every_k) : "",
    sft: String(s.loss_mixture?.["sft"] ?? 0),
    dpo: String(s.loss_mixture?.["dpo"] ?? 0),
    pg: String(s.loss_mixture?.["pg"] ?? 0),
    steps: String(s.steps),
    learningRate: String(s.learning_rate),
    replayShare: String(s.replay_share),
    klCoef: String(s.kl_coef),
    copyGuard: String(s.copy_guard),
    maxRegression: String(rule.max_regression ?? PROMOTION_DEFAULTS.max_regression),
    requireImprovement: rule.require_improvement ?? PROMOTION_DEFAULTS.require_improvement,
    refuseCopies: rule.refuse_copies ?? PROMOTION_DEFAULTS.refuse_copies,
    preserveMin: String(rule.preserve_min ?? PROMOTION_DEFAULTS.preserve_min),
    preserveTolerance: String(rule.preserve_tolerance ?? PROMOTION_DEFAULTS.preserve_tolerance),
    minExamples: String(rule.min_examples ?? PROMOTION_DEFAULTS.min_examples),
    environmentTasks: String(rule.environment_tasks ?? PROMOTION_DEFAULTS.environment_tasks),
  };
}

/** A finite number from a form field, or null (empty, text, "1e", ...). */
export function parseNumber(text: string): number | null {
  const t = text.trim();
  if (!t || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function integer(text: string, min: number, max: number, what: string): [number | null, string | null] {
  const n = parseNumber(text);
  if (n === null || !Number.isInteger(n)) return [null, `${what} must be a whole number.`];
  if (n < min || n > max) return [null, `${what} must be between ${min} and ${max}.`];
  return [n, null];
}

function bounded(
  text: string,
  what: string,
  min: number,
  max: number,
  opts: { minExclusive?: boolean } = {},
): [number | null, string | null] {
  const n = parseNumber(text);
  if (n === null) return [null, `${what} must be a number.`];
  const low = opts.minExclusive ? n <= min : n < min;
  if (low || n > max) {
    return [null, `${what} must be ${opts.minExclusive ? "above" : "at least"} ${min} and at most ${max}.`];
  }
  return [n, null];
}

// Five fields: minute hour day-of-month month day-of-week. The gateway checks the expression
// again with croniter; cron-parser (a maintained parser) checks each field's values, ranges and
// steps here. Only standard syntax is offered (numbers, month and weekday names, *, a-b, /n,
// lists): croniter and cron-parser disagree on the extensions (H, L, W, #), and croniter
// would also take a sixth field, which this UI does not.
const CRON_FIELDS: { name: string; allowed: string; names?: string[] }[] = [
  { name: "minute", allowed: "0-59" },
  { name: "hour", allowed: "0-23" },
  { name: "day of month", allowed: "1-31" },
  {
    name: "month",
    allowed: "1-12 or jan-dec",
    names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
  },
  { name: "day of week", allowed: "0-7 (0 and 7 are Sunday) or sun-sat", names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];

/** What cron-parser finds wrong with an expression; null when it parses. */
function parseProblem(expression: string): string | null {
  try {
    CronExpressionParser.parse(expression);
    return null;
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).replace(/^Constraint error,\s*/i, "");
    return message.charAt(0).toLowerCase() + message.slice(1).replace(/\.$/, "");
  }
}

/** Null when the expression is a valid 5-field cron expression, else what is wrong with it. */
export function cronProblem(expression: string): string | null {
  const parts = expression.trim().split(/\s+/).filter(Boolean);
  if (parts.length !== 5) {
    return `A cron expression has 5 fields (minute hour day month weekday); this one has ${parts.length}.`;
  }
  for (let f = 0; f < 5; f++) {
    const spec = CRON_FIELDS[f]!;
    const field = parts[f]!;
    let standard = field.toLowerCase();
    for (const name of spec.names ?? []) standard = standard.replaceAll(name, "0");
    // Each field alone, the others left open, so that the message names the field at fault.
    const bad = !/^[0-9*,/-]+$/.test(standard) || parseProblem(parts.map((p, i) => (i === f ? p : "*")).join(" "));
    if (bad) {
      return `The ${spec.name} field '${field}' is not valid: use ${spec.allowed}, *, ranges a-b, steps /n, lists a,b.`;
    }
  }
  const problem = parseProblem(parts.join(" "));
  return problem ? `'${parts.join(" ")}' is not a valid cron expression: ${problem}.` : null;
}

/** Check the form; with no errors, `value` is the body for PUT /api/agents/{name}/schedule. */
export function validateSchedule(form: ScheduleForm): { errors: ScheduleErrors; value?: Schedule } {
  const errors: ScheduleErrors = {};
  let cron: string | null = null;
  let everyK: number | null = null;
  if (form.mode === "cron") {
    const problem = form.cron.trim() ? cronProblem(form.cron) : "Give a cron expression, such as 0 2 * * *.";
    if (problem) errors.cron = problem;
    else cron = form.cron.trim().split(/\s+/).join(" ");
  } else if (form.mode === "every_k") {
    const [k, problem] = integer(form.everyK, 1, 100_000, "K");
    if (problem) errors.everyK = problem;
    everyK = k;
  }
  const [sft, sftProblem] = bounded(form.sft, "The SFT weight", 0, 1_000);
  const [dpo, dpoProblem] = bounded(form.dpo, "The DPO weight", 0, 1_000);
  const [pg, pgProblem] = bounded(form.pg, "The PG (ratings) weight", 0, 1_000);
  if (sftProblem) errors.sft = sftProblem;
  if (dpoProblem) errors.dpo = dpoProblem;
  if (pgProblem) errors.pg = pgProblem;
  if (sft !== null && dpo !== null && pg !== null && sft + dpo + pg <= 0) {
    errors.lossMixture = "At least one loss needs a weight above 0.";
  }
  const [steps, stepsProblem] = integer(form.steps, 1, 10_000, "Steps");
  if (stepsProblem) errors.steps = stepsProblem;
  const [lr, lrProblem] = bounded(form.learningRate, "The learning rate", 0, 1, { minExclusive: true });
  if (lrProblem) errors.learningRate = lrProblem;
  const [replay, replayProblem] = bounded(form.replayShare, "The replay share", 0, 1);
  if (replayProblem) errors.replayShare = replayProblem;
  const [kl, klProblem] = bounded(form.klCoef, "The KL coefficient", 0, 1000);
  if (klProblem) errors.klCoef = klProblem;
  const [copyGuard, copyGuardProblem] = bounded(form.copyGuard, "The copy guard", 0, 10);
  if (copyGuardProblem) errors.copyGuard = copyGuardProblem;
  const rule = PROMOTION_BOUNDS;
  const [maxRegression, regressionProblem] = bounded(
    form.maxRegression, "The allowed regression", rule.max_regression.min, rule.max_regression.max,
  );
  if (regressionProblem) errors.maxRegression = regressionProblem;
  const [preserveMin, preserveProblem] = bounded(
    form.preserveMin, "The least agreement", rule.preserve_min.min, rule.preserve_min.max,
  );
  if (preserveProblem) errors.preserveMin = preserveProblem;
  const [preserveTolerance, toleranceProblem] = bounded(
    form.preserveTolerance, "The agreement's tolerance", rule.preserve_tolerance.min, rule.preserve_tolerance.max,
  );
  if (toleranceProblem) errors.preserveTolerance = toleranceProblem;
  const [minExamples, examplesProblem] = integer(
    form.minExamples, rule.min_examples.min, rule.min_examples.max, "The examples a signal needs",
  );
  if (examplesProblem) errors.minExamples = examplesProblem;
  const [environmentTasks, tasksProblem] = integer(
    form.environmentTasks, rule.environment_tasks.min, rule.environment_tasks.max, "Environment tasks",
  );
  if (tasksProblem) errors.environmentTasks = tasksProblem;
  if (Object.keys(errors).length) return { errors };
  const mixture: Record<string, number> = {};
  if (sft! > 0) mixture["sft"] = sft!;
  if (dpo! > 0) mixture["dpo"] = dpo!;
  if (pg! > 0) mixture["pg"] = pg!;
  return {
    errors,
    value: {
      mode: form.mode,
      cron,
      every_k: everyK,
      loss_mixture: mixture,
      steps: steps!,
      learning_rate: lr!,
      replay_share: replay!,
      kl_coef: kl!,
      copy_guard: copyGuard!,
      promotion_rule: {
        max_regression: maxRegression!,
        require_improvement: form.requireImprovement,
        refuse_copies: form.refuseCopies,
        preserve_min: preserveMin!,
        preserve_tolerance: preserveTolerance!,
        min_examples: minExamples!,
        environment_tasks: environmentTasks!,
      },
    },
  };
}

/** The loss mixture as shares of one, for display ("SFT 67% · DPO 33%"). */
export function mixtureShares(form: Pick<ScheduleForm, "sft" | "dpo"> & Partial<Pick<ScheduleForm, "pg">>): string {
  const weights = LOSSES.map((loss) => [loss, Math.max(parseNumber(form[loss] ?? "") ?? 0, 0)] as const);
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  if (total <= 0) return "no loss selected";
  return weights
    .filter(([, w]) => w > 0)
    .map(([loss, w]) => `${loss.toUpperCase()} ${Math.round((100 * w) / total)}%`)
    .join(" · ");
}

/** Map an API error's `param` (e.g. "promotion_rule.max_regression") to a form field. */
export function fieldOfParam(param: string | null): keyof ScheduleErrors | null {
  if (!param) return null;
  const map: Record<string, keyof ScheduleErrors> = {
    mode: "mode",
    cron: "cron",
    every_k: "everyK",
    loss_mixture: "lossMixture",
    steps: "steps",
    learning_rate: "learningRate",
    replay_share: "replayShare",
    kl_coef: "klCoef",
    copy_guard: "copyGuard",
    "promotion_rule.max_regression": "maxRegression",
    "promotion_rule.require_improvement": "requireImprovement",
    "promotion_rule.refuse_copies": "refuseCopies",
    "promotion_rule.preserve_min": "preserveMin",
    "promotion_rule.preserve_tolerance": "preserveTolerance",
    "promotion_rule.min_examples": "minExamples",
    "promotion_rule.environment_tasks": "environmentTasks",
  };
  return map[param] ?? (param.startsWith("loss_mixture") ? "lossMixture" : null);
}
