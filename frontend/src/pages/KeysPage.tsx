// The tenant's API keys: create one (its secret is shown once) and revoke.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, type Schemas, unwrap } from "../api/client";
import { queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { RevokeCell, ShownOnce } from "../components/secrets";
import { ErrorText, Field, Loading } from "../components/ui";
import { ago, formatTime } from "../lib/format";
import { requiredProblem } from "../lib/validate";

type Key = Schemas["KeyOut"];

function KeyRow({ k, onRevoked }: { k: Key; onRevoked: (id: string) => Promise<void> }) {
  const revoke = useMutation({
    mutationFn: () => unwrap(api.POST("/api/keys/{key_id}/revoke", { params: { path: { key_id: k.id } } })),
    onSuccess: () => {
      return onRevoked(k.id);
    },
  });
  return (
    <tr data-key={k.name}>
      <td>{k.name}</td>
      <td className="mono">{k.prefix}…</td>
      <td title={formatTime(k.created_at)}>{ago(k.created_at)}</td>
      <td>{k.revoked_at ? <span className="badge muted">revoked {ago(k.revoked_at)}</span> : <span className="badge good">active</span>}</td>
      <RevokeCell name={k.name} revoked={Boolean(k.revoked_at)} onRevoke={() => revoke.mutate()} pending={revoke.isPending} error={revoke.error} />
    </tr>
  );
}

export function KeysPage() {
  const { tenant } = useSession();
  const queryClient = useQueryClient();
  const keysKey = queries.keys(tenant).queryKey;
  const keys = useQuery(queries.keys(tenant));
  const [name, setName] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [minted, setMinted] = useState<Key | null>(null);
  const create = useMutation({
    mutationFn: (keyName: string) => unwrap(api.POST("/api/keys", { body: { name: keyName } })),
    onSuccess: (key) => {
      setMinted(key);
      setName("");
      // The list never holds the plaintext: it is only in the box above, until dismissed.
      queryClient.setQueryData(keysKey, (list) => upsert(list, { ...key, key: null }, "end"));
      return queryClient.invalidateQueries({ queryKey: keysKey });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = requiredProblem(name.trim(), "a name for the key", 200);
    setProblem(found);
    if (!found) create.mutate(name.trim());
  };
  return (
    <div className="page">
      <header className="page-head">
        <h1>API keys</h1>
        <span className="muted">tenant {tenant} · agents call /v1 with these</span>
      </header>
      {minted?.key && (
        <section className="card minted" aria-label="New key">
          <h2>Key “{minted.name}” created</h2>
          <p>Copy it now: it is shown this once, and only its hash is kept.</p>
          <ShownOnce secret={minted.key} testId="new-key" onDismiss={() => setMinted(null)} />
        </section>
      )}
      <ErrorText error={keys.error} />
      {keys.isPending ? (
        <Loading what="keys" />
      ) : keys.data?.length ? (
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Prefix</th>
              <th>Created</th>
              <th>State</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {keys.data.map((k) => (
              <KeyRow
                key={k.id}
                k={k}
                onRevoked={(id) => {
                  queryClient.setQueryData(keysKey, (list) =>
                    list?.map((x) => (x.id === id ? { ...x, revoked_at: new Date().toISOString() } : x)),
                  );
                  return queryClient.invalidateQueries({ queryKey: keysKey });
                }}
              />
            ))}
          </tbody>
        </table>
      ) : (
        <p className="empty">No keys yet.</p>
      )}
      <form className="card inline-form" onSubmit={submit} noValidate aria-label="Create an API key">
        <h2>New key</h2>
        <Field label="Name" htmlFor="key-name" error={problem} hint="who or what will use it">
          <input id="key-name" value={name} onChange={(e) => { setName(e.target.value); setProblem(null); }} />
        </Field>
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create key"}
        </button>
        <ErrorText error={create.error} />
      </form>
    </div>
  );
}
