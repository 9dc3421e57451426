// Small presentational pieces used across the pages.
import type { ReactNode } from "react";
import { ApiError } from "../api/client";

/** An error as a sentence next to what caused it (nothing when there is no error). */
export function ErrorText({ error, id }: { error: Error | string | null | undefined; id?: string }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.message;
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : "";
  return (
    <p className="error" role="alert" id={id}>
      {text}
      {status && <span className="muted">{status}</span>}
    </p>
  );
}

export function Field({
  label,
  error,
  hint,
  children,
  htmlFor,
}: {
  label: string;
  error?: string | null;
  hint?: ReactNode;
  children: ReactNode;
  htmlFor: string;
}) {
  return (
    <div className={`field${error ? " invalid" : ""}`}>
      <label htmlFor={htmlFor}>{label}</label>
      {children}
      {hint && !error && <small className="hint">{hint}</small>}
      {error && (
        <small className="error" role="alert" id={`${htmlFor}-error`}>
          {error}
        </small>
      )}
    </div>
  );
}

/** A progress bar for long operations; `value` in 0..1, or null while it is unknown. */
export function Progress({ value, label }: { value: number | null; label: string }) {
  const pct = value == null ? null : Math.round(Math.min(Math.max(value, 0), 1) * 100);
  return (
    <div
      className={`progress${pct == null ? " indeterminate" : ""}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={pct ?? undefined}
    >
      <div className="bar" style={{ width: pct == null ? "30%" : `${pct}%` }} />
      <span className="progress-text">{pct == null ? "waiting…" : `${pct}%`}</span>
    </div>
  );
}

const STATUS_TONES: Record<string, string> = {
  live: "good",
  succeeded: "good",
  running: "busy",
  queued: "busy",
  candidate: "info",
  retired: "muted",
  rejected: "warn",
  cancelled: "muted",
  failed: "bad",
  needs_evaluation: "attention",
};

/** A run's or a version's status; "needs_evaluation" reads "needs evaluation". */
export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge ${STATUS_TONES[status] ?? "info"}`}>{status.replace(/_/g, " ")}</span>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted loading" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function Kbd({ children }: { children: ReactNode }) {
  return <kbd>{children}</kbd>;
}

/** A thumbs-up (or, with up={false}, thumbs-down) icon that needs no emoji font. */
export function Thumb({ up = true }: { up?: boolean }) {
  return (
    <svg
      className="icon"
      width="14"
      height="14"
      viewBox="0 0 24 24"
      aria-hidden="true"
      style={up ? undefined : { transform: "rotate(180deg)" }}
    >
      <path
        fill="currentColor"
        d="M2 21h3.5V9H2v12zm19.5-10.5c0-1.1-.9-2-2-2h-6.3l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L12.68 1 6.8 6.88c-.33.33-.55.8-.55 1.32V19c0 1.1.9 2 2 2h8.6c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-1.5z"
      />
    </svg>
  );
}
