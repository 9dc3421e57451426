// What the promotion gate decided about a candidate: the verdict, the failing signal with the
// reason, the signals it compared (parent → candidate), and a promotion forced over it.
import type { ReactNode } from "react";
import type { Schemas } from "../api/client";
import { formatTime } from "../lib/format";
import {
  type ChangedAnswer,
  type Forced,
  type Gate,
  type Signals,
  VERDICT_LABELS,
  forcedOf,
  gateOf,
  signalLabel,
  signalRows,
  signalsOf,
} from "../lib/gate";

const VERDICT_TONES = { passed: "good", failed: "bad", needs_evaluation: "attention" } as const;

export function VerdictBadge({ gate }: { gate: Gate }) {
  return (
    <span
      className={`badge ${VERDICT_TONES[gate.verdict]}`}
      data-verdict={gate.verdict}
      title={`promotion gate: ${VERDICT_LABELS[gate.verdict]}${gate.reason ? ` (${gate.reason})` : ""}`}
    >
      {VERDICT_LABELS[gate.verdict]}
    </span>
  );
}

export function ForcedBadge({ forced }: { forced: Forced }) {
  const over = forced.verdict ? `over a ${VERDICT_LABELS[forced.verdict as Gate["verdict"]] ?? forced.verdict} gate` : "";
  return (
    <span className="badge forced" data-testid="forced" title={[over, forced.at && formatTime(forced.at)].filter(Boolean).join(", ")}>
      forced by {forced.by ?? "an admin"}
      {forced.action === "roll back" ? " (roll back)" : ""}
    </span>
  );
}

/** The gate's signals: name, examples, parent → candidate (or agreement vs the minimum). */
export function SignalsTable({ signals, failed = null }: { signals: Signals; failed?: string | null }) {
  const rows = signalRows(signals, failed);
  return (
    <table className="signals" aria-label="Gate signals">
      <thead>
        <tr>
          <th>Signal</th>
          <th className="num">n</th>
          <th title="parent → candidate; preservation: agreement with the parent (least allowed)">Before → after</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => (
          <tr key={row.name} data-signal={row.name} className={row.failed ? "failed-signal" : undefined}>
            <td title={row.hint}>
              {row.label}
              {row.failed && <span className="badge bad">failed</span>}
            </td>
            <td className="num">{row.n}</td>
            <td>
              {row.n === 0 ? (
                <span className="muted">no examples</span>
              ) : (
                <>
                  <span className={row.meetsMin === false ? "down" : undefined}>{row.result}</span>
                  {row.delta != null && row.delta !== 0 && (
                    <span className={row.delta > 0 ? "up" : "down"}>
                      {" "}
                      ({row.delta > 0 ? "+" : ""}
                      {row.delta})
                    </span>
                  )}
                </>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The held-back prompts the candidate answers differently from its parent (up to five). */
export function ChangedAnswers({ signals }: { signals: Signals }) {
  const p = signals.preservation;
  const c = signals.copies;
  const changedCount =
    p && (p.agreement == null ? p.changed.length : Math.round((1 - p.agreement) * p.n) + p.noWorse);
  return (
    <>
      {p && p.changed.length > 0 && changedCount != null && (
        <AnswerPairs testId="changed-answers" label="Changed answers" answers={p.changed}>
          {changedCount} of {p.n} held-back answers changed
          {changedCount > p.changed.length ? ` (first ${p.changed.length} shown)` : ""}
          {p.noWorse > 0 ? `; ${p.noWorse} of them no worse by the environment's grading, counted as kept` : ""}
        </AnswerPairs>
      )}
      {c && c.copied.length > 0 && (
        <AnswerPairs testId="copied-answers" label="Copied answers" answers={c.copied}>
          {c.after} of {c.n} held-back prompts answered with a correction's answer verbatim (the parent: {c.before})
        </AnswerPairs>
      )}
    </>
  );
}

function AnswerPairs({
  testId,
  label,
  answers,
  children,
}: {
  testId: string;
  label: string;
  answers: ChangedAnswer[];
  children: ReactNode;
}) {
  return (
    <details className="changed-answers" data-testid={testId}>
      <summary>{children}</summary>
      <table aria-label={label}>
        <thead>
          <tr>
            <th>Prompt</th>
            <th>Parent</th>
            <th>Candidate</th>
          </tr>
        </thead>
        <tbody>
          {answers.map((a, i) => (
            <tr key={i}>
              <td>{a.prompt}</td>
              <td>
                <code>{a.parent}</code>
              </td>
              <td>
                <code>{a.candidate}</code>
                {a.kind && <span className="muted"> ({a.kind.replace("->", " → ")})</span>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}

/** Why the gate decided as it did, with the failing signal named first. */
export function GateReason({
  verdict,
  reason,
  failedSignal,
}: {
  verdict: Gate["verdict"] | null;
  reason: string;
  failedSignal: string | null;
}) {
  const tone = verdict === "failed" || failedSignal ? "failed" : verdict === "needs_evaluation" ? "attention" : "muted";
  // The gate's reasons start with the signal's key ("held_out: ..."); it is named already.
  const text = failedSignal && reason.startsWith(`${failedSignal}: `) ? reason.slice(failedSignal.length + 2) : reason;
  return (
    <p className={`gate-reason ${tone}`} data-testid="gate-reason">
      {failedSignal && <strong data-failed-signal={failedSignal}>{signalLabel(failedSignal)} failed: </strong>}
      {text}
    </p>
  );
}

/** A version's gate record (verdict, forced promotion, reason, signals); nothing when it has none. */
export function GateSummary({ metrics, signals: raw }: { metrics: unknown; signals: Schemas["Signals"] | null | undefined }) {
  const gate = gateOf(metrics);
  const signals = signalsOf(raw);
  const forced = forcedOf(metrics);
  if (!gate && !signals && !forced) return null;
  return (
    <div className="gate">
      {(gate || forced) && (
        <div className="gate-badges">
          {gate && <VerdictBadge gate={gate} />}
          {forced && <ForcedBadge forced={forced} />}
        </div>
      )}
      {gate?.reason && <GateReason verdict={gate.verdict} reason={gate.reason} failedSignal={gate.failedSignal} />}
      {signals && <SignalsTable signals={signals} failed={gate?.failedSignal ?? null} />}
      {signals && <ChangedAnswers signals={signals} />}
    </div>
  );
}
