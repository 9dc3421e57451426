// The learning-cycle schedule editor: when cycles run, what they train, and when a candidate
// may replace the live version. Bad input stays in the browser with a message per field.
import { type FormEvent, useState } from "react";
import { ApiError } from "../api/client";
import { PROMOTION_BOUNDS } from "../lib/apiSchema";
import {
  CRON_PRESETS,
  fieldOfParam,
  formFromSchedule,
  mixtureShares,
  type Schedule,
  type ScheduleErrors,
  type ScheduleForm,
  validateSchedule,
} from "../lib/schedule";
import { ErrorText, Field } from "./ui";

interface Props {
  schedule: Schedule;
  onSave: (value: Schedule) => Promise<unknown> | void;
  saving?: boolean;
  /** The gateway's answer to the last save, shown on its field when it names one. */
  serverError?: Error | null;
  readOnly?: boolean;
}

const rule = PROMOTION_BOUNDS;

/** "0..1, default 0.95": a field's bounds and the gateway's default. */
function range(b: { min: number; max: number; default: number }): string {
  return `${b.min}..${b.max}, default ${b.default}`;
}

const MODES: { value: Schedule["mode"]; label: string; hint: string }[] = [
  { value: "manual", label: "By hand", hint: "Cycles run only when an admin starts one." },
  { value: "cron", label: "On a cron schedule", hint: "Cycles start at the times a cron expression names (UTC)." },
  { value: "every_k", label: "Every K feedback items", hint: "A cycle starts once K new feedback items arrived." },
];

