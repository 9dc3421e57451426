// The tenant's agents (one adapter lineage each), and creating one.
import { type FormEvent, useState } from "react";
import { Link } from "react-router-dom";
import { ApiError, api, type Schemas, unwrap } from "../api/client";
import { useSession } from "../auth/session";
import { ErrorText, Field, Loading } from "../components/ui";
import { useAction, useQuery } from "../lib/hooks";
import { hasErrors, integerProblem, slugProblem } from "../lib/validate";

function CreateAgent({ onCreated }: { onCreated: (agent: Schemas["AgentOut"]) => void }) {
  const [form, setForm] = useState({ name: "", description: "", rank: "16", alpha: "32" });
  const [errors, setErrors] = useState<Record<string, string | null>>({});
  const create = useAction(async () => {
    const agent = await unwrap(
      api.POST("/api/agents", {
        body: { name: form.name.trim(), description: form.description, lora_rank: Number(form.rank), lora_alpha: Number(form.alpha) },
      }),
    );
    setForm({ name: "", description: "", rank: "16", alpha: "32" });
    onCreated(agent);
    return agent;
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = {
      name: slugProblem(form.name.trim(), "agent name"),
      description: form.description.length > 2000 ? "The description is longer than 2,000 characters." : null,
      rank: integerProblem(form.rank, "the LoRA rank", 1, 64),
      alpha: integerProblem(form.alpha, "the LoRA alpha", 1, 1024),
    };
    setErrors(found);
    if (!hasErrors(found)) void create.run();
  };
  const set = (key: keyof typeof form, value: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    setErrors((e) => ({ ...e, [key]: null }));
  };
  const serverField = create.error instanceof ApiError ? create.error.param : null;
  return (
    <form className="card inline-form" onSubmit={submit} noValidate aria-label="Create an agent">
      <h2>New agent</h2>
      <Field label="Name" htmlFor="agent-name" error={errors["name"] ?? (serverField === "name" ? create.error?.message : null)} hint="lowercase letters, digits, '-'">
        <input id="agent-name" value={form.name} onChange={(e) => set("name", e.target.value)} spellCheck={false} />
      </Field>
      <Field label="Description" htmlFor="agent-description" error={errors["description"]}>
        <input id="agent-description" value={form.description} onChange={(e) => set("description", e.target.value)} />
      </Field>
      <Field label="LoRA rank" htmlFor="agent-rank" error={errors["rank"]}>
        <input id="agent-rank" inputMode="numeric" value={form.rank} onChange={(e) => set("rank", e.target.value)} />
      </Field>
      <Field label="LoRA alpha" htmlFor="agent-alpha" error={errors["alpha"]}>
        <input id="agent-alpha" inputMode="numeric" value={form.alpha} onChange={(e) => set("alpha", e.target.value)} />
      </Field>
      <button type="submit" className="primary" disabled={create.pending}>
        {create.pending ? "Creating…" : "Create agent"}
      </button>
      {serverField !== "name" && <ErrorText error={create.error} />}
    </form>
  );
}

export function AgentsPage() {
  const { tenant } = useSession();
  const agents = useQuery(() => unwrap(api.GET("/api/agents")), [tenant]);
  return (
    <div className="page">
      <header className="page-head">
        <h1>Agents</h1>
        <span className="muted">tenant {tenant} · each agent is one LoRA adapter lineage</span>
      </header>
      <ErrorText error={agents.error} />
      {agents.loading && !agents.data ? (
        <Loading what="agents" />
      ) : agents.data?.length ? (
        <table>
          <thead>
            <tr>
              <th>Agent</th>
              <th>Description</th>
              <th>LoRA</th>
              <th>Live version</th>
            </tr>
          </thead>
          <tbody>
            {agents.data.map((a) => (
              <tr key={a.id} data-agent={a.name}>
                <td>
                  <Link to={`/admin/agents/${encodeURIComponent(a.name)}`}>{a.name}</Link>
                </td>
                <td>{a.description || <span className="muted">—</span>}</td>
                <td className="muted">
                  rank {a.lora_rank}, alpha {a.lora_alpha}
                </td>
                <td>{a.live_version ? `v${a.live_version}` : <span className="muted">base model</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="empty">No agents yet.</p>
      )}
      <CreateAgent onCreated={(agent) => agents.mutate((list) => [...(list ?? []), agent])} />
    </div>
  );
}
