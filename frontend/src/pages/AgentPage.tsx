// One agent: its adapter versions (the promotion gate's verdict and signals, lineage, promote,
// force promote and rollback), the learning-cycle schedule, and cycle runs with live progress.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useParams } from "react-router";
import { ApiError, api, type Schemas, scopedUrl, unwrap } from "../api/client";
import { ACTIVE, queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { ChangedAnswers, GateReason, GateSummary, SignalsTable } from "../components/Gate";
import { Sparkline } from "../components/LineChart";
import { ScheduleEditor } from "../components/ScheduleEditor";
import { ErrorText, Loading, Progress, StatusBadge } from "../components/ui";
import { ago, formatTime, num, percent, shortId } from "../lib/format";
import { type Verdict, VERDICT_LABELS, fineTuningOf, forcedOf, gateOf, needsForce, signalsOf } from "../lib/gate";

type Version = Schemas["VersionOut"];
type Run = Schemas["CycleRunOut"];

/** Depth of each version in its lineage tree (root versions at 0). */
export function lineageDepths(versions: Version[]): Map<number, number> {
  const parent = new Map(versions.map((v) => [v.number, v.parent]));
  const depth = new Map<number, number>();
  const of = (n: number, seen: Set<number>): number => {
    if (depth.has(n)) return depth.get(n)!;
    const p = parent.get(n);
    const d = p == null || !parent.has(p) || seen.has(p) ? 0 : of(p, new Set([...seen, n])) + 1;
    depth.set(n, d);
    return d;
  };
  for (const v of versions) of(v.number, new Set());
  return depth;
}

function lineageOf(live: number | null | undefined, versions: Version[]): number[] {
  const parent = new Map(versions.map((v) => [v.number, v.parent]));
  const chain: number[] = [];
  let at = live ?? null;
  while (at != null && !chain.includes(at)) {
    chain.push(at);
    at = parent.get(at) ?? null;
  }
  return chain;
}

function Score({ before, after }: { before: unknown; after: unknown }) {
  if (typeof before !== "number" && typeof after !== "number") return <span className="muted">—</span>;
  const delta = typeof before === "number" && typeof after === "number" ? after - before : null;
  return (
    <span>
      {percent(before as number)} → <strong>{percent(after as number)}</strong>
      {delta != null && delta !== 0 && <span className={delta > 0 ? "up" : "down"}> ({delta > 0 ? "+" : ""}{(delta * 100).toFixed(0)})</span>}
    </span>
  );
}

/** Final training losses: a number per loss kind ({sft, dpo}), or a per-step list. */
function Losses({ value, label }: { value: unknown; label: string }) {
  if (Array.isArray(value)) return <Sparkline values={value as number[]} label={label} />;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length) {
      return (
        <span title={label}>
          {entries.map(([kind, loss]) => (
            <div key={kind}>
              {kind} {num(loss)}
            </div>
          ))}
        </span>
      );
    }
  }
  return <span className="muted">—</span>;
}

function lossChange(first: unknown, last: unknown): string | null {
  if (!last || typeof last !== "object") return null;
  const before = (first && typeof first === "object" ? first : {}) as Record<string, unknown>;
  return Object.entries(last as Record<string, unknown>)
    .map(([kind, loss]) => (kind in before ? `${kind} ${num(before[kind])} → ${num(loss)}` : `${kind} ${num(loss)}`))
    .join(", ");
}

