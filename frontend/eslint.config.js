// ESLint (flat config): the JS and typescript-eslint recommended rules, and the Rules of React
// (eslint-plugin-react-hooks: hook order, effect dependencies, the compiler's purity checks),
// and TanStack Query's (query keys name everything a query reads).
import js from "@eslint/js";
import pluginQuery from "@tanstack/eslint-plugin-query";
import reactHooks from "eslint-plugin-react-hooks";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig([
  globalIgnores(["dist", "coverage", "src/api/schema.d.ts", "e2e-artifacts", "screenshots"]),
  js.configs.recommended,
  tseslint.configs.recommended,
  pluginQuery.configs["flat/recommended"],
  {
    files: ["src/**/*.{ts,tsx}", "tests/**/*.{ts,tsx}"],
    extends: [reactHooks.configs.flat.recommended],
    languageOptions: { globals: globals.browser },
  },
  {
    files: ["*.{js,ts}", "scripts/**/*.mjs"],
    languageOptions: { globals: globals.node },
  },
  {
    // The browser story runs in Node; the callbacks it hands to page.evaluate run in the page.
    files: ["e2e/**/*.{mjs,ts}"],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
]);
