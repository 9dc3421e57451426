// One's own account: change the password (other sessions end; this one goes on), and one's
// personal access tokens for `clora --url URL --token TOKEN` and scripts (shown once, revoked).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, type Schemas, unwrap } from "../api/client";
import { useSession } from "../auth/session";
import { RevokeCell, ShownOnce } from "../components/secrets";
import { ErrorText, Field, Loading } from "../components/ui";
import { ago, formatTime } from "../lib/format";
import { passwordProblem, requiredProblem } from "../lib/validate";

type Token = Schemas["TokenOut"];
const TOKENS = ["tokens"];

function TokenRow({ t }: { t: Token }) {
  const queryClient = useQueryClient();
  const revoke = useMutation({
    mutationFn: () => unwrap(api.POST("/api/auth/tokens/{token_id}/revoke", { params: { path: { token_id: t.id } } })),
    onSuccess: () => {
      return queryClient.invalidateQueries({ queryKey: TOKENS });
    },
  });
  return (
    <tr data-token={t.name}>
      <td>{t.name}</td>
      <td className="mono">{t.prefix}…</td>
      <td title={formatTime(t.created_at)}>{ago(t.created_at)}</td>
      <td>{t.last_used_at ? ago(t.last_used_at) : "never"}</td>
      <td>{t.revoked_at ? <span className="badge muted">revoked {ago(t.revoked_at)}</span> : <span className="badge good">active</span>}</td>
      <RevokeCell name={t.name} revoked={Boolean(t.revoked_at)} onRevoke={() => revoke.mutate()} pending={revoke.isPending} error={revoke.error} />
    </tr>
  );
}

function AccessTokens() {
  const queryClient = useQueryClient();
  const tokens = useQuery({ queryKey: TOKENS, queryFn: () => unwrap(api.GET("/api/auth/tokens")) });
  const [name, setName] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [minted, setMinted] = useState<Token | null>(null);
  const create = useMutation({
    mutationFn: (tokenName: string) => unwrap(api.POST("/api/auth/tokens", { body: { name: tokenName } })),
    onSuccess: (token) => {
      setMinted(token);
      setName("");
      return queryClient.invalidateQueries({ queryKey: TOKENS });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = requiredProblem(name.trim(), "a name for the token", 200);
    setProblem(found);
    if (!found) create.mutate(name.trim());
  };
  return (
    <section className="card" aria-label="Personal access tokens">
      <h2>Personal access tokens</h2>
      <p className="muted">
        For <code>clora --url {window.location.origin} --token …</code> and scripts: a token acts as you, on the admin API.
      </p>
      {minted?.token && (
        <div className="minted" aria-label="New token">
          <p>Token “{minted.name}” created. Copy it now: it is shown this once, and only its hash is kept.</p>
          <ShownOnce secret={minted.token} testId="new-token" onDismiss={() => setMinted(null)} />
        </div>
      )}
      <ErrorText error={tokens.error} />
      {tokens.isPending ? (
        <Loading what="tokens" />
      ) : tokens.data?.length ? (
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Prefix</th>
              <th>Created</th>
              <th>Last used</th>
              <th>State</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tokens.data.map((t) => (
              <TokenRow key={t.id} t={t} />
            ))}
          </tbody>
        </table>
      ) : (
        <p className="empty">No tokens yet.</p>
      )}
      <form className="inline-form" onSubmit={submit} noValidate aria-label="Create a personal access token">
        <Field label="Token name" htmlFor="token-name" error={problem} hint="where it will be used, e.g. laptop">
          <input id="token-name" value={name} onChange={(e) => { setName(e.target.value); setProblem(null); }} />
        </Field>
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create token"}
        </button>
        <ErrorText error={create.error} />
      </form>
    </section>
  );
}

export function AccountPage() {
  const { me } = useSession();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [keepTokens, setKeepTokens] = useState(false);
  const [tokensRevoked, setTokensRevoked] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const change = useMutation({
    mutationFn: () =>
      unwrap(api.POST("/api/auth/password", { body: { current_password: current, new_password: next, keep_tokens: keepTokens } })),
    onSuccess: () => {
      setCurrent("");
      setNext("");
      setTokensRevoked(!keepTokens);
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
        <label className="check">
          <input type="checkbox" checked={keepTokens} onChange={(e) => setKeepTokens(e.target.checked)} /> Keep my personal access
          tokens (by default they are revoked)
        </label>
        <button type="submit" className="primary" disabled={change.isPending}>
          {change.isPending ? "Changing…" : "Change password"}
        </button>
        {change.isSuccess && (
          <p className="good" role="status">
            Password changed. Your other sessions have ended{tokensRevoked ? " and your personal access tokens were revoked" : ""}.
          </p>
        )}
        <ErrorText error={change.error} />
      </form>
      <AccessTokens />
    </div>
  );
}
