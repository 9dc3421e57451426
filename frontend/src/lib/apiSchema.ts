// Defaults and bounds the gateway declares in its OpenAPI schema (openapi.json, written with
// src/api/schema.d.ts by `npm run gen:api`), so that forms start from the gateway's defaults and
// check its bounds without copying the numbers here. Only `components` is bundled.
import { components } from "../../openapi.json";
import type { Schemas } from "../api/client";

interface Property {
  title?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
}

// Each record has exactly the fields of the generated type: a field the gateway adds or drops
// fails `tsc` here until `npm run gen:api` has rewritten both files.
const PROMOTION_RULE: Record<keyof Schemas["PromotionRule"], Property> = components.schemas.PromotionRule.properties;
const AGENT_IN: Record<keyof Schemas["AgentIn"], Property> = components.schemas.AgentIn.properties;

export interface Bounds<T> {
  min: number;
  max: number;
  default: T;
}

function bounds<T>(property: Property, fallback: Bounds<T>): Bounds<T> {
  return {
    min: property.minimum ?? property.exclusiveMinimum ?? fallback.min,
    max: property.maximum ?? fallback.max,
    default: (property.default as T | undefined) ?? fallback.default,
  };
}

/** The promotion rule's numeric fields: the gateway's bounds and defaults. */
export const PROMOTION_BOUNDS = {
  max_regression: bounds(PROMOTION_RULE.max_regression, { min: 0, max: 1, default: 0.01 }),
  preserve_min: bounds(PROMOTION_RULE.preserve_min, { min: 0, max: 1, default: 0.95 }),
  preserve_tolerance: bounds(PROMOTION_RULE.preserve_tolerance, { min: 0, max: 1, default: 0.05 }),
  min_examples: bounds(PROMOTION_RULE.min_examples, { min: 1, max: 10_000, default: 5 }),
  environment_tasks: bounds(PROMOTION_RULE.environment_tasks, { min: 0, max: 5_000, default: 200 }),
} satisfies Partial<Record<keyof Schemas["PromotionRule"], Bounds<number>>>;

/** The promotion rule a schedule gets when it names none (the gateway's defaults). */
export const PROMOTION_DEFAULTS: Schemas["PromotionRule"] = {
  max_regression: PROMOTION_BOUNDS.max_regression.default,
  require_improvement: (PROMOTION_RULE.require_improvement.default as boolean | undefined) ?? true,
  refuse_copies: (PROMOTION_RULE.refuse_copies.default as boolean | undefined) ?? true,
  preserve_min: PROMOTION_BOUNDS.preserve_min.default,
  preserve_tolerance: PROMOTION_BOUNDS.preserve_tolerance.default,
  min_examples: PROMOTION_BOUNDS.min_examples.default,
  environment_tasks: PROMOTION_BOUNDS.environment_tasks.default,
};

/** An agent's completion cap when a request sets none: bounds and default. */
export const MAX_TOKENS_BOUNDS = bounds(AGENT_IN.default_max_tokens, { min: 1, max: 32_768, default: 256 });

/**
 * The RL environments an agent may name (the gateway checks against trainer/envs, which it does
 * not publish in the schema); the promotion gate plays their held-out tasks.
 */
export const ENVIRONMENTS = ["calculator"] as const;
