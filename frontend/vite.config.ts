import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` serves the UI on :5173 and forwards API calls to a running gateway
// (`clora up`, default http://127.0.0.1:8000; override with CLORA_GATEWAY_URL).
const gateway = process.env.CLORA_GATEWAY_URL ?? "http://127.0.0.1:8000";
const proxied = ["/api", "/v1", "/healthz", "/readyz", "/metrics"];

export default defineConfig({
  plugins: [react()],
  server: {
    port: 5173,
    proxy: Object.fromEntries(proxied.map((path) => [path, { target: gateway, changeOrigin: false }])),
  },
  build: {
    outDir: "dist",
    sourcemap: true,
    chunkSizeWarningLimit: 800,
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.{ts,tsx}"],
    setupFiles: ["tests/setup.ts"],
    restoreMocks: true,
  },
});
