// Edit the assistant's answer in place: its text and each tool call's name and arguments,
// with the diff against the original underneath.
import { type FormEvent, useState } from "react";
import {
  type ChatMessage,
  type CorrectedMessage,
  type Draft,
  type DraftErrors,
  draftFrom,
  draftMessage,
  newCallId,
  type ToolSpec,
  validateDraft,
} from "../lib/messages";
import { DiffView } from "./DiffView";
import { ErrorText, Field, Kbd } from "./ui";

interface Props {
  original: ChatMessage | null;
  tools: ToolSpec[];
  onSubmit: (correction: CorrectedMessage, note: string) => Promise<unknown>;
  onCancel: () => void;
  saving: boolean;
  serverError: Error | null;
}

export function CorrectionEditor({ original, tools, onSubmit, onCancel, saving, serverError }: Props) {
  const [draft, setDraft] = useState<Draft>(() => draftFrom(original));
  const [note, setNote] = useState("");
  const [errors, setErrors] = useState<DraftErrors>({});

  const update = (change: (d: Draft) => Draft, clear: string[]) => {
    setDraft((d) => change(d));
    setErrors((e) => {
      const next: DraftErrors = { ...e, form: "" };
      for (const key of clear) next[key] = "";
      return next;
    });
  };
  const setCall = (i: number, key: "name" | "arguments", value: string) =>
    update(
      (d) => ({ ...d, toolCalls: d.toolCalls.map((c, j) => (j === i ? { ...c, [key]: value } : c)) }),
      [`tool.${i}.${key}`],
    );

  const submit = async (event?: FormEvent) => {
    event?.preventDefault();
    const { errors: found, correction } = validateDraft(draft, original, tools);
    if (note.length > 4000) found["note"] = "The note is longer than 4,000 characters.";
    setErrors(found);
    if (!correction || found["note"]) return;
    await onSubmit(correction, note);
  };

  return (
    <form
      className="correction-editor"
      onSubmit={submit}
      noValidate
      aria-label="Correct the answer"
      onKeyDown={(e) => {
        if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
          e.preventDefault();
          void submit();
        } else if (e.key === "Escape") {
          e.preventDefault();
          onCancel();
        }
      }}
    >
      <Field label="Assistant text" htmlFor="correction-content" error={errors["content"]} hint="leave empty for a tool call only">
        <textarea
          id="correction-content"
          rows={Math.min(Math.max(draft.content.split("\n").length + 1, 3), 16)}
          value={draft.content}
          onChange={(e) => update((d) => ({ ...d, content: e.target.value }), ["content"])}
          autoFocus
        />
      </Field>
      {draft.toolCalls.map((call, i) => (
        <fieldset key={call.id} className="tool-call-edit" data-index={i}>
          <legend>Tool call {i + 1}</legend>
          <Field label="Function" htmlFor={`tool-${i}-name`} error={errors[`tool.${i}.name`]}>
            <input
              id={`tool-${i}-name`}
              value={call.name}
              list="offered-tools"
              spellCheck={false}
              onChange={(e) => setCall(i, "name", e.target.value)}
            />
          </Field>
          <Field label="Arguments (JSON)" htmlFor={`tool-${i}-arguments`} error={errors[`tool.${i}.arguments`]}>
            <textarea
              id={`tool-${i}-arguments`}
              className="mono"
              rows={Math.min(Math.max(call.arguments.split("\n").length + 1, 2), 14)}
              value={call.arguments}
              spellCheck={false}
              onChange={(e) => setCall(i, "arguments", e.target.value)}
            />
          </Field>
          <button
            type="button"
            className="link danger"
            onClick={() => update((d) => ({ ...d, toolCalls: d.toolCalls.filter((_, j) => j !== i) }), [])}
          >
            Remove tool call {i + 1}
          </button>
        </fieldset>
      ))}
      <datalist id="offered-tools">
        {tools.map((t) => (
          <option key={t.function.name} value={t.function.name} />
        ))}
      </datalist>
      <button
        type="button"
        onClick={() =>
          update(
            (d) => ({
              ...d,
              toolCalls: [...d.toolCalls, { id: newCallId(), name: tools[0]?.function.name ?? "", arguments: "{}" }],
            }),
            [],
          )
        }
      >
        Add tool call
      </button>
      <Field label="Note (optional)" htmlFor="correction-note" error={errors["note"]}>
        <input id="correction-note" value={note} onChange={(e) => setNote(e.target.value)} />
      </Field>

      <h3>Diff against the original</h3>
      <DiffView original={original} edited={draftMessage(draft)} />

      <ErrorText error={errors["form"]} />
      <ErrorText error={serverError} />
      <div className="actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? "Saving…" : "Save correction"}
        </button>
        <button type="button" onClick={onCancel} disabled={saving}>
          Cancel
        </button>
        <span className="muted small">
          <Kbd>Ctrl</Kbd>+<Kbd>Enter</Kbd> saves, <Kbd>Esc</Kbd> cancels
        </span>
      </div>
    </form>
  );
}