function VersionRow({
  v,
  depth,
  liveNumber,
  onChanged,
}: {
  v: Version;
  depth: number;
  liveNumber: number | null;
  onChanged: (agent: Schemas["AgentOut"]) => Promise<void>;
}) {
  const { name = "" } = useParams();
  // A version the gate failed (or had nothing to compare on) is promoted only with force, after
  // an explicit confirmation; the gateway records who forced it.
  const [confirming, setConfirming] = useState(false);
  const act = useMutation({
    mutationFn: (kind: "promote" | "force" | "rollback" | "force-rollback") => {
      const params = { path: { name } };
      return unwrap(
        kind === "rollback" || kind === "force-rollback"
          ? api.POST("/api/agents/{name}/rollback", { params, body: { version: v.number, force: kind === "force-rollback" } })
          : api.POST("/api/agents/{name}/promote", { params, body: { version: v.number, force: kind === "force" } }),
      );
    },
    onError: (e, kind) => {
      // The gate's verdict changed since the page loaded: the gateway asks for force.
      const unforced = kind === "promote" || kind === "rollback";
      if (unforced && e instanceof ApiError && e.status === 409 && e.param === "force") setConfirming(true);
    },
    onSuccess: (changed) => {
      setConfirming(false);
      return onChanged(changed);
    },
  });
  const m = v.metrics as Record<string, unknown>;
  const gate = gateOf(m);
  const signals = signalsOf(v.signals);
  const isLive = v.number === liveNumber;
  const older = liveNumber != null && v.number < liveNumber;
  // A rollback goes through the gate like a promotion: a version that never passed needs force.
  const rollingBack = older && v.status === "retired";
  const legacy = ["eval_live", "eval_candidate", "new_live", "new_candidate"].some((k) => typeof m[k] === "number");
  const verdictText = gate ? VERDICT_LABELS[gate.verdict] : "not passed";
  return (
    <tr data-version={v.number} className={isLive ? "live" : undefined}>
      <td>
        <span className="lineage" style={{ paddingLeft: `${depth * 14}px` }}>
          {depth > 0 && <span className="muted">└ </span>}
          <strong>v{v.number}</strong>
        </span>
        <div className="muted small mono" title={v.name}>{v.name}</div>
      </td>
      <td>
        <StatusBadge status={v.status} />
      </td>
      <td>
        {v.source}
        {fineTuningOf(m) && <div className="muted small mono">{fineTuningOf(m)}</div>}
      </td>
      <td>{v.parent ? `v${v.parent}` : <span className="muted">base</span>}</td>
      <td className="gate-cell">
        <GateSummary metrics={m} signals={v.signals} />
        {!signals && legacy && (
          <div className="small">
            <div data-metric="eval">
              held-out <Score before={m["eval_live"]} after={m["eval_candidate"]} />
            </div>
            <div data-metric="new">
              new examples <Score before={m["new_live"]} after={m["new_candidate"]} />
            </div>
          </div>
        )}
        {!gate && !signals && !legacy && !forcedOf(m) && <span className="muted">—</span>}
      </td>
      <td className="small">
        <Losses value={m["losses"]} label={`training loss of v${v.number}`} />
      </td>
      <td className="mono small" title={v.checksum}>
        {v.checksum.slice(0, 10)}
      </td>
      <td title={formatTime(v.created_at)}>{ago(v.created_at)}</td>
      <td className="row-actions">
        {!isLive && (confirming ? (
          <div className="confirm" role="group" aria-label={`Confirm force ${rollingBack ? "roll back to" : "promote"} v${v.number}`}>
            <p className="small">
              v{v.number} did not pass the promotion gate ({verdictText}).{" "}
              {rollingBack ? "Rolling back to it" : "Promoting it anyway"} serves it at once and records the{" "}
              {rollingBack ? "rollback" : "promotion"} as forced by you.
            </p>
            <button
              type="button"
              className="danger"
              onClick={() => act.mutate(rollingBack ? "force-rollback" : "force")}
              disabled={act.isPending}
            >
              {act.isPending ? "Promoting…" : `Confirm: force ${rollingBack ? "roll back to" : "promote"} v${v.number}`}
            </button>
            <button type="button" onClick={() => setConfirming(false)} disabled={act.isPending}>
              Cancel
            </button>
          </div>
        ) : needsForce(m) ? (
          <button type="button" className="danger" onClick={() => setConfirming(true)} disabled={act.isPending}>
            {rollingBack ? `Force roll back to v${v.number}` : `Force promote v${v.number}`}
          </button>
        ) : rollingBack ? (
          <button type="button" onClick={() => act.mutate("rollback")} disabled={act.isPending}>
            Roll back to v{v.number}
          </button>
        ) : (
          <button type="button" onClick={() => act.mutate("promote")} disabled={act.isPending}>
            Promote v{v.number}
          </button>
        ))}
        {isLive && <span className="ok">serving</span>}
        <ErrorText error={act.error} />
      </td>
    </tr>
  );
}

/** The gate's verdict a finished run's status stands for. */
const RUN_VERDICTS: Record<string, Verdict> = { succeeded: "passed", rejected: "failed", needs_evaluation: "needs_evaluation" };

