// The tenant's agents (one adapter lineage each), and creating one.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link } from "react-router";
import { ApiError, api, type Schemas, unwrap } from "../api/client";
import { queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { ErrorText, Field, Loading } from "../components/ui";
import { ENVIRONMENTS, MAX_TOKENS_BOUNDS } from "../lib/apiSchema";
import { hasErrors, integerProblem, slugProblem } from "../lib/validate";

const EMPTY = {
  name: "",
  description: "",
  rank: "16",
  alpha: "32",
  environment: "",
  maxTokens: String(MAX_TOKENS_BOUNDS.default),
};

// The gateway's names of the body fields this form has under other names.
const FIELD_OF_PARAM: Record<string, keyof typeof EMPTY> = {
  name: "name",
  description: "description",
  lora_rank: "rank",
  lora_alpha: "alpha",
  environment: "environment",
  default_max_tokens: "maxTokens",
};

function CreateAgent({ onCreated }: { onCreated: (agent: Schemas["AgentOut"]) => Promise<void> }) {
  const [form, setForm] = useState(EMPTY);
  const [errors, setErrors] = useState<Record<string, string | null>>({});
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/agents", {
          body: {
            name: form.name.trim(),
            description: form.description,
            lora_rank: Number(form.rank),
            lora_alpha: Number(form.alpha),
            environment: form.environment || null,
            default_max_tokens: Number(form.maxTokens),
          },
        }),
      ),
    onSuccess: (agent) => {
      setForm(EMPTY);
      return onCreated(agent);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = {
      name: slugProblem(form.name.trim(), "agent name"),
      description: form.description.length > 2000 ? "The description is longer than 2,000 characters." : null,
      rank: integerProblem(form.rank, "the LoRA rank", 1, 64),
      alpha: integerProblem(form.alpha, "the LoRA alpha", 1, 1024),
      maxTokens: integerProblem(form.maxTokens, "the default max tokens", MAX_TOKENS_BOUNDS.min, MAX_TOKENS_BOUNDS.max),
    };
    setErrors(found);
    if (!hasErrors(found)) create.mutate();
  };
  const set = (key: keyof typeof form, value: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    setErrors((e) => ({ ...e, [key]: null }));
  };
  const serverField = create.error instanceof ApiError && create.error.param ? (FIELD_OF_PARAM[create.error.param] ?? null) : null;
  const errorOf = (key: keyof typeof EMPTY) => errors[key] ?? (serverField === key ? create.error?.message : null);
  return (
    <form className="card inline-form" onSubmit={submit} noValidate aria-label="Create an agent">
      <h2>New agent</h2>
      <Field label="Name" htmlFor="agent-name" error={errorOf("name")} hint="lowercase letters, digits, '-'">
        <input id="agent-name" value={form.name} onChange={(e) => set("name", e.target.value)} spellCheck={false} />
      </Field>
      <Field label="Description" htmlFor="agent-description" error={errorOf("description")}>
        <input id="agent-description" value={form.description} onChange={(e) => set("description", e.target.value)} />
      </Field>
      <Field label="LoRA rank" htmlFor="agent-rank" error={errorOf("rank")}>
        <input id="agent-rank" inputMode="numeric" value={form.rank} onChange={(e) => set("rank", e.target.value)} />
      </Field>
      <Field label="LoRA alpha" htmlFor="agent-alpha" error={errorOf("alpha")}>
        <input id="agent-alpha" inputMode="numeric" value={form.alpha} onChange={(e) => set("alpha", e.target.value)} />
      </Field>
      <Field label="Environment" htmlFor="agent-environment" error={errorOf("environment")} hint="the promotion gate plays its held-out tasks">
        <select id="agent-environment" value={form.environment} onChange={(e) => set("environment", e.target.value)}>
          <option value="">none</option>
          {ENVIRONMENTS.map((env) => (
            <option key={env} value={env}>
              {env}
            </option>
          ))}
        </select>
      </Field>
      <Field
        label="Default max tokens"
        htmlFor="agent-max-tokens"
        error={errorOf("maxTokens")}
        hint={`when a request sets none, ${MAX_TOKENS_BOUNDS.min}..${MAX_TOKENS_BOUNDS.max}`}
      >
        <input id="agent-max-tokens" inputMode="numeric" value={form.maxTokens} onChange={(e) => set("maxTokens", e.target.value)} />
      </Field>
      <button type="submit" className="primary" disabled={create.isPending}>
        {create.isPending ? "Creating…" : "Create agent"}
      </button>
      {!serverField && <ErrorText error={create.error} />}
    </form>
  );
}

export function AgentsPage() {
  const { tenant } = useSession();
  const queryClient = useQueryClient();
  const agents = useQuery(queries.agents(tenant));
  const created = (agent: Schemas["AgentOut"]) => {
    const { queryKey } = queries.agents(tenant);
    queryClient.setQueryData(queryKey, (list) => upsert(list, agent, "end"));
    return queryClient.invalidateQueries({ queryKey });
  };
  return (
    <div className="page">
      <header className="page-head">
        <h1>Agents</h1>
        <span className="muted">tenant {tenant} · each agent is one LoRA adapter lineage</span>
      </header>
      <ErrorText error={agents.error} />
      {agents.isPending ? (
        <Loading what="agents" />
      ) : agents.data?.length ? (
        <table>
          <thead>
            <tr>
              <th>Agent</th>
              <th>Description</th>
              <th>LoRA</th>
              <th>Environment</th>
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
                <td>{a.environment ?? <span className="muted">none</span>}</td>
                <td>{a.live_version ? `v${a.live_version}` : <span className="muted">base model</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="empty">No agents yet.</p>
      )}
      <CreateAgent onCreated={created} />
    </div>
  );
}
