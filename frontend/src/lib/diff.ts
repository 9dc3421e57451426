// Line and word diffs for the correction view: what the operator changed in the assistant's
// message, field by field (text, each tool call's name and arguments).
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

// Above this many cells the quadratic LCS is skipped: the changed middle is shown as removed
// then added, which is still correct, only less precise.
const MAX_CELLS = 4_000_000;

/** A shortest-edit-script diff of two token lists (longest common subsequence). */
export function diffTokens(a: string[], b: string[]): Op[] {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const head: Op[] = a.slice(0, start).map((text) => ({ kind: "same", text }));
  const tail: Op[] = a.slice(endA).map((text) => ({ kind: "same", text }));
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  return [...head, ...lcsOps(midA, midB), ...tail];
}

function lcsOps(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  if (n === 0) return b.map((text) => ({ kind: "add", text }));
  if (m === 0) return a.map((text) => ({ kind: "del", text }));
  if (n * m > MAX_CELLS) {
    return [...a.map((text): Op => ({ kind: "del", text })), ...b.map((text): Op => ({ kind: "add", text }))];
  }
  // lengths[i][j]: LCS length of a[i:] and b[j:], flattened row-major.
  const width = m + 1;
  const lengths = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lengths[i * width + j] =
        a[i] === b[j]
          ? lengths[(i + 1) * width + j + 1]! + 1
          : Math.max(lengths[(i + 1) * width + j]!, lengths[i * width + j + 1]!);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ kind: "same", text: a[i]! });
      i++;
      j++;
    } else if (lengths[(i + 1) * width + j]! >= lengths[i * width + j + 1]!) {
      ops.push({ kind: "del", text: a[i]! });
      i++;
    } else {
      ops.push({ kind: "add", text: b[j]! });
      j++;
    }
  }
  while (i < n) ops.push({ kind: "del", text: a[i++]! });
  while (j < m) ops.push({ kind: "add", text: b[j++]! });
  return ops;
}

export function splitLines(text: string): string[] {
  return text === "" ? [] : text.split(/\r?\n/);
}

/** Words, runs of spaces and single punctuation marks, so that joining them gives the text back. */
export function splitWords(text: string): string[] {
  return text.match(/\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ?? [];
}

/** Merge neighbouring ops of the same kind (fewer, longer highlighted spans). */
export function mergeOps(ops: Op[]): Op[] {
  const out: Op[] = [];
  for (const op of ops) {
    const last = out[out.length - 1];
    if (last && last.kind === op.kind) last.text += op.text;
    else out.push({ ...op });
  }
  return out;
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
    const wordOps = Array.from({ length: paired }, (_, p) =>
      mergeOps(diffTokens(splitWords(dels[p]!), splitWords(adds[p]!))),
    );
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
