import { describe, expect, it } from "vitest";
import { diffMessages, diffText, diffTokens, diffWordsOf, summarizeDiff } from "../src/lib/diff";
import type { ChatMessage } from "../src/lib/messages";

const join = (ops: { kind: string; text: string }[], keep: string[]) =>
  ops.filter((o) => keep.includes(o.kind)).map((o) => o.text).join("");

describe("diffTokens", () => {
  it("keeps both sides recoverable", () => {
    const a = ["a", "b", "c", "d"];
    const b = ["a", "x", "c", "d", "e"];
    const ops = diffTokens(a, b);
    expect(ops.filter((o) => o.kind !== "add").map((o) => o.text)).toEqual(a);
    expect(ops.filter((o) => o.kind !== "del").map((o) => o.text)).toEqual(b);
    expect(ops.filter((o) => o.kind === "same").map((o) => o.text)).toEqual(["a", "c", "d"]);
  });

  it("finds a longest common subsequence, not just a common prefix and suffix", () => {
    const ops = diffTokens("xabcy".split(""), "zabcw".split(""));
    expect(ops.filter((o) => o.kind === "same").map((o) => o.text).join("")).toBe("abc");
  });

  it("handles empty sides", () => {
    expect(diffTokens([], ["a"])).toEqual([{ kind: "add", text: "a" }]);
    expect(diffTokens(["a"], [])).toEqual([{ kind: "del", text: "a" }]);
    expect(diffTokens([], [])).toEqual([]);
  });

  it("finds the two changed lines among thousands", () => {
    const a = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
    const b = ["first", ...a.slice(1, -1), "last"];
    const ops = diffTokens(a, b);
    expect(ops.filter((o) => o.kind === "del").map((o) => o.text)).toEqual(["line 0", "line 2999"]);
    expect(ops.filter((o) => o.kind === "add").map((o) => o.text)).toEqual(["first", "last"]);
    expect(ops.filter((o) => o.kind === "same")).toHaveLength(2998);
  });

  it("stays correct when the two sides have nothing in common", () => {
    const a = Array.from({ length: 3000 }, (_, i) => `a${i}`);
    const b = Array.from({ length: 3000 }, (_, i) => `b${i}`);
    const ops = diffTokens(a, b);
    expect(ops.filter((o) => o.kind === "del")).toHaveLength(3000);
    expect(ops.filter((o) => o.kind === "add")).toHaveLength(3000);
  });
});

describe("diffText", () => {
  it("pairs a changed line with its replacement and marks the changed words", () => {
    const lines = diffText("first line\nthe answer is 41\nlast", "first line\nthe answer is 42\nlast");
    expect(lines.map((l) => l.kind)).toEqual(["same", "del", "add", "same"]);
    const del = lines[1]!;
    const add = lines[2]!;
    expect(del.words?.filter((w) => w.kind === "del").map((w) => w.text)).toEqual(["41"]);
    expect(add.words?.filter((w) => w.kind === "add").map((w) => w.text)).toEqual(["42"]);
    expect(join(del.words!, ["same", "del"])).toBe("the answer is 41");
    expect(join(add.words!, ["same", "add"])).toBe("the answer is 42");
  });

  it("shows added lines without word pairs", () => {
    const lines = diffText("a", "a\nb\nc");
    expect(lines).toEqual([
      { kind: "same", text: "a" },
      { kind: "add", text: "b", words: undefined },
      { kind: "add", text: "c", words: undefined },
    ]);
  });

  it("marks only the changed words, and each side joins back to its text", () => {
    const before = 'calc({"x": 6*7}) — fine, ünïcode';
    const after = 'calc({"x": 6*8}) — fine,  ünïcodé';
    const ops = diffWordsOf(before, after);
    expect(join(ops, ["same", "del"])).toBe(before);
    expect(join(ops, ["same", "add"])).toBe(after);
    expect(ops.filter((o) => o.kind === "del").map((o) => o.text)).toEqual(["7", " ünïcode"]);
    expect(ops.filter((o) => o.kind === "add").map((o) => o.text)).toEqual(["8", "  ünïcodé"]);
  });

  it("finds the changed words in a long line (no fallback to replacing all of it)", () => {
    // 1,500 words: 3,000 tokens a side, past where the old quadratic diff gave up and showed
    // the whole line removed and added.
    const words = Array.from({ length: 1500 }, (_, i) => `word${i}`);
    const before = words.join(" ");
    const after = ["Word0", ...words.slice(1, 750), "changed", ...words.slice(751, -1), "end."].join(" ");
    const [del, add] = diffText(before, after);
    expect(del!.words!.filter((w) => w.kind === "del").map((w) => w.text)).toEqual(["word0", "word750", "word1499"]);
    expect(add!.words!.filter((w) => w.kind === "add").map((w) => w.text)).toEqual(["Word0", "changed", "end."]);
    expect(join(del!.words!, ["same", "del"])).toBe(before);
    expect(join(add!.words!, ["same", "add"])).toBe(after);
  });
});

describe("diffMessages", () => {
  const original: ChatMessage = {
    role: "assistant",
    content: "The answer is 41.",
    tool_calls: [{ id: "c1", type: "function", function: { name: "final_answer", arguments: '{"answer": "41"}' } }],
  };

  it("reports an unchanged message as no change", () => {
    const fields = diffMessages(original, original);
    expect(fields.every((f) => f.status === "same")).toBe(true);
    expect(summarizeDiff(fields)).toEqual({ added: 0, removed: 0 });
  });

  it("diffs the text and each tool call, with arguments laid out as JSON", () => {
    const edited: ChatMessage = {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c1", type: "function", function: { name: "calculator", arguments: '{"expression": "6 * 7"}' } }],
    };
    const fields = diffMessages(original, edited);
    const text = fields.find((f) => f.label === "Text")!;
    expect(text.status).toBe("removed");
    const call = fields.find((f) => f.label.startsWith("Tool call 1"))!;
    expect(call.status).toBe("changed");
    expect(call.label).toBe("Tool call 1: calculator");
    const added = call.lines.filter((l) => l.kind === "add").map((l) => l.text);
    expect(added).toContain("calculator");
    expect(added).toContain('  "expression": "6 * 7"');
  });

  it("reports tool calls added to an answer that had none", () => {
    const fields = diffMessages(
      { role: "assistant", content: "42" },
      { role: "assistant", content: "42", tool_calls: [{ id: "n", type: "function", function: { name: "calculator", arguments: "{}" } }] },
    );
    expect(fields.map((f) => [f.label, f.status])).toEqual([
      ["Text", "same"],
      ["Tool call 1: calculator", "added"],
    ]);
  });

  it("ignores formatting-only changes of the arguments", () => {
    const compact: ChatMessage = {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: '{"a":1}' } }],
    };
    const spaced: ChatMessage = {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: '{ "a" : 1 }' } }],
    };
    expect(summarizeDiff(diffMessages(compact, spaced))).toEqual({ added: 0, removed: 0 });
  });
});