function RunRow({ run }: { run: Run }) {
  const m = run.metrics as Record<string, unknown>;
  const decision = typeof m["decision"] === "string" ? m["decision"] : null;
  const failedSignal = typeof m["failed_signal"] === "string" ? m["failed_signal"] : null;
  const signals = signalsOf(run.signals);
  return (
    <tr data-run={run.id} data-status={run.status}>
      <td className="mono small">{shortId(run.id)}</td>
      <td>{run.trigger}</td>
      <td>
        <StatusBadge status={run.status} />
      </td>
      <td className="progress-cell">
        {ACTIVE.has(run.status) ? (
          <Progress value={run.status === "queued" ? null : run.progress} label={`cycle ${shortId(run.id)} progress`} />
        ) : (
          <span className="muted">{percent(run.progress)}</span>
        )}
      </td>
      <td>{run.candidate_version ? `v${run.candidate_version}` : "—"}</td>
      <td className="small">
        {decision && <GateReason verdict={RUN_VERDICTS[run.status] ?? null} reason={decision} failedSignal={failedSignal} />}
        {typeof m["reason"] === "string" && m["reason"] !== decision && <div>{m["reason"]}</div>}
        {run.status === "needs_evaluation" && run.candidate_version != null && (
          <div className="hint">
            v{run.candidate_version} stays a candidate: add held-out examples and run another cycle, or force promote it
            in the versions table.
          </div>
        )}
        {signals && <SignalsTable signals={signals} failed={failedSignal} />}
        {signals && <ChangedAnswers signals={signals} />}
        {lossChange(m["first_losses"], m["final_losses"] ?? m["last_losses"]) && (
          <div className="muted">loss {lossChange(m["first_losses"], m["final_losses"] ?? m["last_losses"])}</div>
        )}
        {typeof m["new"] === "number" && (
          <div className="muted">
            {num(m["new"])} new + {num(m["replay"])} replayed examples, {num(m["eval"])} held out
          </div>
        )}
        {run.error && <div className="error">{run.error}</div>}
      </td>
      <td title={formatTime(run.created_at)}>{ago(run.created_at)}</td>
      <td title={formatTime(run.finished_at)}>{run.finished_at ? ago(run.finished_at) : "—"}</td>
    </tr>
  );
}

