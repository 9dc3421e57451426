// Keyboard shortcuts that stay out of the way of typing.
import { useEffect, useEffectEvent } from "react";

function typing(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName);
}

function activates(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return Boolean(el && ["BUTTON", "A", "SUMMARY"].includes(el.tagName));
}

/**
 * Keyboard shortcuts by key (`"u"`, `"?"`, `"mod+Enter"`, `"Escape"`). Plain keys are ignored
 * while the focus is in a field; `mod+` (Ctrl or Cmd) and Escape work everywhere.
 */
export function useShortcuts(bindings: Record<string, (() => void) | undefined>, enabled = true): void {
  // An effect event sees this render's bindings without re-adding the listener on every render.
  const onKey = useEffectEvent((event: KeyboardEvent) => {
    const mod = event.ctrlKey || event.metaKey;
    const name = mod ? `mod+${event.key}` : event.key;
    if (!mod && event.altKey) return;
    if (!mod && event.key !== "Escape" && typing(event.target)) return;
    // Enter and Space on a focused button or link belong to that control.
    if ((event.key === "Enter" || event.key === " ") && activates(event.target)) return;
    const handler = bindings[name];
    if (handler) {
      event.preventDefault();
      handler();
    }
  });
  useEffect(() => {
    if (!enabled) return;
    const listener = (event: KeyboardEvent) => onKey(event);
    window.addEventListener("keydown", listener);
    return () => window.removeEventListener("keydown", listener);
  }, [enabled]);
}
