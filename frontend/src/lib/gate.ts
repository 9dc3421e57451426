// The promotion gate's record of a version or a cycle run (app/cycles/gate.py): the verdict, the
// signals it compared (parent "before", candidate "after": the API's typed `signals`), and a
// forced promotion (read defensively from the free-form `metrics`).
import type { Schemas } from "../api/client";

export type Verdict = "passed" | "failed" | "needs_evaluation";

export interface Gate {
  verdict: Verdict;
  reason: string;
  failedSignal: string | null;
}

/** A score measured on the parent (before) and the candidate (after); null when n is 0. */
export interface ScoreSignal {
  n: number;
  before: number | null;
  after: number | null;
}

/** The share of held-back untouched prompts whose answer the candidate kept: the parent's exactly, or,
 * where the agent's environment grades the prompt, not a right answer turned wrong. */
export interface PreservationSignal {
  n: number;
  agreement: number | null;
  min: number | null;
  /** The most the agreement could be, with 90% confidence: what the gate compares with `min`. */
  upperBound: number | null;
  /** Fewer prompts than this and the gate does not count the signal (null on older records). */
  minExamples: number | null;
  /** The agreement measured must reach this too, whatever the bound (null on older records). */
  floor: number | null;
  /** Up to five held-back prompts answered differently: the parent's answer and the candidate's. */
  changed: ChangedAnswer[];
  /** How many prompts the agent's environment graded (null: no environment). */
  graded: number | null;
  /** Changed answers counted as kept: graded, and not a right answer turned wrong (0 without an environment). */
  noWorse: number;
}

export interface ChangedAnswer {
  prompt: string;
  parent: string;
  candidate: string;
  /** Where the environment graded the prompt: "right->wrong", "wrong->wrong", ...; null where not. */
  kind: string | null;
}

/** Held-back prompts answered with another conversation's corrected answer verbatim. */
export interface CopiesSignal {
  n: number;
  /** Prompts near a correction among the n. */
  near: number;
  /** Copies by the parent (before) and the candidate (after). */
  before: number;
  after: number;
  /** The most copies the gate allows the candidate, from the parent's own rate. */
  allowed: number | null;
  /** Up to five prompts the candidate copied onto and the parent did not. */
  copied: ChangedAnswer[];
}

export interface EnvironmentSignal extends ScoreSignal {
  name: string | null;
}

export interface Signals {
  corrections?: ScoreSignal;
  held_out?: ScoreSignal;
  validation?: ScoreSignal;
  preservation?: PreservationSignal;
  copies?: CopiesSignal;
  environment?: EnvironmentSignal;
}

export interface Forced {
  by: string | null;
  at: string | null;
  verdict: string | null;
  /** "promote", or "roll back" (a rollback to a version that never passed). */
  action: string | null;
}

export const SIGNAL_NAMES = ["corrections", "held_out", "validation", "preservation", "copies", "environment"] as const;
export type SignalName = (typeof SIGNAL_NAMES)[number];

export const VERDICT_LABELS: Record<Verdict, string> = {
  passed: "passed",
  failed: "failed",
  needs_evaluation: "needs evaluation",
};

const SIGNAL_LABELS: Record<SignalName, string> = {
  corrections: "corrections",
  held_out: "held-out",
  validation: "validation file",
  preservation: "preservation",
  copies: "copies",
  environment: "environment",
};

const SIGNAL_HINTS: Record<SignalName, string> = {
  corrections: "this cycle's corrected prompts answered as corrected",
  held_out: "held-out corrections and golden examples",
  validation: "a fine-tuning job's validation file, answered as its lines answer (or its grader's score)",
  preservation: "held-back untouched prompts whose answer was kept (or, graded by the environment, is no worse)",
  copies: "held-back prompts (those near a correction first) answered with another prompt's correction verbatim",
  environment: "mean reward on held-out environment tasks",
};

type Json = Record<string, unknown>;

function object(value: unknown): Json | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : null;
}

function text(value: unknown): string | null {
  return typeof value === "string" && value ? value : null;
}

/** The gate's verdict recorded in `metrics.gate`, or null (versions no cycle made). */
export function gateOf(metrics: unknown): Gate | null {
  const gate = object(object(metrics)?.["gate"]);
  const verdict = gate?.["verdict"];
  if (verdict !== "passed" && verdict !== "failed" && verdict !== "needs_evaluation") return null;
  return { verdict, reason: text(gate?.["reason"]) ?? "", failedSignal: text(gate?.["failed_signal"]) };
}

function answers(value: Schemas["ChangedAnswer"][] | undefined): ChangedAnswer[] {
  return (value ?? []).map((c) => ({
    prompt: c.prompt ?? "",
    parent: c.parent ?? "",
    candidate: c.candidate ?? "",
    kind: c.kind ?? null,
  }));
}

type ApiSignals = Schemas["Signals"];

/** The signals the API returns with a version or a run (`signals`, one schema with the
 * gateway's: app/adapters/signals.py), for display; null when there are none. Every bound
 * comes from the gateway: nothing here recomputes the gate's statistics. */
