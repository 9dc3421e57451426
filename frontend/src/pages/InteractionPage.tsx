// One interaction: the conversation, the logged answer, and the operator's feedback on it
// (rate, correct in place with a diff, or pick the better of two answers).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, type Schemas, unwrap } from "../api/client";
import { feedbackKeys, queries } from "../api/queries";
import { useSession } from "../auth/session";
import { Conversation, MessageView } from "../components/Conversation";
import { CorrectionEditor } from "../components/CorrectionEditor";
import { DiffView } from "../components/DiffView";
import { ErrorText, Field, Kbd, Loading, Thumb } from "../components/ui";
import { formatTime, num, shortId } from "../lib/format";
import { useShortcuts } from "../lib/shortcuts";
import {
  type ChatMessage,
  type CorrectedMessage,
  outputMessage,
  requestMessages,
  requestTools,
  summarize,
} from "../lib/messages";
import { completionIdProblem, numberProblem } from "../lib/validate";
import { QUEUE_KEY } from "./ReviewQueue";

type Interaction = Schemas["InteractionOut"];
type FeedbackBody = Schemas["FeedbackCreate"];

// The page shows, corrects and compares the logged answer: the first choice of the completion.
const ANSWER = 0;

function idempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function neighbours(id: string): { prev?: string; next?: string; search: string } {
  try {
    const { ids, search } = JSON.parse(sessionStorage.getItem(QUEUE_KEY) ?? "{}") as { ids?: string[]; search?: string };
    const i = ids?.indexOf(id) ?? -1;
    return { prev: i > 0 ? ids![i - 1] : undefined, next: i >= 0 ? ids![i + 1] : undefined, search: search ?? "" };
  } catch {
    return { search: "" };
  }
}

function FeedbackItem({ item, original }: { item: Schemas["FeedbackOut"]; original: ChatMessage | null }) {
  const payload = item.payload as {
    rating?: { thumbs?: string; score?: number };
    correction?: CorrectedMessage;
    preference?: { rejected_interaction_id?: string };
    note?: string;
  };
  return (
    <li className={`feedback-item kind-${item.kind}`} data-kind={item.kind}>
      <div>
        <strong>{item.kind}</strong> <span className="muted small">{formatTime(item.created_at)}</span>
        {payload.rating && (
          <span className="rating">
            {payload.rating.thumbs ? (
              <>
                {" "}
                <Thumb up={payload.rating.thumbs === "up"} /> {payload.rating.thumbs === "up" ? "good" : "bad"}
              </>
            ) : (
              ` score ${num(payload.rating.score)}`
            )}
          </span>
        )}
        {payload.preference?.rejected_interaction_id && (
          <span>
            {" "}
            preferred over{" "}
            <Link to={`/review/${payload.preference.rejected_interaction_id}`}>
              {shortId(payload.preference.rejected_interaction_id)}
            </Link>
          </span>
        )}
        {payload.note && <span className="muted"> — {payload.note}</span>}
      </div>
      {payload.correction && (
        <DiffView
          original={original}
          edited={{ role: "assistant", content: payload.correction.content, tool_calls: payload.correction.tool_calls as ChatMessage["tool_calls"] }}
        />
      )}
    </li>
  );
}

