// A logged conversation, readable: system, user, assistant and tool messages, tool calls with
// their arguments laid out, and each tool result next to the call it answers.
import type { ReactNode } from "react";
import { type ChatMessage, contentText, prettyJson, type ToolCall, type ToolSpec } from "../lib/messages";

function ToolCallView({ call }: { call: ToolCall }) {
  return (
    <div className="tool-call" data-tool={call.function.name}>
      <div className="tool-call-head">
        <span className="tool-icon" aria-hidden="true">
          ƒ
        </span>
        <code className="tool-name">{call.function.name}</code>
        <span className="muted small">{call.id}</span>
      </div>
      <pre className="tool-args">{prettyJson(call.function.arguments)}</pre>
    </div>
  );
}

const ROLE_LABELS: Record<string, string> = {
  system: "System",
  developer: "Developer",
  user: "User",
  assistant: "Assistant",
  tool: "Tool result",
};

export function MessageView({
  message,
  label,
  toolNames,
  children,
}: {
  message: ChatMessage;
  label?: string;
  toolNames?: Map<string, string>;
  children?: ReactNode;
}) {
  const text = contentText(message.content);
  const role = message.role;
  const answered = role === "tool" && message.tool_call_id ? toolNames?.get(message.tool_call_id) : undefined;
  return (
    <article className={`message role-${role}`} data-role={role}>
      <header>
        <span className="role">{label ?? ROLE_LABELS[role] ?? role}</span>
        {answered && (
          <span className="muted small">
            for <code>{answered}</code> ({message.tool_call_id})
          </span>
        )}
        {message.name && <span className="muted small">{message.name}</span>}
      </header>
      {text ? (
        <div className="message-text">{role === "tool" ? prettyJson(text) : text}</div>
      ) : (
        !message.tool_calls?.length && <div className="message-text muted">(empty)</div>
      )}
      {message.tool_calls?.map((call) => <ToolCallView key={call.id} call={call} />)}
      {children}
    </article>
  );
}

export function Conversation({ messages, tools }: { messages: ChatMessage[]; tools: ToolSpec[] }) {
  const toolNames = new Map<string, string>();
  for (const m of messages) for (const c of m.tool_calls ?? []) toolNames.set(c.id, c.function.name);
  return (
    <div className="conversation">
      {tools.length > 0 && (
        <details className="tools-offered">
          <summary>
            {tools.length} tool{tools.length === 1 ? "" : "s"} offered:{" "}
            {tools.map((t) => (
              <code key={t.function.name}>{t.function.name}</code>
            ))}
          </summary>
          {tools.map((t) => (
            <div key={t.function.name} className="tool-spec">
              <code>{t.function.name}</code> <span className="muted">{t.function.description}</span>
              <pre>{JSON.stringify(t.function.parameters ?? {}, null, 2)}</pre>
            </div>
          ))}
        </details>
      )}
      {messages.map((m, i) => (
        <MessageView key={i} message={m} toolNames={toolNames} />
      ))}
    </div>
  );
}
