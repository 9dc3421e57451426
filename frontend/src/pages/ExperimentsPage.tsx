// RL experiments: start one, watch reward, accuracy and loss per step as charts, and the
// latest benchmark (bench/results/experiments.json and its plot).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { useSearchParams } from "react-router";
import { ApiError, api, type Schemas, scopedUrl, unwrap } from "../api/client";
import { ACTIVE, queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { LineChart, type Series } from "../components/LineChart";
import { ErrorText, Field, Loading, Progress, StatusBadge } from "../components/ui";
import { ago, formatTime, num, seconds, shortId } from "../lib/format";
import { hasErrors, integerProblem, numberProblem, slugProblem } from "../lib/validate";

type Experiment = Schemas["ExperimentOut"];
const COLORS = { reward: "#2f5bd3", accuracy: "#1d9a6c", loss: "#d0562b", rollout: "#7a5af5", train: "#d0562b", sync: "#6b7280" };

function metricSeries(e: Experiment, key: string, name: string, color: string): Series {
  return {
    name,
    color,
    points: e.steps.map((s) => {
      const v = (s.metrics as Record<string, unknown>)[key];
      return { x: s.step, y: typeof v === "number" ? v : null };
    }),
  };
}

export function ExperimentCharts({ experiment }: { experiment: Experiment }) {
  const e = experiment;
  const last = e.steps[e.steps.length - 1]?.metrics as Record<string, unknown> | undefined;
  return (
    <div className="charts" data-testid="experiment-charts">
      <LineChart
        title="Reward and accuracy per step"
        yLabel="mean reward / accuracy"
        series={[
          metricSeries(e, "reward_mean", "reward (mean)", COLORS.reward),
          metricSeries(e, "accuracy", "accuracy", COLORS.accuracy),
        ]}
      />
      <LineChart title="Policy-gradient loss per step" yLabel="loss" series={[metricSeries(e, "loss", "loss", COLORS.loss)]} />
      <LineChart
        title="Time per step"
        yLabel="seconds"
        series={[
          metricSeries(e, "rollout_s", "rollout", COLORS.rollout),
          metricSeries(e, "train_s", "train", COLORS.train),
          metricSeries(e, "sync_s", "sync", COLORS.sync),
        ]}
      />
      {last && (
        <p className="muted small">
          Last step: reward {num(last["reward_mean"])}, accuracy {num(last["accuracy"])}, loss {num(last["loss"])},{" "}
          {num(last["tokens"])} tokens, {seconds(last["step_s"])}.
        </p>
      )}
    </div>
  );
}

const DEFAULTS = {
  agent: "",
  environment: "calculator",
  steps: "10",
  prompts_per_step: "16",
  group_size: "8",
  learning_rate: "0.001",
  temperature: "1.0",
  max_turns: "4",
  max_tokens: "96",
  advantage: "grpo",
  seed: "0",
  eval_tasks: "0",
  rollout_mode: "throughput",
  pipeline: "off",
};
type StartForm = typeof DEFAULTS;

export function startProblems(f: StartForm): Record<string, string | null> {
  return {
    agent: f.agent ? null : "Pick the agent to train.",
    environment: slugProblem(f.environment.trim(), "environment") ? "Name an environment, such as calculator." : null,
    steps: integerProblem(f.steps, "steps", 1, 1000),
    prompts_per_step: integerProblem(f.prompts_per_step, "prompts per step", 1, 1024),
    group_size: integerProblem(f.group_size, "the group size", 2, 64),
    learning_rate: numberProblem(f.learning_rate, "the learning rate", 0, 1, true),
    temperature: numberProblem(f.temperature, "the temperature", 0, 2, true),
    max_turns: integerProblem(f.max_turns, "max turns", 1, 16),
    max_tokens: integerProblem(f.max_tokens, "max tokens", 8, 4096),
    seed: integerProblem(f.seed, "the seed", 0, 2 ** 31 - 1),
    eval_tasks: integerProblem(f.eval_tasks, "held-out tasks", 0, 10_000),
  };
}

function StartExperiment({ agents, onStarted }: { agents: string[]; onStarted: (e: Experiment) => Promise<void> }) {
  const [form, setForm] = useState<StartForm>(DEFAULTS);
  const [errors, setErrors] = useState<Record<string, string | null>>({});
  const start = useMutation({
    mutationFn: () => {
      const body = {
        agent: form.agent,
        environment: form.environment.trim(),
        steps: Number(form.steps),
        prompts_per_step: Number(form.prompts_per_step),
        group_size: Number(form.group_size),
        learning_rate: Number(form.learning_rate),
        temperature: Number(form.temperature),
        max_turns: Number(form.max_turns),
        max_tokens: Number(form.max_tokens),
        advantage: form.advantage,
        seed: Number(form.seed),
        eval_tasks: Number(form.eval_tasks),
        rollout_mode: form.rollout_mode as "throughput" | "seeded",
        pipeline: form.pipeline === "on",
      };
      return unwrap(api.POST("/api/experiments", { body }));
    },
    onSuccess: onStarted,
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = startProblems(form);
    setErrors(found);
    if (!hasErrors(found)) start.mutate();
  };
  const set = (key: keyof StartForm, value: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    setErrors((e) => ({ ...e, [key]: null }));
  };
  const serverParam = start.error instanceof ApiError ? start.error.param : null;
  const input = (key: keyof StartForm, label: string) => (
    <Field label={label} htmlFor={`exp-${key}`} error={errors[key] ?? (serverParam === key ? start.error?.message : null)}>
      <input id={`exp-${key}`} value={form[key]} onChange={(e) => set(key, e.target.value)} />
    </Field>
  );
  return (
    <form className="card start-experiment" onSubmit={submit} noValidate aria-label="Start an experiment">
      <h2>Start an RL experiment</h2>
      <div className="grid-4">
        <Field label="Agent" htmlFor="exp-agent" error={errors["agent"]}>
          <select id="exp-agent" value={form.agent} onChange={(e) => set("agent", e.target.value)}>
            <option value="">— pick —</option>
            {agents.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </Field>
        {input("environment", "Environment")}
        {input("steps", "Steps")}
        {input("prompts_per_step", "Prompts per step")}
        {input("group_size", "Samples per prompt (G)")}
        {input("learning_rate", "Learning rate")}
        {input("temperature", "Temperature")}
        {input("max_turns", "Max turns")}
        {input("max_tokens", "Max tokens per turn")}
        <Field label="Advantage" htmlFor="exp-advantage">
          <select id="exp-advantage" value={form.advantage} onChange={(e) => set("advantage", e.target.value)}>
            <option value="grpo">GRPO (group mean/std)</option>
            <option value="rloo">RLOO (leave one out)</option>
          </select>
        </Field>
        {input("seed", "Seed")}
        {input("eval_tasks", "Held-out tasks per step")}
        <Field label="Rollouts" htmlFor="exp-rollout_mode">
          <select id="exp-rollout_mode" value={form.rollout_mode} onChange={(e) => set("rollout_mode", e.target.value)}>
            <option value="throughput">throughput (batched, not reproducible)</option>
            <option value="seeded">seeded (reproducible, slower)</option>
          </select>
        </Field>
        <Field label="Pipelining" htmlFor="exp-pipeline">
          <select id="exp-pipeline" value={form.pipeline} onChange={(e) => set("pipeline", e.target.value)}>
            <option value="off">off: every step on-policy</option>
            <option value="on">on: roll out the next step while this one trains</option>
          </select>
        </Field>
      </div>
      <button type="submit" className="primary" disabled={start.isPending}>
        {start.isPending ? "Starting…" : "Start experiment"}
      </button>
      {!(serverParam && serverParam in form) && <ErrorText error={start.error} />}
    </form>
  );
}

function Benchmark() {
  const { tenant } = useSession();
  const bench = useQuery(queries.benchmark(tenant));
  const [plotFailed, setPlotFailed] = useState(false);
  if (bench.isPending) return <Loading what="the benchmark" />;
  if (bench.error) {
    const missing = bench.error instanceof ApiError && bench.error.status === 404;
    return missing ? (
      <p className="empty">No benchmark data yet: run <code>clora bench experiments</code> to make one.</p>
    ) : (
      <ErrorText error={bench.error} />
    );
  }
  return <BenchmarkView data={bench.data} plotUrl={plotFailed ? null : scopedUrl("/api/benchmarks/experiments.png")} onPlotError={() => setPlotFailed(true)} />;
}

type Stat = { mean: number | null; sd: number; runs?: number[] };
type ModeSummary = {
  final_s: Stat;
  first_s: Stat;
  mean_step_s: Stat;
  mean_rollout_s: Stat;
  mean_train_s: Stat;
  vs_serial_warm: Stat;
  vs_serial_cold?: Stat;
  final_accuracy: Stat;
  all_reached_0_9_by_last_step: boolean;
  cpu_s: Record<string, Stat>;
};
type NSummary = {
  sync?: ModeSummary;
  pipelined?: ModeSummary;
  serial_warm_final_s: Stat;
  serial_cold_final_s: Stat;
  rollout_tok_s: Stat;
  offline_tok_s: Stat;
  rollout_vs_offline?: Stat;
};
type BenchmarkFile = {
  config?: Record<string, unknown>;
  summary?: Record<string, NSummary>;
  repeats?: unknown[];
  partial?: boolean;
};

function meanSd(s: Stat | undefined, digits = 2, suffix = ""): string {
  if (!s || s.mean === null || s.mean === undefined) return "–";
  return `${s.mean.toFixed(digits)}${suffix} ± ${s.sd.toFixed(digits)}`;
}

/** The benchmark file (`bench/results/experiments.json`): per N and mode, mean ± sd over the
 * repeats, beside the serial baselines and the engine's offline throughput; and its plot. */
export function BenchmarkView({ data, plotUrl, onPlotError }: { data: unknown; plotUrl: string | null; onPlotError?: () => void }) {
  const file = (data && typeof data === "object" ? data : {}) as BenchmarkFile;
  const summary = file.summary && typeof file.summary === "object" ? file.summary : {};
  const rows = Object.entries(summary).flatMap(([n, row]) =>
    (["sync", "pipelined"] as const).flatMap((mode) => (row[mode] ? [{ n, mode, row, m: row[mode] }] : [])),
  );
  const config = file.config ?? {};
  return (
    <div className="benchmark">
      <dl className="meta">
        {["steps", "prompts", "group", "lr", "repeats"].map((k) =>
          k in config ? (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{String(config[k])}</dd>
            </div>
          ) : null,
        )}
        {file.partial && (
          <div>
            <dt>status</dt>
            <dd>partial: the run was still going or stopped early</dd>
          </div>
        )}
      </dl>
      {rows.length ? (
        <table className="bench-table">
          <thead>
            <tr>
              <th>N</th>
              <th>mode</th>
              <th>final s</th>
              <th>vs serial warm</th>
              <th>vs serial cold</th>
              <th>serial warm s</th>
              <th>serial cold s</th>
              <th>step s (rollout / train)</th>
              <th>final accuracy</th>
              <th>all ≥ 0.9</th>
              <th>rollout tok/s (offline)</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(({ n, mode, row, m }) => (
              <tr key={`${n}-${mode}`}>
                <td className="num">{n}</td>
                <td>{mode}</td>
                <td className="num">{meanSd(m.final_s, 1)}</td>
                <td className="num">{meanSd(m.vs_serial_warm, 2, "x")}</td>
                <td className="num">{meanSd(m.vs_serial_cold, 2, "x")}</td>
                <td className="num">{meanSd(row.serial_warm_final_s, 1)}</td>
                <td className="num">{meanSd(row.serial_cold_final_s, 1)}</td>
                <td className="num">
                  {meanSd(m.mean_step_s)} ({num(m.mean_rollout_s.mean)} / {num(m.mean_train_s.mean)})
                </td>
                <td className="num">{meanSd(m.final_accuracy, 3)}</td>
                <td>{m.all_reached_0_9_by_last_step ? "yes" : "no"}</td>
                <td className="num">
                  {meanSd(row.rollout_tok_s, 0)} ({meanSd(row.offline_tok_s, 0)})
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">The benchmark file has no result rows.</p>
      )}
      {plotUrl && <img className="bench-plot" src={plotUrl} alt="Benchmark plot" onError={onPlotError} />}
    </div>
  );
}

export function ExperimentsPage() {
  const { tenant } = useSession();
  const [params, setParams] = useSearchParams();
  const queryClient = useQueryClient();
  const agents = useQuery(queries.agents(tenant));
  const experiments = useQuery(queries.experiments(tenant));
  const experimentsKey = queries.experiments(tenant).queryKey;
  // A write shows what the gateway answered at once; the list is then read again, and polls
  // while an experiment is active.
  const show = (changed: Experiment) => {
    queryClient.setQueryData(experimentsKey, (list) => upsert(list, changed));
    return queryClient.invalidateQueries({ queryKey: experimentsKey });
  };
  const list = experiments.data ?? [];
  const selectedId = params.get("id") ?? list[0]?.id ?? null;
  const selected = list.find((e) => e.id === selectedId) ?? null;
  const cancel = useMutation({
    mutationFn: (id: string) => unwrap(api.POST("/api/experiments/{experiment_id}/cancel", { params: { path: { experiment_id: id } } })),
    onSuccess: show,
  });
  const select = (id: string) => setParams(new URLSearchParams({ id }));
  const missing = experiments.error instanceof ApiError && experiments.error.status === 404;

  return (
    <div className="page experiments">
      <header className="page-head">
        <h1>RL experiments</h1>
        <span className="muted">sample G answers per prompt, reward, group-relative advantages, train, publish, repeat</span>
      </header>

      {missing ? (
        <p className="empty">No experiment data yet.</p>
      ) : (
        <ErrorText error={experiments.error} />
      )}
      {experiments.isPending ? (
        <Loading what="experiments" />
      ) : list.length ? (
        <table className="experiment-list">
          <thead>
            <tr>
              <th>Experiment</th>
              <th>Agent</th>
              <th>Environment</th>
              <th>Status</th>
              <th>Steps</th>
              <th>Started</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.map((e) => {
              const total = Number((e.config as Record<string, unknown>)["steps"]) || null;
              return (
                <tr key={e.id} data-experiment={e.id} className={e.id === selectedId ? "selected" : undefined} onClick={() => select(e.id)}>
                  <td className="mono">
                    <button type="button" className="link" onClick={() => select(e.id)}>
                      {shortId(e.id)}
                    </button>
                  </td>
                  <td>{e.agent}</td>
                  <td>{e.environment}</td>
                  <td>
                    <StatusBadge status={e.status} />
                    {e.error && <div className="error small">{e.error}</div>}
                  </td>
                  <td className="progress-cell">
                    {ACTIVE.has(e.status) ? (
                      <Progress value={total ? e.steps.length / total : null} label={`experiment ${shortId(e.id)} progress`} />
                    ) : (
                      `${e.steps.length}${total ? ` / ${total}` : ""}`
                    )}
                  </td>
                  <td title={formatTime(e.started_at ?? e.created_at)}>{ago(e.started_at ?? e.created_at)}</td>
                  <td onClick={(ev) => ev.stopPropagation()}>
                    {ACTIVE.has(e.status) && (
                      <button type="button" onClick={() => cancel.mutate(e.id)} disabled={cancel.isPending}>
                        Cancel
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : (
        !missing && experiments.data && <p className="empty">No experiment data yet.</p>
      )}
      <ErrorText error={cancel.error} />

      {selected && (
        <section className="card" aria-label="Experiment charts">
          <h2>
            Experiment <span className="mono">{shortId(selected.id)}</span> · {selected.agent} on {selected.environment}{" "}
            <StatusBadge status={selected.status} />
          </h2>
          <p className="muted small">
            {Object.entries(selected.config as Record<string, unknown>)
              .map(([k, v]) => `${k} ${String(v)}`)
              .join(" · ")}
          </p>
          {selected.steps.length ? (
            <ExperimentCharts experiment={selected} />
          ) : (
            <p className="empty">No step has finished yet.</p>
          )}
        </section>
      )}

      {!missing && (
        <StartExperiment
          agents={agents.data?.map((a) => a.name) ?? []}
          onStarted={(e) => {
            select(e.id);
            return show(e);
          }}
        />
      )}

      <section className="card" aria-label="Latest benchmark">
        <h2>Latest benchmark</h2>
        <Benchmark />
      </section>
    </div>
  );
}
