// What the pages read from the gateway, as TanStack Query options: one key per resource, with
// the tenant it belongs to (a platform admin switches tenants without reloading), so that a
// write can invalidate exactly what it changed.
import { QueryClient, queryOptions } from "@tanstack/react-query";
import { api, unwrap } from "./client";
import type { paths } from "./schema";

/** The tenant a page acts on (`useSession().tenant`); part of every tenant-scoped key. */
type Tenant = string | null;

export type InteractionQuery = NonNullable<paths["/api/interactions"]["get"]["parameters"]["query"]>;

/** Cycle runs poll while one of them is queued or running; experiments likewise. */
export const ACTIVE = new Set(["queued", "running"]);

export const queries = {
  tenants: () => queryOptions({ queryKey: ["tenants"], queryFn: () => unwrap(api.GET("/api/tenants")) }),
  agents: (tenant: Tenant) =>
    queryOptions({ queryKey: ["agents", tenant], queryFn: () => unwrap(api.GET("/api/agents")) }),
  versions: (tenant: Tenant, name: string) =>
    queryOptions({
      queryKey: ["versions", tenant, name],
      queryFn: () => unwrap(api.GET("/api/agents/{name}/versions", { params: { path: { name } } })),
    }),
  schedule: (tenant: Tenant, name: string) =>
    queryOptions({
      queryKey: ["schedule", tenant, name],
      queryFn: () => unwrap(api.GET("/api/agents/{name}/schedule", { params: { path: { name } } })),
    }),
  /** An agent's cycle runs, each second while one is active. */
  cycles: (tenant: Tenant, agent: string) =>
    queryOptions({
      queryKey: ["cycles", tenant, agent],
      queryFn: () => unwrap(api.GET("/api/cycles", { params: { query: { agent } } })),
      refetchInterval: (query) => (query.state.data?.some((r) => ACTIVE.has(r.status)) ? 1000 : false),
    }),
  /** A page of the review queue. */
  interactions: (tenant: Tenant, query: InteractionQuery) =>
    queryOptions({
      queryKey: ["interactions", tenant, query],
      queryFn: () => unwrap(api.GET("/api/interactions", { params: { query } })),
    }),
  interaction: (tenant: Tenant, id: string) =>
    queryOptions({
      queryKey: ["interaction", tenant, id],
      queryFn: () => unwrap(api.GET("/api/interactions/{interaction_id}", { params: { path: { interaction_id: id } } })),
    }),
  keys: (tenant: Tenant) => queryOptions({ queryKey: ["keys", tenant], queryFn: () => unwrap(api.GET("/api/keys")) }),
  users: (tenant: Tenant) => queryOptions({ queryKey: ["users", tenant], queryFn: () => unwrap(api.GET("/api/users")) }),
  /** RL experiments, every 1.5 s while one is active. */
  experiments: (tenant: Tenant) =>
    queryOptions({
      queryKey: ["experiments", tenant],
      queryFn: () => unwrap(api.GET("/api/experiments")),
      refetchInterval: (query) => (query.state.data?.some((e) => ACTIVE.has(e.status)) ? 1500 : false),
    }),
  benchmark: (tenant: Tenant) =>
    queryOptions({
      queryKey: ["benchmark", tenant],
      queryFn: () => unwrap(api.GET("/api/benchmarks/experiments")) as Promise<unknown>,
    }),
};

/** What feedback changes: every page of the queue (its badges) and every single interaction. */
export function feedbackKeys(tenant: Tenant): readonly (readonly unknown[])[] {
  return [["interactions", tenant], ["interaction", tenant]];
}

/** Replace one item of a cached list with what a write answered (or add it in front). */
export function upsert<T extends { id: string }>(list: T[] | undefined, item: T, where: "start" | "end" = "start"): T[] {
  if (list?.some((x) => x.id === item.id)) return list.map((x) => (x.id === item.id ? item : x));
  return where === "start" ? [item, ...(list ?? [])] : [...(list ?? []), item];
}

/**
 * The app's query client. Pages read when they open and poll only where they say so; errors
 * show at once (a 403 or 404 is the gateway's answer, not a hiccup worth retrying), and
 * refocusing the window does not refetch, as before.
 */
export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: { retry: false, refetchOnWindowFocus: false },
      mutations: { retry: false },
    },
  });
}
