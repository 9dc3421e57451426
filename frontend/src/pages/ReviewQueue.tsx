// The operator's review queue: the tenant's interactions, newest first, with filters kept in
// the URL so that a filtered queue can be shared and reloaded.
import { useQuery } from "@tanstack/react-query";
import { type FormEvent, useEffect, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import type { Schemas } from "../api/client";
import { queries } from "../api/queries";
import { useSession } from "../auth/session";
import { ErrorText, Field, Kbd, Loading } from "../components/ui";
import { ago, formatTime, shortId } from "../lib/format";
import { useShortcuts } from "../lib/shortcuts";
import { lastUserText, outputMessage, requestMessages, summarize } from "../lib/messages";
import { integerProblem, localToIso } from "../lib/validate";

const PAGE = 50;
export const QUEUE_KEY = "clora.queue";

/** How the queue names each kind of feedback an interaction already has, and its tone. */
const FEEDBACK_BADGES: Record<Schemas["FeedbackKind"], { label: string; tone: string; title: string }> = {
  rating: { label: "rated", tone: "info", title: "an operator or the agent rated this answer" },
  correction: { label: "corrected", tone: "good", title: "this answer has a correction: it is training data" },
  preference: { label: "compared", tone: "busy", title: "this answer was preferred over another one" },
};

/** The feedback an interaction already has, as badges; "none" while nobody has reviewed it. */
export function FeedbackBadges({ kinds }: { kinds: Schemas["FeedbackKind"][] }) {
  if (!kinds.length) return <span className="muted small">none</span>;
  return (
    <span className="feedback-badges">
      {kinds.map((kind) => (
        <span key={kind} className={`badge ${FEEDBACK_BADGES[kind].tone}`} data-feedback={kind} title={FEEDBACK_BADGES[kind].title}>
          {FEEDBACK_BADGES[kind].label}
        </span>
      ))}
    </span>
  );
}

interface Filters {
  agent: string;
  version: string;
  unrated: boolean;
  lowRating: boolean;
  hasCorrection: "" | "yes" | "no";
  since: string;
  until: string;
}

function filtersFrom(params: URLSearchParams): Filters {
  const hc = params.get("has_correction");
  return {
    agent: params.get("agent") ?? "",
    version: params.get("version") ?? "",
    unrated: params.get("unrated") === "1",
    lowRating: params.get("low_rating") === "1",
    hasCorrection: hc === "yes" || hc === "no" ? hc : "",
    since: params.get("since") ?? "",
    until: params.get("until") ?? "",
  };
}

function paramsFrom(f: Filters): URLSearchParams {
  const p = new URLSearchParams();
  if (f.agent) p.set("agent", f.agent);
  if (f.version.trim()) p.set("version", f.version.trim());
  if (f.unrated) p.set("unrated", "1");
  if (f.lowRating) p.set("low_rating", "1");
  if (f.hasCorrection) p.set("has_correction", f.hasCorrection);
  if (f.since) p.set("since", f.since);
  if (f.until) p.set("until", f.until);
  return p;
}

export function filterProblems(f: Filters): Partial<Record<keyof Filters, string>> {
  const errors: Partial<Record<keyof Filters, string>> = {};
  if (f.version.trim()) {
    const problem = integerProblem(f.version, "the version", 1, 1_000_000);
    if (problem) errors.version = problem;
  }
  if (f.since && !localToIso(f.since)) errors.since = "That is not a date and time.";
  if (f.until && !localToIso(f.until)) errors.until = "That is not a date and time.";
  if (!errors.since && !errors.until && f.since && f.until && localToIso(f.since)! >= localToIso(f.until)!) {
    errors.until = "'Until' must be after 'since'.";
  }
  return errors;
}

export function ReviewQueue() {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const applied = filtersFrom(params);
  const offset = Math.max(Number(params.get("offset")) || 0, 0);
  const [draft, setDraft] = useState<Filters>(applied);
  const [errors, setErrors] = useState<Partial<Record<keyof Filters, string>>>({});
  const [selected, setSelected] = useState(0);
  const key = params.toString();
  // The URL's filters (after Apply, Clear, or going back) replace the draft.
  const [shownKey, setShownKey] = useState(key);
  if (key !== shownKey) {
    setShownKey(key);
    setDraft(filtersFrom(params));
  }

  const { tenant } = useSession();
  const agents = useQuery(queries.agents(tenant));
  const page = useQuery({
    ...queries.interactions(tenant, {
      agent: applied.agent || undefined,
      version: applied.version ? Number(applied.version) : undefined,
      unrated: applied.unrated || undefined,
      low_rating: applied.lowRating || undefined,
      has_correction: applied.hasCorrection ? applied.hasCorrection === "yes" : undefined,
      since: localToIso(applied.since) ?? undefined,
      until: localToIso(applied.until) ?? undefined,
      limit: PAGE,
      offset,
    }),
    // New interactions arrive while an operator reviews: read the page again every 15 s.
    refetchInterval: 15_000,
  });
  const items = page.data?.items ?? [];
  // A shorter page keeps the selection on its last row.
  const current = Math.min(selected, Math.max(items.length - 1, 0));

  // The interaction page's n/p walk this page of the queue.
  useEffect(() => {
    const ids = (page.data?.items ?? []).map((i) => i.id);
    sessionStorage.setItem(QUEUE_KEY, JSON.stringify({ ids, search: key }));
  }, [page.data, key]);

  useShortcuts({
    j: () => setSelected(Math.max(Math.min(current + 1, items.length - 1), 0)),
    k: () => setSelected(Math.max(current - 1, 0)),
    Enter: () => items[current] && navigate(`/review/${items[current]!.id}`),
    o: () => items[current] && navigate(`/review/${items[current]!.id}`),
    r: () => void page.refetch(),
  });

  const apply = (event: FormEvent) => {
    event.preventDefault();
    const found = filterProblems(draft);
    setErrors(found);
    if (Object.keys(found).length) return;
    setParams(paramsFrom(draft));
  };

  const setOffset = (next: number) => {
    const p = new URLSearchParams(params);
    if (next > 0) p.set("offset", String(next));
    else p.delete("offset");
    setParams(p);
  };

  const set = <K extends keyof Filters>(k: K, v: Filters[K]) => {
    setDraft((d) => ({ ...d, [k]: v }));
    setErrors((e) => ({ ...e, [k]: undefined }));
  };

  return (
    <div className="page review-queue">
      <header className="page-head">
        <h1>Review queue</h1>
        <span className="muted">
          {page.data ? `${page.data.total} interaction${page.data.total === 1 ? "" : "s"}` : ""} · newest first ·{" "}
          <Kbd>j</Kbd>/<Kbd>k</Kbd> move, <Kbd>Enter</Kbd> open, <Kbd>r</Kbd> refresh
        </span>
      </header>
      <form className="filters card" onSubmit={apply} noValidate aria-label="Filters">
        <Field label="Agent" htmlFor="filter-agent">
          <select id="filter-agent" value={draft.agent} onChange={(e) => set("agent", e.target.value)}>
            <option value="">all agents</option>
            {agents.data?.map((a) => (
              <option key={a.id} value={a.name}>
                {a.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Adapter version" htmlFor="filter-version" error={errors.version}>
          <input
            id="filter-version"
            inputMode="numeric"
            placeholder="any"
            value={draft.version}
            onChange={(e) => set("version", e.target.value)}
          />
        </Field>
        <Field label="Correction" htmlFor="filter-correction">
          <select
            id="filter-correction"
            value={draft.hasCorrection}
            onChange={(e) => set("hasCorrection", e.target.value as Filters["hasCorrection"])}
          >
            <option value="">any</option>
            <option value="yes">has a correction</option>
            <option value="no">no correction</option>
          </select>
        </Field>
        <Field label="Since" htmlFor="filter-since" error={errors.since}>
          <input id="filter-since" type="datetime-local" value={draft.since} onChange={(e) => set("since", e.target.value)} />
        </Field>
        <Field label="Until" htmlFor="filter-until" error={errors.until}>
          <input id="filter-until" type="datetime-local" value={draft.until} onChange={(e) => set("until", e.target.value)} />
        </Field>
        <div className="filter-checks">
          <label className="check">
            <input type="checkbox" checked={draft.unrated} onChange={(e) => set("unrated", e.target.checked)} />
            unrated
          </label>
          <label className="check">
            <input type="checkbox" checked={draft.lowRating} onChange={(e) => set("lowRating", e.target.checked)} />
            low rating
          </label>
        </div>
        <div className="actions">
          <button type="submit" className="primary">
            Apply filters
          </button>
          <button type="button" onClick={() => setParams(new URLSearchParams())}>
            Clear
          </button>
        </div>
        <ErrorText error={agents.error} />
      </form>

      <ErrorText error={page.error} />
      {page.isPending ? (
        <Loading what="interactions" />
      ) : items.length === 0 ? (
        <p className="empty">No interactions match these filters.</p>
      ) : (
        <table className="queue">
          <thead>
            <tr>
              <th>When</th>
              <th>Agent</th>
              <th>User asked</th>
              <th>Assistant answered</th>
              <th>Feedback</th>
              <th>Latency</th>
            </tr>
          </thead>
          <tbody>
            {items.map((item, i) => (
              <tr
                key={item.id}
                data-id={item.id}
                className={i === current ? "selected" : undefined}
                onClick={() => navigate(`/review/${item.id}`)}
              >
                <td title={formatTime(item.created_at)}>
                  <Link to={`/review/${item.id}`} onClick={(e) => e.stopPropagation()}>
                    {ago(item.created_at)}
                  </Link>
                  <div className="muted small mono">{shortId(item.id)}</div>
                </td>
                <td>
                  {item.agent}
                  <div className="muted small">{item.adapter_version ? `v${item.adapter_version}` : "base"}</div>
                </td>
                <td className="clip">{lastUserText(requestMessages(item.request))}</td>
                <td className="clip">
                  {item.error ? (
                    <span className="error">error: {String((item.error as { message?: string }).message ?? "")}</span>
                  ) : (
                    summarize(outputMessage(item.output))
                  )}
                </td>
                <td className="feedback-cell">
                  <FeedbackBadges kinds={item.feedback_kinds} />
                </td>
                <td className="num">{item.latency_ms != null ? `${Math.round(item.latency_ms)} ms` : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {page.data && page.data.total > PAGE && (
        <nav className="pager" aria-label="Pages">
          <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(offset - PAGE, 0))}>
            Newer
          </button>
          <span className="muted">
            {offset + 1}–{Math.min(offset + PAGE, page.data.total)} of {page.data.total}
          </span>
          <button type="button" disabled={offset + PAGE >= page.data.total} onClick={() => setOffset(offset + PAGE)}>
            Older
          </button>
        </nav>
      )}
    </div>
  );
}
