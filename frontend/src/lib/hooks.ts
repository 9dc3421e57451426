// Small hooks: load data (optionally polling), run an action with its pending state and error,
// and keyboard shortcuts that stay out of the way of typing.
import { type DependencyList, useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "../api/client";

export interface Query<T> {
  data: T | undefined;
  error: ApiError | Error | null;
  loading: boolean;
  reload: () => Promise<void>;
  /** Replace the data with what a write answered (an in-flight load is then ignored). */
  mutate: (update: (data: T | undefined) => T | undefined) => void;
}

/**
 * Load with `fetcher` when `deps` change; `pollMs` (a number, or a function of the data that
 * returns one or null) reloads in the background while it says so.
 */
export function useQuery<T>(
  fetcher: () => Promise<T>,
  deps: DependencyList,
  pollMs?: number | ((data: T | undefined) => number | null),
): Query<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;

  const load = useCallback(async (background: boolean) => {
    const mine = ++generation.current;
    if (!background) setLoading(true);
    try {
      const value = await fetcherRef.current();
      if (mine === generation.current) {
        setData(value);
        setError(null);
      }
    } catch (e) {
      if (mine === generation.current) setError(e as Error);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    setData(undefined);
    void load(false);
    return () => {
      generation.current++;
    };
  }, deps);

  const interval = typeof pollMs === "function" ? pollMs(data) : pollMs;
  useEffect(() => {
    if (!interval) return;
    const timer = window.setTimeout(() => void load(true), interval);
    return () => window.clearTimeout(timer);
  }, [interval, data, load]);

  const reload = useCallback(() => load(true), [load]);
  const mutate = useCallback((update: (current: T | undefined) => T | undefined) => {
    generation.current++;
    setLoading(false);
    setData(update);
  }, []);
  return { data, error, loading, reload, mutate };
}

export interface Action<A extends unknown[], R> {
  run: (...args: A) => Promise<R | undefined>;
  pending: boolean;
  error: ApiError | Error | null;
  setError: (error: Error | null) => void;
}

/** Run a write; its error is kept to show next to the control that caused it. */
export function useAction<A extends unknown[], R>(action: (...args: A) => Promise<R>): Action<A, R> {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const ref = useRef(action);
  ref.current = action;
  const run = useCallback(async (...args: A) => {
    setPending(true);
    setError(null);
    try {
      return await ref.current(...args);
    } catch (e) {
      setError(e as Error);
      return undefined;
    } finally {
      setPending(false);
    }
  }, []);
  return { run, pending, error, setError };
}

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
  const ref = useRef(bindings);
  ref.current = bindings;
  useEffect(() => {
    if (!enabled) return;
    const onKey = (event: KeyboardEvent) => {
      const mod = event.ctrlKey || event.metaKey;
      const name = mod ? `mod+${event.key}` : event.key;
      if (!mod && event.altKey) return;
      if (!mod && event.key !== "Escape" && typing(event.target)) return;
      // Enter and Space on a focused button or link belong to that control.
      if ((event.key === "Enter" || event.key === " ") && activates(event.target)) return;
      const handler = ref.current[name];
      if (handler) {
        event.preventDefault();
        handler();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [enabled]);
}