function Compare({ interaction, send }: { interaction: Interaction; send: (body: FeedbackBody) => Promise<unknown> }) {
  const [otherId, setOtherId] = useState("");
  const [chosenOther, setChosenOther] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const { tenant } = useSession();
  const messagesKey = JSON.stringify(requestMessages(interaction.request));
  // Other answers to the same conversation, among the agent's latest 200.
  const siblings = useQuery({
    ...queries.interactions(tenant, { agent: interaction.agent, limit: 200 }),
    select: (page) =>
      page.items.filter((i) => i.id !== interaction.id && JSON.stringify(requestMessages(i.request)) === messagesKey),
  });
  const other = useQuery({ ...queries.interaction(tenant, chosenOther ?? ""), enabled: chosenOther !== null });
  const otherData = chosenOther ? other.data : undefined;
  const sameConversation = otherData ? JSON.stringify(requestMessages(otherData.request)) === messagesKey : true;
  const pick = useMutation({
    mutationFn: async (better: "this" | "other") => {
      if (!otherData) return;
      if (!sameConversation) {
        setProblem("The other interaction answered a different conversation; compare two answers to the same one.");
        return;
      }
      const [chosen, rejected] = better === "this" ? [interaction.id, otherData.id] : [otherData.id, interaction.id];
      await send({
        interaction_id: chosen,
        choice_index: ANSWER,
        kind: "preference",
        preference: { rejected_interaction_id: rejected },
        idempotency_key: idempotencyKey(),
      });
      setSaved(`Saved: ${shortId(chosen)} is better than ${shortId(rejected)}.`);
      setChosenOther(null);
    },
  });

  useShortcuts({ "1": () => otherData && pick.mutate("this"), "2": () => otherData && pick.mutate("other") }, Boolean(otherData));

  const load = (event: FormEvent) => {
    event.preventDefault();
    const found = completionIdProblem(otherId) ?? (otherId.trim() === interaction.id ? "That is this interaction; pick another one." : null);
    setProblem(found);
    if (!found) setChosenOther(otherId.trim());
  };

  return (
    <section className="card compare" aria-label="Compare two answers">
      <h2>Pick the better of two answers</h2>
      {siblings.data && siblings.data.length > 0 ? (
        <p>
          {siblings.data.length} other answer{siblings.data.length === 1 ? "" : "s"} to this same conversation:{" "}
          {siblings.data.slice(0, 8).map((s) => (
            <button key={s.id} type="button" className="link" onClick={() => { setProblem(null); setSaved(null); setChosenOther(s.id); }} data-sibling={s.id}>
              {shortId(s.id)}
            </button>
          ))}
        </p>
      ) : (
        siblings.data && <p className="muted">No other answer to this same conversation yet.</p>
      )}
      <form className="inline-form" onSubmit={load} noValidate aria-label="Compare with an interaction id">
        <Field label="…or compare with interaction id" htmlFor="compare-id" error={problem}>
          <input id="compare-id" className="mono" placeholder="chatcmpl-…" value={otherId} onChange={(e) => { setOtherId(e.target.value); setProblem(null); }} />
        </Field>
        <button type="submit">Compare</button>
      </form>
      <ErrorText error={siblings.error} />
      <ErrorText error={chosenOther ? other.error : null} />
      <ErrorText error={pick.error} />
      {saved && <p className="ok" role="status">{saved}</p>}
      {otherData && (
        <>
          {!sameConversation && <p className="warn">This answer is to a different conversation.</p>}
          <div className="side-by-side">
            <div>
              <h3>A: this answer</h3>
              <MessageView message={outputMessage(interaction.output) ?? { role: "assistant", content: null }} label={`Assistant · ${shortId(interaction.id)}`} />
              <button type="button" className="primary" disabled={pick.isPending} onClick={() => pick.mutate("this")}>
                A is better <Kbd>1</Kbd>
              </button>
            </div>
            <div>
              <h3>B: <Link to={`/review/${otherData.id}`}>{shortId(otherData.id)}</Link></h3>
              <MessageView message={outputMessage(otherData.output) ?? { role: "assistant", content: null }} label={`Assistant · ${shortId(otherData.id)}`} />
              <button type="button" className="primary" disabled={pick.isPending} onClick={() => pick.mutate("other")}>
                B is better <Kbd>2</Kbd>
              </button>
            </div>
          </div>
        </>
      )}
    </section>
  );
}

/** A feedback body as a page part gives it: the page adds which interaction and which choice. */
type FeedbackPart = Omit<FeedbackBody, "interaction_id" | "choice_index">;

function ScoreForm({ send }: { send: (body: FeedbackPart) => Promise<unknown> }) {
  const [score, setScore] = useState("");
  const [note, setNote] = useState("");
  const [errors, setErrors] = useState<{ score?: string | null; note?: string | null }>({});
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const found = {
      score: numberProblem(score, "the score", -1, 1),
      note: note.length > 4000 ? "The note is longer than 4,000 characters." : null,
    };
    setErrors(found);
    if (found.score || found.note) return;
    await send({ kind: "rating", rating: { score: Number(score) }, note: note || undefined });
    setScore("");
    setNote("");
  };
  return (
    <form className="inline-form" onSubmit={submit} noValidate aria-label="Rate with a score">
      <Field label="Score (−1 … 1)" htmlFor="rating-score" error={errors.score}>
        <input id="rating-score" inputMode="decimal" placeholder="0.5" value={score} onChange={(e) => { setScore(e.target.value); setErrors({}); }} />
      </Field>
      <Field label="Note" htmlFor="rating-note" error={errors.note}>
        <input id="rating-note" value={note} onChange={(e) => setNote(e.target.value)} />
      </Field>
      <button type="submit">Rate</button>
    </form>
  );
}

