// Field checks shared by the forms. Each returns null when the value is fine, else a message.
import { parseNumber } from "./schedule";

// The slug rule of app/models/tenancy.py (tenants and agents).
const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;
const COMPLETION_ID = /^chatcmpl-[0-9a-f]{32}$/;

export function slugProblem(value: string, what: string): string | null {
  if (!value.trim()) return `Give the ${what}.`;
  if (!SLUG.test(value)) {
    return `The ${what} is 1-63 lowercase letters, digits and '-', starting with a letter or digit.`;
  }
  return null;
}

export function emailProblem(value: string): string | null {
  const v = value.trim();
  if (!v) return "Give your email address.";
  if (!/^[^\s@]+@[^\s@]+$/.test(v) || v.length > 320) return "That is not an email address.";
  return null;
}

export function requiredProblem(value: string, what: string, max: number): string | null {
  if (!value.trim()) return `Give ${what}.`;
  if (value.length > max) return `${capitalize(what)} is longer than ${max} characters.`;
  return null;
}

export function integerProblem(value: string, what: string, min: number, max: number): string | null {
  const n = parseNumber(value);
  if (n === null || !Number.isInteger(n)) return `${capitalize(what)} must be a whole number.`;
  if (n < min || n > max) return `${capitalize(what)} must be between ${min} and ${max}.`;
  return null;
}

export function numberProblem(
  value: string,
  what: string,
  min: number,
  max: number,
  minExclusive = false,
): string | null {
  const n = parseNumber(value);
  if (n === null) return `${capitalize(what)} must be a number.`;
  if ((minExclusive ? n <= min : n < min) || n > max) {
    return `${capitalize(what)} must be ${minExclusive ? "above" : "at least"} ${min} and at most ${max}.`;
  }
  return null;
}

export function completionIdProblem(value: string): string | null {
  if (!value.trim()) return "Give the other interaction's id.";
  if (!COMPLETION_ID.test(value.trim())) {
    return "An interaction id looks like chatcmpl- followed by 32 hexadecimal characters.";
  }
  return null;
}

/** A `datetime-local` value as an ISO instant (the browser's time zone), or null. */
export function localToIso(value: string): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function hasErrors(errors: Record<string, string | null | undefined>): boolean {
  return Object.values(errors).some(Boolean);
}

/** The server's minimum password length (app/users/service.py MIN_PASSWORD_LENGTH). */
export const MIN_PASSWORD = 10;

export function passwordProblem(password: string): string | null {
  return password.length < MIN_PASSWORD ? `at least ${MIN_PASSWORD} characters` : null;
}