export function signalsOf(raw: ApiSignals | null | undefined): Signals | null {
  if (!raw) return null;
  const signals: Signals = {};
  const score = (s: Schemas["ScoreSignal"]): ScoreSignal => ({ n: s.n, before: s.before ?? null, after: s.after ?? null });
  if (raw.corrections) signals.corrections = score(raw.corrections);
  if (raw.held_out) signals.held_out = score(raw.held_out);
  if (raw.validation) signals.validation = score(raw.validation);
  if (raw.preservation) {
    const p = raw.preservation;
    signals.preservation = {
      n: p.n,
      agreement: p.agreement ?? null,
      min: p.min ?? null,
      upperBound: p.upper_bound ?? null,
      minExamples: p.min_examples ?? null,
      floor: p.floor ?? null,
      changed: answers(p.changed),
      graded: p.graded ?? null,
      noWorse: p.no_worse ?? 0,
    };
  }
  if (raw.copies) {
    const c = raw.copies;
    signals.copies = {
      n: c.n,
      near: c.near ?? 0,
      before: c.before ?? 0,
      after: c.after ?? 0,
      allowed: c.allowed ?? null,
      copied: answers(c.copied),
    };
  }
  if (raw.environment) signals.environment = { ...score(raw.environment), name: raw.environment.name ?? null };
  return Object.keys(signals).length ? signals : null;
}

/** Who promoted the version over the gate (`metrics.forced`), or null. */
export function forcedOf(metrics: unknown): Forced | null {
  const forced = object(object(metrics)?.["forced"]);
  if (!forced) return null;
  return { by: text(forced["by"]), at: text(forced["at"]), verdict: text(forced["verdict"]), action: text(forced["action"]) };
}

/** Whether promoting needs `force: true`: the gate failed it, or had nothing to compare it on. */
export function needsForce(metrics: unknown): boolean {
  const verdict = gateOf(metrics)?.verdict;
  return verdict === "failed" || verdict === "needs_evaluation";
}

/** A share of one as a percentage with at most one decimal ("95%", "94.6%", "—"). */
export function share(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  return `${Number((value * 100).toFixed(1))}%`;
}

export interface SignalRow {
  name: SignalName;
  label: string;
  hint: string;
  n: number;
  /** "80% → 95%", "97.5% (min 95%)", or "—" when nothing was measured. */
  result: string;
  /** after - before in percentage points, for score signals measured on both sides. */
  delta: number | null;
  /** Preservation: whether the agreement reaches the minimum (null when unmeasured). */
  meetsMin: boolean | null;
  failed: boolean;
}

/** Whether the gate counted the signal: it ignores one with fewer than `min_examples` prompts. */
function counted(p: PreservationSignal): boolean {
  return p.minExamples == null || p.n >= p.minExamples;
}

/** " (min 95%)", and below the minimum the bound the gate judged by: a few changed answers
 * among few prompts are not yet evidence that agreement is below the minimum. */
function preservationLimit(p: PreservationSignal): string {
  if (p.min == null) return "";
  if (!counted(p)) return ` (min ${share(p.min)}; too few to count, under ${p.minExamples})`;
  if (p.agreement != null && p.floor != null && p.agreement < p.floor - 1e-9) {
    return ` (min ${share(p.min)}; refused below ${share(p.floor)})`;
  }
  if (p.agreement != null && p.upperBound != null && p.agreement < p.min - 1e-9) {
    return ` (min ${share(p.min)}; up to ${share(p.upperBound)} with 90% confidence)`;
  }
  return ` (min ${share(p.min)})`;
}

/** The signals as table rows, in the gate's order; `failed` names the signal that failed. */
export function signalRows(signals: Signals, failed: string | null = null): SignalRow[] {
  const rows: SignalRow[] = [];
  for (const name of SIGNAL_NAMES) {
    const s = signals[name];
    if (!s) continue;
    const base = { name, hint: SIGNAL_HINTS[name], n: s.n, failed: failed === name };
    if (name === "preservation") {
      const p = s as PreservationSignal;
      rows.push({
        ...base,
        label: SIGNAL_LABELS[name],
        result: p.agreement == null ? "—" : `${share(p.agreement)}${preservationLimit(p)}`,
        delta: null,
        meetsMin:
          p.agreement == null || p.min == null || !counted(p)
            ? null
            : (p.upperBound ?? p.agreement) >= p.min - 1e-9 && (p.floor == null || p.agreement >= p.floor - 1e-9),
      });
    } else if (name === "copies") {
      const c = s as CopiesSignal;
      const limit = c.allowed == null ? "" : ` (at most ${c.allowed})`;
      rows.push({
        ...base,
        label: SIGNAL_LABELS[name],
        result: `${c.before} → ${c.after} copies${limit}`,
        delta: null,
        meetsMin: c.allowed == null ? null : c.after <= c.allowed,
      });
    } else {
      const score = s as ScoreSignal;
      const env = name === "environment" ? (s as EnvironmentSignal).name : null;
      const measured = score.before != null || score.after != null;
      rows.push({
        ...base,
        label: env ? `${SIGNAL_LABELS[name]} (${env})` : SIGNAL_LABELS[name],
        result: measured ? `${share(score.before)} → ${share(score.after)}` : "—",
        delta:
          score.before != null && score.after != null ? Number(((score.after - score.before) * 100).toFixed(1)) : null,
        meetsMin: null,
      });
    }
  }
  return rows;
}

export function signalLabel(name: string): string {
  return (SIGNAL_LABELS as Record<string, string>)[name] ?? name;
}

/** Which fine-tuning job trained a version (`metrics.fine_tuning`), as the versions table
 * shows it: the job id, and its suffix when it had one. */
export function fineTuningOf(metrics: unknown): string | null {
  const ft = object(object(metrics)?.["fine_tuning"]);
  const job = text(ft?.["job"]);
  if (!job) return null;
  const suffix = text(ft?.["suffix"]);
  return suffix ? `${job} (${suffix})` : job;
}
