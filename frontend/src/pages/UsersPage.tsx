// The tenant's people: add an operator or admin, change a role, disable, reset a password.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, type Schemas, unwrap } from "../api/client";
import { queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { ErrorText, Field, Loading } from "../components/ui";
import { ago, formatTime } from "../lib/format";
import { emailProblem, passwordProblem } from "../lib/validate";

type User = Schemas["UserOut"];
function UserRow({ u, self, onChanged }: { u: User; self: boolean; onChanged: (u: User) => Promise<void> }) {
  const [resetting, setResetting] = useState(false);
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const path = { params: { path: { user_id: u.id } } };
  const change = useMutation({
    mutationFn: (body: Schemas["UserUpdate"]) => unwrap(api.PATCH("/api/users/{user_id}", { ...path, body })),
    onSuccess: onChanged,
  });
  const reset = useMutation({
    mutationFn: (pw: string) => unwrap(api.POST("/api/users/{user_id}/password", { ...path, body: { password: pw } })),
    onSuccess: (changed) => {
      setResetting(false);
      setPassword("");
      return onChanged(changed);
    },
  });
  const submitReset = (event: FormEvent) => {
    event.preventDefault();
    const found = passwordProblem(password);
    setProblem(found);
    if (!found) reset.mutate(password);
  };
  return (
    <tr data-user={u.email}>
      <td>
        {u.email} {self && <span className="badge info">you</span>}
      </td>
      <td>
        <select
          aria-label={`Role of ${u.email}`}
          value={u.role}
          disabled={self || change.isPending}
          onChange={(e) => change.mutate({ role: e.target.value as User["role"] })}
        >
          <option value="operator">operator</option>
          <option value="admin">admin</option>
        </select>
      </td>
      <td title={formatTime(u.created_at)}>{ago(u.created_at)}</td>
      <td>{u.disabled ? <span className="badge muted">disabled</span> : <span className="badge good">active</span>}</td>
      <td className="row-actions">
        {!self && (
          <button type="button" onClick={() => change.mutate({ disabled: !u.disabled })} disabled={change.isPending}>
            {u.disabled ? "Enable" : "Disable"}
          </button>
        )}
        {resetting ? (
          <form onSubmit={submitReset} noValidate aria-label={`New password for ${u.email}`}>
            <Field label="New password" htmlFor={`pw-${u.id}`} error={problem}>
              <input
                id={`pw-${u.id}`}
                type="password"
                autoComplete="new-password"
                value={password}
                onChange={(e) => { setPassword(e.target.value); setProblem(null); }}
              />
            </Field>
            <button type="submit" className="primary" disabled={reset.isPending}>Set password</button>
            <button type="button" onClick={() => setResetting(false)}>Cancel</button>
          </form>
        ) : (
          <button type="button" onClick={() => setResetting(true)}>Reset password</button>
        )}
        <ErrorText error={change.error ?? reset.error} />
      </td>
    </tr>
  );
}

export function UsersPage() {
  const { me, tenant } = useSession();
  const queryClient = useQueryClient();
  const usersKey = queries.users(tenant).queryKey;
  const users = useQuery(queries.users(tenant));
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<User["role"]>("operator");
  const [problems, setProblems] = useState<{ email?: string | null; password?: string | null }>({});
  const refresh = (changed: User) => {
    queryClient.setQueryData(usersKey, (list) => upsert(list, changed, "end"));
    return queryClient.invalidateQueries({ queryKey: usersKey });
  };
  const create = useMutation({
    mutationFn: (body: Schemas["UserCreate"]) => unwrap(api.POST("/api/users", { body })),
    onSuccess: (made) => {
      setEmail("");
      setPassword("");
      return refresh(made);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = {
      email: emailProblem(email.trim()),
      password: passwordProblem(password),
    };
    setProblems(found);
    if (!found.email && !found.password) create.mutate({ email: email.trim(), password, role });
  };
  return (
    <div className="page">
      <header className="page-head">
        <h1>Users</h1>
        <span className="muted">tenant {tenant} · operators review and correct, admins also manage</span>
      </header>
      <ErrorText error={users.error} />
      {users.isPending ? (
        <Loading what="users" />
      ) : (
        <table>
          <thead>
            <tr>
              <th>Email</th>
              <th>Role</th>
              <th>Added</th>
              <th>State</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users.data?.map((u) => (
              <UserRow key={u.id} u={u} self={u.email === me?.email} onChanged={refresh} />
            ))}
          </tbody>
        </table>
      )}
      <form className="card inline-form" onSubmit={submit} noValidate aria-label="Add a user">
        <h2>Add a user</h2>
        <Field label="Email" htmlFor="user-email" error={problems.email}>
          <input id="user-email" type="email" value={email} onChange={(e) => { setEmail(e.target.value); setProblems({}); }} />
        </Field>
        <Field label="First password" htmlFor="user-password" error={problems.password} hint="they can change it">
          <input
            id="user-password"
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => { setPassword(e.target.value); setProblems({}); }}
          />
        </Field>
        <Field label="Role" htmlFor="user-role">
          <select id="user-role" value={role} onChange={(e) => setRole(e.target.value as User["role"])}>
            <option value="operator">operator</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? "Adding…" : "Add user"}
        </button>
        <ErrorText error={create.error} />
      </form>
    </div>
  );
}