export function ScheduleEditor({ schedule, onSave, saving = false, serverError = null, readOnly = false }: Props) {
  const [form, setForm] = useState<ScheduleForm>(() => formFromSchedule(schedule));
  const [errors, setErrors] = useState<ScheduleErrors>({});
  const [saved, setSaved] = useState(false);
  // A new schedule from the gateway (after a save, or another admin's) replaces the form; set
  // while rendering, so the stale form is never painted.
  const [shown, setShown] = useState(schedule);
  if (schedule !== shown) {
    setShown(schedule);
    setForm(formFromSchedule(schedule));
  }

  const set = <K extends keyof ScheduleForm>(key: K, value: ScheduleForm[K]) => {
    setForm((f) => ({ ...f, [key]: value }));
    setErrors((e) => ({ ...e, [key]: undefined, ...(key === "sft" || key === "dpo" || key === "pg" ? { lossMixture: undefined } : {}) }));
    setSaved(false);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const { errors: found, value } = validateSchedule(form);
    setErrors(found);
    if (!value) return;
    await onSave(value);
    setSaved(true);
  };

  const serverField = serverError instanceof ApiError ? fieldOfParam(serverError.param) : null;
  const errorOf = (key: keyof ScheduleErrors) =>
    errors[key] ?? (serverField === key && serverError ? serverError.message : undefined);
  const mode = MODES.find((m) => m.value === form.mode)!;

  return (
    <form className="schedule-editor" onSubmit={submit} noValidate aria-label="Learning-cycle schedule">
      <fieldset disabled={readOnly || saving}>
        <legend>When</legend>
        <div className="radio-row" role="radiogroup" aria-label="Mode">
          {MODES.map((m) => (
            <label key={m.value} className="radio">
              <input
                type="radio"
                name="mode"
                value={m.value}
                checked={form.mode === m.value}
                onChange={() => set("mode", m.value)}
              />
              {m.label}
            </label>
          ))}
        </div>
        <small className="hint">{mode.hint}</small>
        {form.mode === "cron" && (
          <Field
            label="Cron expression"
            htmlFor="schedule-cron"
            error={errorOf("cron")}
            hint="minute hour day-of-month month day-of-week"
          >
            <input
              id="schedule-cron"
              value={form.cron}
              placeholder="0 2 * * *"
              onChange={(e) => set("cron", e.target.value)}
              spellCheck={false}
            />
            <div className="presets">
              {CRON_PRESETS.map((p) => (
                <button key={p.cron} type="button" className="link" onClick={() => set("cron", p.cron)}>
                  {p.label}
                </button>
              ))}
            </div>
          </Field>
        )}
        {form.mode === "every_k" && (
          <Field label="K (new feedback items)" htmlFor="schedule-every-k" error={errorOf("everyK")}>
            <input
              id="schedule-every-k"
              inputMode="numeric"
              value={form.everyK}
              onChange={(e) => set("everyK", e.target.value)}
            />
          </Field>
        )}
      </fieldset>

      <fieldset disabled={readOnly || saving}>
        <legend>What to train</legend>
        <div className="grid-3">
          <Field label="SFT weight" htmlFor="schedule-sft" error={errorOf("sft")} hint="corrections">
            <input id="schedule-sft" inputMode="decimal" value={form.sft} onChange={(e) => set("sft", e.target.value)} />
          </Field>
          <Field label="DPO weight" htmlFor="schedule-dpo" error={errorOf("dpo")} hint="preferences">
            <input id="schedule-dpo" inputMode="decimal" value={form.dpo} onChange={(e) => set("dpo", e.target.value)} />
          </Field>
          <Field label="PG weight" htmlFor="schedule-pg" error={errorOf("pg")} hint="ratings (policy gradient)">
            <input id="schedule-pg" inputMode="decimal" value={form.pg} onChange={(e) => set("pg", e.target.value)} />
          </Field>
        </div>
        <p className="hint" data-testid="mixture">
          Loss mixture: {mixtureShares(form)}
        </p>
        <ErrorText error={errorOf("lossMixture")} />
        <div className="grid-2">
          <Field label="Steps" htmlFor="schedule-steps" error={errorOf("steps")}>
            <input id="schedule-steps" inputMode="numeric" value={form.steps} onChange={(e) => set("steps", e.target.value)} />
          </Field>
          <Field label="Learning rate" htmlFor="schedule-lr" error={errorOf("learningRate")}>
            <input
              id="schedule-lr"
              inputMode="decimal"
              value={form.learningRate}
              onChange={(e) => set("learningRate", e.target.value)}
            />
          </Field>
          <Field label="Replay share" htmlFor="schedule-replay" error={errorOf("replayShare")} hint="0..1 of each batch">
            <input
              id="schedule-replay"
              inputMode="decimal"
              value={form.replayShare}
              onChange={(e) => set("replayShare", e.target.value)}
            />
          </Field>
          <Field label="KL coefficient" htmlFor="schedule-kl" error={errorOf("klCoef")}>
            <input id="schedule-kl" inputMode="decimal" value={form.klCoef} onChange={(e) => set("klCoef", e.target.value)} />
          </Field>
          <Field
            label="Copy guard"
            htmlFor="schedule-copy-guard"
            error={errorOf("copyGuard")}
            hint="trains prompts near a correction away from its answer verbatim; 0 is off"
          >
            <input
              id="schedule-copy-guard"
              inputMode="decimal"
              value={form.copyGuard}
              onChange={(e) => set("copyGuard", e.target.value)}
            />
          </Field>
        </div>
      </fieldset>

      <fieldset disabled={readOnly || saving}>
        <legend>Promotion rule</legend>
        <div className="grid-2">
          <Field
            label="Largest allowed drop of the held-out score"
            htmlFor="schedule-max-regression"
            error={errorOf("maxRegression")}
            hint={`absolute, ${range(rule.max_regression)}; also bounds the environment reward; 0 means it must not fall at all`}
          >
            <input
              id="schedule-max-regression"
              inputMode="decimal"
              value={form.maxRegression}
              onChange={(e) => set("maxRegression", e.target.value)}
            />
          </Field>
          <Field
            label="Least agreement with the parent on untouched prompts"
            htmlFor="schedule-preserve-min"
            error={errorOf("preserveMin")}
            hint={`share of held-back prompts whose answer was kept, ${range(rule.preserve_min)}`}
          >
            <input
              id="schedule-preserve-min"
              inputMode="decimal"
              value={form.preserveMin}
              onChange={(e) => set("preserveMin", e.target.value)}
            />
          </Field>
          <Field
            label="Tolerance on the agreement measured"
            htmlFor="schedule-preserve-tolerance"
            error={errorOf("preserveTolerance")}
            hint={`refused below the least agreement minus this, whatever the confidence bound, ${range(rule.preserve_tolerance)}`}
          >
            <input
              id="schedule-preserve-tolerance"
              inputMode="decimal"
              value={form.preserveTolerance}
              onChange={(e) => set("preserveTolerance", e.target.value)}
            />
          </Field>
          <Field
            label="Examples a signal needs to count"
            htmlFor="schedule-min-examples"
            error={errorOf("minExamples")}
            hint={`whole number, ${range(rule.min_examples)}; with no signal that has them the cycle ends needs evaluation`}
          >
            <input
              id="schedule-min-examples"
              inputMode="numeric"
              value={form.minExamples}
              onChange={(e) => set("minExamples", e.target.value)}
            />
          </Field>
          <Field
            label="Environment tasks"
            htmlFor="schedule-environment-tasks"
            error={errorOf("environmentTasks")}
            hint={`held-out tasks played on parent and candidate (agents with an environment), ${range(rule.environment_tasks)}; 0 turns the signal off`}
          >
            <input
              id="schedule-environment-tasks"
              inputMode="numeric"
              value={form.environmentTasks}
              onChange={(e) => set("environmentTasks", e.target.value)}
            />
          </Field>
        </div>
        <label className="check">
          <input
            type="checkbox"
            checked={form.requireImprovement}
            onChange={(e) => set("requireImprovement", e.target.checked)}
          />
          Promote only when the candidate answers this cycle's corrections better than its parent
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={form.refuseCopies}
            onChange={(e) => set("refuseCopies", e.target.checked)}
          />
          Refuse a candidate that copies a correction's answer onto other prompts (off for answers meant to be said
          everywhere)
        </label>
      </fieldset>

      {!readOnly && (
        <div className="actions">
          <button type="submit" className="primary" disabled={saving}>
            {saving ? "Saving…" : "Save schedule"}
          </button>
          {saved && !serverError && !saving && <span className="ok">Saved.</span>}
        </div>
      )}
      {Object.values(errors).some(Boolean) && (
        <ErrorText error="Some fields need fixing; nothing was saved." />
      )}
      {serverError && !serverField && <ErrorText error={serverError} />}
    </form>
  );
}