export function InteractionPage() {
  const { id = "" } = useParams();
  const navigate = useNavigate();
  const [editing, setEditing] = useState(false);
  const [status, setStatus] = useState<string | null>(null);
  const { tenant } = useSession();
  const queryClient = useQueryClient();
  const interaction = useQuery(queries.interaction(tenant, id));
  const { prev, next, search } = useMemo(() => neighbours(id), [id]);

  // Show the feedback the gateway answered with at once; the queue (its badges) and the
  // interactions the feedback names are read again.
  const post = async (body: FeedbackBody, done: string) => {
    const created = await unwrap(api.POST("/api/feedback", { body }));
    setStatus(done);
    queryClient.setQueryData(
      queries.interaction(tenant, created.interaction_id).queryKey,
      (it) => it && { ...it, feedback: [...(it.feedback ?? []).filter((f) => f.id !== created.id), created] },
    );
    await Promise.all(feedbackKeys(tenant).map((queryKey) => queryClient.invalidateQueries({ queryKey })));
    return created;
  };
  const feedback = useMutation({ mutationFn: ({ body, done }: { body: FeedbackBody; done: string }) => post(body, done) });
  const send = (body: FeedbackPart, done = "Saved.") =>
    feedback.mutateAsync({ body: { interaction_id: id, choice_index: ANSWER, idempotency_key: idempotencyKey(), ...body }, done });
  const thumbs = (value: "up" | "down") =>
    void send({ kind: "rating", rating: { thumbs: value } }, value === "up" ? "Rated: good." : "Rated: bad.").catch(() => undefined);

  useShortcuts(
    {
      u: () => thumbs("up"),
      "+": () => thumbs("up"),
      d: () => thumbs("down"),
      "-": () => thumbs("down"),
      e: () => setEditing(true),
      n: () => next && navigate(`/review/${next}`),
      p: () => prev && navigate(`/review/${prev}`),
      Escape: () => navigate(`/review${search ? `?${search}` : ""}`),
    },
    Boolean(interaction.data) && !editing,
  );

  if (interaction.error) {
    return (
      <div className="page">
        <Link to="/review">← Review queue</Link>
        <ErrorText error={interaction.error} />
      </div>
    );
  }
  if (!interaction.data) return <Loading what="the interaction" />;
  const it = interaction.data;
  const original = outputMessage(it.output);
  const tools = requestTools(it.request);
  const usage = it.usage as { prompt_tokens?: number; completion_tokens?: number } | null;

  return (
    <div className="page interaction">
      <header className="page-head">
        <div>
          <Link to={`/review${search ? `?${search}` : ""}`}>← Review queue</Link>
          <h1>
            Interaction <span className="mono">{shortId(it.id)}</span>
          </h1>
          <p className="muted">
            <strong>{it.agent}</strong> · {it.adapter_version ? `v${it.adapter_version}` : "base model"} · {formatTime(it.created_at)}
            {it.latency_ms != null && ` · ${Math.round(it.latency_ms)} ms`}
            {usage && ` · ${usage.prompt_tokens ?? "?"} + ${usage.completion_tokens ?? "?"} tokens`}
            {it.finish_reason && ` · finished: ${it.finish_reason}`}
          </p>
          <p className="muted small mono" data-testid="interaction-id">{it.id}</p>
        </div>
        <nav className="prev-next" aria-label="Queue">
          <button type="button" disabled={!prev} onClick={() => prev && navigate(`/review/${prev}`)}>
            ← Newer <Kbd>p</Kbd>
          </button>
          <button type="button" disabled={!next} onClick={() => next && navigate(`/review/${next}`)}>
            Older <Kbd>n</Kbd> →
          </button>
        </nav>
      </header>

      <section className="card" aria-label="Conversation">
        <h2>Conversation</h2>
        <Conversation messages={requestMessages(it.request)} tools={tools} />
      </section>

      <section className="card answer" aria-label="Answer">
        <h2>{editing ? "Correct the answer" : "The answer"}</h2>
        {it.error && <ErrorText error={`The request failed: ${JSON.stringify(it.error)}`} />}
        {editing ? (
          <CorrectionEditor
            original={original}
            tools={tools}
            saving={feedback.isPending}
            serverError={feedback.error}
            onCancel={() => setEditing(false)}
            onSubmit={async (correction, note) => {
              // A refusal stays in the editor, shown next to the field it names.
              await send({ kind: "correction", correction, note: note || undefined }, "Correction saved: it becomes training data.")
                .then(() => setEditing(false))
                .catch(() => undefined);
            }}
          />
        ) : (
          <>
            {original ? <MessageView message={original} label="Assistant (logged)" /> : <p className="muted">No answer was logged.</p>}
            <div className="actions rate-actions">
              <button type="button" onClick={() => setEditing(true)} disabled={!original}>
                Edit answer <Kbd>e</Kbd>
              </button>
              <button type="button" className="good" onClick={() => thumbs("up")} disabled={feedback.isPending} aria-label="Thumbs up">
                <Thumb up /> Good <Kbd>u</Kbd>
              </button>
              <button type="button" className="bad" onClick={() => thumbs("down")} disabled={feedback.isPending} aria-label="Thumbs down">
                <Thumb up={false} /> Bad <Kbd>d</Kbd>
              </button>
            </div>
            <ScoreForm send={(body) => send(body, "Rated.").catch(() => undefined)} />
            <ErrorText error={feedback.error} />
          </>
        )}
        <p className="ok" role="status">
          {status}
        </p>
      </section>

      {!editing && original && <Compare interaction={it} send={(body) => post(body, "Preference saved.")} />}

      <section className="card" aria-label="Feedback given">
        <h2>Feedback on this answer</h2>
        {it.feedback && it.feedback.length ? (
          <ul className="feedback-list">
            {it.feedback.map((f) => (
              <FeedbackItem key={f.id} item={f} original={original} />
            ))}
          </ul>
        ) : (
          <p className="muted">None yet.</p>
        )}
        <p className="muted small">
          Shortcuts: <Kbd>u</Kbd>/<Kbd>+</Kbd> good, <Kbd>d</Kbd>/<Kbd>-</Kbd> bad, <Kbd>e</Kbd> edit, <Kbd>n</Kbd>/<Kbd>p</Kbd> older/newer, <Kbd>Esc</Kbd> back to the queue. Summary of the answer: {summarize(original, 80)}
        </p>
      </section>
    </div>
  );
}
