// Chat messages as the gateway logs them (OpenAI shape), and the operator's correction draft.
import type { Schemas } from "../api/client";

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ContentPart {
  type: string;
  text?: string;
}

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool" | string;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[] | null;
  tool_call_id?: string;
}

export interface ToolSpec {
  type: "function";
  function: { name: string; description?: string; parameters?: unknown };
}

export type CorrectedMessage = Schemas["CorrectedMessage"];

/** The text of a message's content, whether a string or a list of parts. */
export function contentText(content: ChatMessage["content"]): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  return content.map((part) => (part.type === "text" ? (part.text ?? "") : `[${part.type}]`)).join("");
}

/** JSON laid out for reading; anything that is not JSON comes back unchanged. */
export function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function requestMessages(request: Record<string, unknown> | null | undefined): ChatMessage[] {
  const messages = request?.["messages"];
  return Array.isArray(messages) ? (messages as ChatMessage[]) : [];
}

export function requestTools(request: Record<string, unknown> | null | undefined): ToolSpec[] {
  const tools = request?.["tools"];
  return Array.isArray(tools) ? (tools as ToolSpec[]) : [];
}

export function outputMessage(output: Record<string, unknown> | null | undefined): ChatMessage | null {
  if (!output) return null;
  return { role: "assistant", ...(output as Partial<ChatMessage>) } as ChatMessage;
}

/** One line saying what an assistant message did, for lists. */
export function summarize(message: ChatMessage | null, max = 120): string {
  if (!message) return "(no output)";
  const calls = (message.tool_calls ?? []).map((c) => `${c.function.name}(${compact(c.function.arguments)})`);
  const text = contentText(message.content).trim();
  const parts = [text, ...calls.map((c) => `→ ${c}`)].filter(Boolean);
  const line = parts.join("  ").replace(/\s+/g, " ");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line || "(empty)";
}

function compact(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}

/** The last user message of a conversation, for lists. */
export function lastUserText(messages: ChatMessage[], max = 120): string {
  const user = [...messages].reverse().find((m) => m.role === "user");
  const line = contentText(user?.content).replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

// ---- the correction draft -------------------------------------------------------------------

export interface DraftCall {
  id: string;
  name: string;
  arguments: string;
}

export interface Draft {
  content: string;
  toolCalls: DraftCall[];
}

export function draftFrom(message: ChatMessage | null): Draft {
  return {
    content: contentText(message?.content),
    toolCalls: (message?.tool_calls ?? []).map((c) => ({
      id: c.id,
      name: c.function.name,
      arguments: c.function.arguments,
    })),
  };
}

export function newCallId(): string {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return `call_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The draft as the assistant message it stands for (content null when empty). */
export function draftMessage(draft: Draft): ChatMessage {
  return {
    role: "assistant",
    content: draft.content.trim() ? draft.content : null,
    tool_calls: draft.toolCalls.length
      ? draft.toolCalls.map((c) => ({
          id: c.id,
          type: "function" as const,
          function: { name: c.name.trim(), arguments: c.arguments.trim() },
        }))
      : null,
  };
}

export type DraftErrors = Record<string, string>;

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Check a correction before anything is sent. Keys of the errors: `form`, `content`,
 * `tool.<i>.name`, `tool.<i>.arguments`. With no errors, `correction` is the API body.
 */
export function validateDraft(
  draft: Draft,
  original: ChatMessage | null,
  tools: ToolSpec[],
): { errors: DraftErrors; correction?: CorrectedMessage } {
  const errors: DraftErrors = {};
  const known = tools.map((t) => t.function.name);
  if (!draft.content.trim() && draft.toolCalls.length === 0) {
    errors["form"] = "A correction needs text or at least one tool call.";
  }
  if (draft.content.length > 100_000) errors["content"] = "The text is longer than 100,000 characters.";
  if (draft.toolCalls.length > 32) errors["form"] = "At most 32 tool calls.";
  draft.toolCalls.forEach((call, i) => {
    const name = call.name.trim();
    if (!TOOL_NAME.test(name)) {
      errors[`tool.${i}.name`] = "A tool name is 1-64 letters, digits, '_' or '-'.";
    } else if (known.length && !known.includes(name)) {
      errors[`tool.${i}.name`] = `This request offered no tool '${name}' (it offered ${known.join(", ")}).`;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(call.arguments);
    } catch (e) {
      errors[`tool.${i}.arguments`] = `The arguments are not valid JSON: ${(e as Error).message}`;
      return;
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      errors[`tool.${i}.arguments`] = "The arguments must be a JSON object, such as {\"x\": 1}.";
    }
  });
  if (!Object.keys(errors).length && sameMessage(draftMessage(draft), original)) {
    errors["form"] = "Nothing has changed yet: edit the answer before saving a correction.";
  }
  if (Object.keys(errors).length) return { errors };
  const message = draftMessage(draft);
  return {
    errors,
    correction: { content: message.content as string | null, tool_calls: message.tool_calls ?? null },
  };
}

function sameMessage(a: ChatMessage, b: ChatMessage | null): boolean {
  const calls = (m: ChatMessage | null) =>
    (m?.tool_calls ?? []).map((c) => [c.function.name, compact(c.function.arguments)]);
  return (
    contentText(a.content).trim() === contentText(b?.content).trim() &&
    JSON.stringify(calls(a)) === JSON.stringify(calls(b))
  );
}
