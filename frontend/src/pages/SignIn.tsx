import { useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Navigate, useLocation, useNavigate } from "react-router";
import { isAdmin, useSession } from "../auth/session";
import { ErrorText, Field } from "../components/ui";
import { emailProblem } from "../lib/validate";

export function SignIn() {
  const { status, signIn, notice } = useSession();
  const navigate = useNavigate();
  const location = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<{ email?: string | null; password?: string | null }>({});
  const action = useMutation({ mutationFn: ({ email, password }: { email: string; password: string }) => signIn(email, password) });
  const from = (location.state as { from?: string } | null)?.from;

  if (status === "signed-in") return <Navigate to={from ?? "/"} replace />;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = {
      email: emailProblem(email),
      password: password ? null : "Give your password.",
    };
    setErrors(found);
    if (found.email || found.password) return;
    action.mutate(
      { email: email.trim().toLowerCase(), password },
      { onSuccess: (me) => navigate(from ?? (isAdmin(me) ? "/admin/agents" : "/review"), { replace: true }) },
    );
  };

  return (
    <div className="signin-page">
      <form className="card signin" onSubmit={submit} noValidate aria-label="Sign in">
        <h1>
          <img src="/favicon.svg" alt="" width={28} height={28} /> Sign in to clora
        </h1>
        {notice && <p className="notice">{notice}</p>}
        <Field label="Email" htmlFor="signin-email" error={errors.email}>
          <input
            id="signin-email"
            type="email"
            autoComplete="username"
            value={email}
            onChange={(e) => {
              setEmail(e.target.value);
              setErrors((x) => ({ ...x, email: null }));
            }}
            autoFocus
          />
        </Field>
        <Field label="Password" htmlFor="signin-password" error={errors.password}>
          <input
            id="signin-password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => {
              setPassword(e.target.value);
              setErrors((x) => ({ ...x, password: null }));
            }}
          />
        </Field>
        <ErrorText error={action.error} />
        <button type="submit" className="primary wide" disabled={action.isPending || status === "loading"}>
          {action.isPending ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
