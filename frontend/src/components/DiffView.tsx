// The operator's edit against the original assistant message, field by field.
import { diffMessages, type DiffLine, summarizeDiff } from "../lib/diff";
import type { ChatMessage } from "../lib/messages";

const MARK = { same: " ", add: "+", del: "−" } as const;

function Line({ line }: { line: DiffLine }) {
  return (
    <div className={`diff-line ${line.kind}`} data-kind={line.kind}>
      <span className="diff-mark" aria-hidden="true">
        {MARK[line.kind]}
      </span>
      <span className="diff-text">
        {line.words
          ? line.words.map((w, i) =>
              w.kind === "same" ? (
                <span key={i}>{w.text}</span>
              ) : w.kind === "add" ? (
                <ins key={i}>{w.text}</ins>
              ) : (
                <del key={i}>{w.text}</del>
              ),
            )
          : line.text || "\u00a0"}
      </span>
    </div>
  );
}

export function DiffView({ original, edited }: { original: ChatMessage | null; edited: ChatMessage }) {
  const fields = diffMessages(original, edited);
  const changed = fields.filter((f) => f.status !== "same");
  const { added, removed } = summarizeDiff(fields);
  return (
    <section className="diff" aria-label="Changes against the original">
      <header className="diff-summary">
        {changed.length === 0 ? (
          <span className="muted">No changes yet.</span>
        ) : (
          <>
            <span className="diff-count add">+{added}</span> <span className="diff-count del">−{removed}</span>{" "}
            <span className="muted">
              line{added + removed === 1 ? "" : "s"} in {changed.length} field{changed.length === 1 ? "" : "s"}
            </span>
          </>
        )}
      </header>
      {changed.map((f) => (
        <figure key={f.label} className={`diff-field ${f.status}`} data-status={f.status}>
          <figcaption>
            {f.label} <span className="muted">({f.status})</span>
          </figcaption>
          <div className="diff-body">
            {f.lines.map((line, i) => (
              <Line key={i} line={line} />
            ))}
          </div>
        </figure>
      ))}
    </section>
  );
}
