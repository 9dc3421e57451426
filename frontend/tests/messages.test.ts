import { describe, expect, it } from "vitest";
import { type ChatMessage, draftFrom, summarize, type ToolSpec, validateDraft } from "../src/lib/messages";

const TOOLS: ToolSpec[] = [
  { type: "function", function: { name: "calculator" } },
  { type: "function", function: { name: "final_answer" } },
];
const ORIGINAL: ChatMessage = {
  role: "assistant",
  content: null,
  tool_calls: [{ id: "call_1", type: "function", function: { name: "final_answer", arguments: '{"answer": "41"}' } }],
};

describe("validateDraft", () => {
  it("turns an edited tool call into the API's correction, keeping the call id and the typed arguments", () => {
    const draft = draftFrom(ORIGINAL);
    draft.toolCalls[0] = { ...draft.toolCalls[0]!, name: "calculator", arguments: '{"expression": "6 * 7"}' };
    expect(validateDraft(draft, ORIGINAL, TOOLS)).toEqual({
      errors: {},
      correction: {
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "calculator", arguments: '{"expression": "6 * 7"}' } }],
      },
    });
  });

  it("refuses an unchanged answer", () => {
    expect(validateDraft(draftFrom(ORIGINAL), ORIGINAL, TOOLS).errors["form"]).toMatch(/Nothing has changed/);
  });

  it("refuses an empty answer", () => {
    expect(validateDraft({ content: "  ", toolCalls: [] }, ORIGINAL, TOOLS).errors["form"]).toMatch(/needs text or at least one tool call/);
  });

  it("checks each tool call's name and arguments", () => {
    const { errors, correction } = validateDraft(
      {
        content: "",
        toolCalls: [
          { id: "a", name: "calculator", arguments: "{oops" },
          { id: "b", name: "search", arguments: "[1]" },
          { id: "c", name: "bad name!", arguments: "{}" },
        ],
      },
      ORIGINAL,
      TOOLS,
    );
    expect(correction).toBeUndefined();
    expect(errors["tool.0.arguments"]).toMatch(/not valid JSON/);
    expect(errors["tool.1.name"]).toMatch(/offered no tool 'search'/);
    expect(errors["tool.1.arguments"]).toMatch(/must be a JSON object/);
    expect(errors["tool.2.name"]).toMatch(/1-64 letters/);
  });

  it("allows any well-formed tool name when the request offered no tools", () => {
    const { errors } = validateDraft({ content: "", toolCalls: [{ id: "a", name: "lookup", arguments: "{}" }] }, null, []);
    expect(errors).toEqual({});
  });
});

describe("summarize", () => {
  it("says what an answer did in one line", () => {
    expect(summarize(ORIGINAL)).toBe('→ final_answer({"answer":"41"})');
    expect(summarize({ role: "assistant", content: "a\n  b" })).toBe("a b");
    expect(summarize(null)).toBe("(no output)");
  });
});
