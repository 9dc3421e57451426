// Line and word diffs for the correction view: what the operator changed in the assistant's
// message, field by field (text, each tool call's name and arguments).
import { diffArrays, diffWordsWithSpace } from "diff";
import { type ChatMessage, contentText, prettyJson } from "./messages";

export type OpKind = "same" | "add" | "del";

export interface Op {
  kind: OpKind;
  text: string;
}

/** A line of the rendered diff; changed lines carry word-level ops for highlighting. */
export interface DiffLine {
  kind: OpKind;
  text: string;
  words?: Op[];
}

// Myers' diff costs O((N + M) · D) for D edits: cheap for a correction, which changes a few
// lines or words. Past this many edits the two sides have little in common, and showing the
// changed span as removed then added says as much as an exact script would.
const MAX_EDITS = 2_000;

type Change<T> = { value: T; added: boolean; removed: boolean };

function opsOf<T>(changes: Change<T>[] | undefined, a: T, b: T, text: (value: T) => string[]): Op[] {
  if (!changes) {
    return [...text(a).map((t): Op => ({ kind: "del", text: t })), ...text(b).map((t): Op => ({ kind: "add", text: t }))];
  }
  return changes.flatMap((c) => {
    const kind: OpKind = c.added ? "add" : c.removed ? "del" : "same";
    return text(c.value).map((t) => ({ kind, text: t }));
  });
}

/** A shortest-edit-script diff of two token lists (jsdiff's Myers diff), one op per token. */
export function diffTokens(a: string[], b: string[]): Op[] {
  return opsOf(diffArrays(a, b, { maxEditLength: MAX_EDITS }), a, b, (tokens) => tokens);
}

/** A word diff of two lines; spaces are tokens too, so each side's ops join back to its text. */
export function diffWordsOf(before: string, after: string): Op[] {
  const changes = diffWordsWithSpace(before, after, { maxEditLength: MAX_EDITS });
  return opsOf(changes, before, after, (text) => (text ? [text] : []));
}

export function splitLines(text: string): string[] {
  return text === "" ? [] : text.split(/\r?\n/);
}

/**
 * A line diff in which a run of removed lines followed by as many added lines is paired up,
 * and each pair carries a word diff, so that a one-word edit shows as that word.
 */
export function diffText(before: string, after: string): DiffLine[] {
  const ops = diffTokens(splitLines(before), splitLines(after));
  const lines: DiffLine[] = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.kind === "same") {
      lines.push({ kind: "same", text: ops[k]!.text });
      k++;
      continue;
    }
    const dels: string[] = [];
    const adds: string[] = [];
    while (k < ops.length && ops[k]!.kind !== "same") {
      (ops[k]!.kind === "del" ? dels : adds).push(ops[k]!.text);
      k++;
    }
    const paired = Math.min(dels.length, adds.length);
    const wordOps = Array.from({ length: paired }, (_, p) => diffWordsOf(dels[p]!, adds[p]!));
    dels.forEach((text, p) =>
      lines.push({ kind: "del", text, words: p < paired ? wordOps[p]!.filter((o) => o.kind !== "add") : undefined }),
    );
    adds.forEach((text, p) =>
      lines.push({ kind: "add", text, words: p < paired ? wordOps[p]!.filter((o) => o.kind !== "del") : undefined }),
    );
  }
  return lines;
}

export interface FieldDiff {
  /** What the field is, for a heading: "Text", "Tool call 1: name", ... */
  label: string;
  /** "changed", "added" (only in the edit), "removed" (only in the original) or "same". */
  status: "changed" | "added" | "removed" | "same";
  lines: DiffLine[];
}

export interface DiffSummary {
  added: number;
  removed: number;
}

/** The field-by-field diff of an assistant message against its edited version. */
export function diffMessages(original: ChatMessage | null, edited: ChatMessage): FieldDiff[] {
  const fields: FieldDiff[] = [];
  fields.push(field("Text", contentText(original?.content), contentText(edited.content)));
  const before = original?.tool_calls ?? [];
  const after = edited.tool_calls ?? [];
  for (let i = 0; i < Math.max(before.length, after.length); i++) {
    const a = before[i];
    const b = after[i];
    const label = `Tool call ${i + 1}`;
    if (a && !b) {
      fields.push({ ...field(`${label}: ${a.function.name}`, renderCall(a), ""), status: "removed" });
    } else if (!a && b) {
      fields.push({ ...field(`${label}: ${b.function.name}`, "", renderCall(b)), status: "added" });
    } else if (a && b) {
      fields.push(field(`${label}: ${b.function.name}`, renderCall(a), renderCall(b)));
    }
  }
  return fields.filter((f) => f.status !== "same" || f.lines.length > 0);
}

function renderCall(call: { function: { name: string; arguments: string } }): string {
  return `${call.function.name}\n${prettyJson(call.function.arguments)}`;
}

function field(label: string, before: string, after: string): FieldDiff {
  const lines = diffText(before, after);
  const changed = lines.some((l) => l.kind !== "same");
  const status = !changed ? "same" : before === "" ? "added" : after === "" ? "removed" : "changed";
  return { label, status, lines };
}

export function summarizeDiff(fields: FieldDiff[]): DiffSummary {
  let added = 0;
  let removed = 0;
  for (const f of fields) {
    for (const line of f.lines) {
      if (line.kind === "add") added++;
      if (line.kind === "del") removed++;
    }
  }
  return { added, removed };
}
