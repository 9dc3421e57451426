// One's own account: change the password (other sessions end; this one goes on).
import { useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, unwrap } from "../api/client";
import { useSession } from "../auth/session";
import { ErrorText, Field } from "../components/ui";
import { passwordProblem } from "../lib/validate";

export function AccountPage() {
  const { me } = useSession();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const change = useMutation({
    mutationFn: () => unwrap(api.POST("/api/auth/password", { body: { current_password: current, new_password: next } })),
    onSuccess: () => {
      setCurrent("");
      setNext("");
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = passwordProblem(next);
    setProblem(found);
    if (!found) change.mutate();
  };
  return (
    <div className="page">
      <header className="page-head">
        <h1>Account</h1>
        <span className="muted">{me?.email}</span>
      </header>
      <form className="card inline-form" onSubmit={submit} noValidate aria-label="Change password">
        <h2>Change password</h2>
        <Field label="Current password" htmlFor="current-password">
          <input id="current-password" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
        </Field>
        <Field label="New password" htmlFor="new-password" error={problem} hint="your other sessions end">
          <input id="new-password" type="password" autoComplete="new-password" value={next} onChange={(e) => { setNext(e.target.value); setProblem(null); }} />
        </Field>
        <button type="submit" className="primary" disabled={change.isPending}>
          {change.isPending ? "Changing…" : "Change password"}
        </button>
        {change.isSuccess && <p className="good" role="status">Password changed. Your other sessions have ended.</p>}
        <ErrorText error={change.error} />
      </form>
    </div>
  );
}