export function AgentPage() {
  const { name = "" } = useParams();
  const { tenant } = useSession();
  const queryClient = useQueryClient();
  const path = { params: { path: { name } } };
  const agents = useQuery(queries.agents(tenant));
  const agent = agents.data?.find((a) => a.name === name);
  const versions = useQuery(queries.versions(tenant, name));
  const schedule = useQuery(queries.schedule(tenant, name));
  const runs = useQuery(queries.cycles(tenant, name));
  const active = runs.data?.some((r) => ACTIVE.has(r.status)) ?? false;

  // When a run finishes, the versions (and the live one) may have changed.
  const wasActive = useRef(false);
  useEffect(() => {
    if (wasActive.current && !active) {
      void queryClient.invalidateQueries({ queryKey: queries.versions(tenant, name).queryKey });
      void queryClient.invalidateQueries({ queryKey: queries.agents(tenant).queryKey });
    }
    wasActive.current = active;
  }, [active, queryClient, tenant, name]);

  // Writes answer with what they changed; the page shows that at once, then reads it again.
  const save = useMutation({
    mutationFn: (value: Schemas["ScheduleUpdate"]) => unwrap(api.PUT("/api/agents/{name}/schedule", { ...path, body: value })),
    onSuccess: (saved) => {
      const { queryKey } = queries.schedule(tenant, name);
      queryClient.setQueryData(queryKey, saved);
      return queryClient.invalidateQueries({ queryKey });
    },
  });
  const start = useMutation({
    mutationFn: () => unwrap(api.POST("/api/agents/{name}/cycles", path)),
    onSuccess: (run) => {
      const { queryKey } = queries.cycles(tenant, name);
      queryClient.setQueryData(queryKey, (list) => upsert(list, run));
      return queryClient.invalidateQueries({ queryKey });
    },
  });
  const liveChanged = async (changed: Schemas["AgentOut"]) => {
    const { queryKey } = queries.agents(tenant);
    queryClient.setQueryData(queryKey, (list) => list?.map((a) => (a.id === changed.id ? changed : a)));
    await Promise.all([
      queryClient.invalidateQueries({ queryKey }),
      queryClient.invalidateQueries({ queryKey: queries.versions(tenant, name).queryKey }),
    ]);
  };
  const rollbackPrevious = useMutation({
    mutationFn: () => unwrap(api.POST("/api/agents/{name}/rollback", { ...path, body: { force: false } })),
    onSuccess: liveChanged,
  });

  const sorted = useMemo(() => [...(versions.data ?? [])].sort((a, b) => b.number - a.number), [versions.data]);
  const depths = useMemo(() => lineageDepths(sorted), [sorted]);
  const liveNumber = agent?.live_version ?? null;
  const chain = lineageOf(liveNumber, sorted);

  if (agents.data && !agent) {
    return (
      <div className="page">
        <Link to="/admin/agents">← Agents</Link>
        <ErrorText error={`This tenant has no agent '${name}'.`} />
      </div>
    );
  }

  return (
    <div className="page agent">
      <header className="page-head">
        <div>
          <Link to="/admin/agents">← Agents</Link>
          <h1>{name}</h1>
          <p className="muted">
            {agent &&
              [
                agent.description,
                `LoRA rank ${agent.lora_rank}, alpha ${agent.lora_alpha}`,
                agent.environment ? `environment ${agent.environment}` : null,
                agent.default_max_tokens ? `default max tokens ${agent.default_max_tokens}` : null,
                agent.fine_tuning_promotes ? null : "fine-tuning jobs leave candidates",
              ]
                .filter(Boolean)
                .join(" · ")}
          </p>
        </div>
        <div className="live-box" data-testid="live-version">
          <span className="muted small">live</span>
          <strong>{liveNumber ? `v${liveNumber}` : "base model"}</strong>
          {chain.length > 1 && <span className="muted small">lineage {chain.map((n) => `v${n}`).join(" ← ")} ← base</span>}
        </div>
      </header>

      <section className="card" aria-label="Adapter versions">
        <div className="section-head">
          <h2>Adapter versions</h2>
          <div className="actions">
            <button type="button" onClick={() => rollbackPrevious.mutate()} disabled={rollbackPrevious.isPending || !liveNumber}>
              Roll back to the previous version
            </button>
            <a className="button" href={scopedUrl(`/api/agents/${encodeURIComponent(name)}/dataset?split=train`)} download>
              Training data (JSONL)
            </a>
            <a className="button" href={scopedUrl(`/api/agents/${encodeURIComponent(name)}/dataset?split=eval`)} download>
              Held-out data (JSONL)
            </a>
          </div>
        </div>
        <ErrorText error={rollbackPrevious.error} />
        <ErrorText error={versions.error} />
        {versions.isPending ? (
          <Loading what="versions" />
        ) : sorted.length ? (
          <table className="versions">
            <thead>
              <tr>
                <th>Version</th>
                <th>Status</th>
                <th>Source</th>
                <th>Parent</th>
                <th title="the promotion gate's verdict and the signals it compared: parent → candidate">Promotion gate</th>
                <th>Loss</th>
                <th>Checksum</th>
                <th>Created</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {sorted.map((v) => (
                <VersionRow key={v.id} v={v} depth={depths.get(v.number) ?? 0} liveNumber={liveNumber} onChanged={liveChanged} />
              ))}
            </tbody>
          </table>
        ) : (
          <p className="empty">No versions yet: the agent answers with the base model until a cycle promotes one.</p>
        )}
      </section>

      <section className="card" aria-label="Learning cycles">
        <div className="section-head">
          <h2>Learning cycles</h2>
          <div className="actions">
            <button type="button" className="primary" onClick={() => start.mutate()} disabled={start.isPending || active}>
              {active ? "A cycle is running…" : start.isPending ? "Starting…" : "Run a cycle now"}
            </button>
          </div>
        </div>
        <ErrorText error={start.error} />
        <ErrorText error={runs.error} />
        {runs.data?.length ? (
          <table className="runs">
            <thead>
              <tr>
                <th>Run</th>
                <th>Trigger</th>
                <th>Status</th>
                <th>Progress</th>
                <th>Candidate</th>
                <th>Outcome</th>
                <th>Started</th>
                <th>Finished</th>
              </tr>
            </thead>
            <tbody>
              {runs.data.map((r) => (
                <RunRow key={r.id} run={r} />
              ))}
            </tbody>
          </table>
        ) : (
          runs.data && <p className="empty">No cycle has run yet.</p>
        )}
      </section>

      <section className="card" aria-label="Schedule">
        <h2>Schedule</h2>
        <ErrorText error={schedule.error} />
        {schedule.data ? (
          <ScheduleEditor
            schedule={schedule.data}
            onSave={(value) => save.mutateAsync(value).catch(() => undefined)}
            saving={save.isPending}
            serverError={save.error}
          />
        ) : (
          !schedule.error && <Loading what="the schedule" />
        )}
      </section>
    </div>
  );
}
