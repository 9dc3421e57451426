import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { LineChart, niceTicks } from "../src/components/LineChart";
import { lineageDepths } from "../src/pages/AgentPage";
import { BenchmarkView, startProblems } from "../src/pages/ExperimentsPage";
import { filterProblems } from "../src/pages/ReviewQueue";
import committed from "../../bench/results/experiments.json";

describe("lineageDepths", () => {
  it("places each version under its parent", () => {
    const v = (number: number, parent: number | null) => ({ number, parent }) as Parameters<typeof lineageDepths>[0][number];
    const depths = lineageDepths([v(1, null), v(2, 1), v(3, 2), v(4, 1), v(5, 99)]);
    expect(Object.fromEntries(depths)).toEqual({ 1: 0, 2: 1, 3: 2, 4: 1, 5: 0 });
  });
});

describe("filterProblems", () => {
  const none = { agent: "", version: "", unrated: false, lowRating: false, hasCorrection: "" as const, since: "", until: "" };
  it("accepts empty filters and a sensible range", () => {
    expect(filterProblems(none)).toEqual({});
    expect(filterProblems({ ...none, version: "3", since: "2030-01-01T10:00", until: "2030-01-02T10:00" })).toEqual({});
  });
  it("rejects a bad version and a backwards range", () => {
    expect(filterProblems({ ...none, version: "v3" }).version).toMatch(/whole number/);
    expect(filterProblems({ ...none, version: "0" }).version).toMatch(/between 1/);
    expect(filterProblems({ ...none, since: "2030-01-02T10:00", until: "2030-01-01T10:00" }).until).toMatch(/after 'since'/);
  });
});

describe("startProblems", () => {
  it("checks the experiment config with the gateway's bounds", () => {
    const good = {
      agent: "rl", environment: "calculator", steps: "10", prompts_per_step: "16", group_size: "8",
      learning_rate: "0.001", temperature: "1.0", max_turns: "4", max_tokens: "96", advantage: "grpo", seed: "0", eval_tasks: "0",
      rollout_mode: "throughput", pipeline: "off",
    };
    expect(Object.values(startProblems(good)).filter(Boolean)).toEqual([]);
    const bad = startProblems({ ...good, agent: "", group_size: "1", temperature: "0", max_tokens: "4", seed: "-1" });
    expect(Object.entries(bad).filter(([, v]) => v).map(([k]) => k).sort()).toEqual(
      ["agent", "group_size", "max_tokens", "seed", "temperature"],
    );
  });
});

describe("charts", () => {
  it("picks round ticks that cover the data", () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    const ticks = niceTicks(-0.29, -0.22, 5);
    expect(ticks[0]!).toBeLessThanOrEqual(-0.29);
    expect(ticks[ticks.length - 1]!).toBeGreaterThanOrEqual(-0.22);
    expect(niceTicks(2, 2).length).toBeGreaterThan(1);
  });

  it("draws a point per step and skips missing values", () => {
    const { container } = render(
      <LineChart
        title="Reward"
        series={[
          { name: "reward", color: "#00f", points: [{ x: 0, y: 0.1 }, { x: 1, y: null }, { x: 2, y: 0.5 }] },
          { name: "accuracy", color: "#0a0", points: [{ x: 0, y: 0.2 }, { x: 1, y: 0.3 }, { x: 2, y: 0.4 }] },
        ]}
      />,
    );
    expect(container.querySelectorAll('g[data-series="reward"] circle')).toHaveLength(2);
    expect(container.querySelector('g[data-series="reward"] path')?.getAttribute("d")).toMatch(/^M[^L]*M/);
    expect(screen.getByRole("img", { name: "Reward" })).toBeTruthy();
  });

  it("tells overlapping series apart: dash, width, marker, and a legend note", () => {
    const points = [{ x: 0, y: 0.5 }, { x: 1, y: 0.75 }];
    const { container } = render(
      <LineChart
        title="Reward and accuracy"
        series={[
          { name: "reward", color: "#00f", points },
          { name: "accuracy", color: "#0a0", points: points.map((p) => ({ ...p })) },
          { name: "loss", color: "#f00", points: [{ x: 0, y: 0.1 }, { x: 1, y: 0.2 }] },
        ]}
      />,
    );
    const line = (name: string) => container.querySelector(`g[data-series="${name}"] path`)!;
    expect(line("reward").getAttribute("stroke-dasharray")).toBeNull();
    expect(line("accuracy").getAttribute("stroke-dasharray")).toBe("7 4");
    expect(line("loss").getAttribute("stroke-dasharray")).toBe("2 3");
    // The series accuracy lies on is a wide, pale band under it, so both show.
    expect(Number(line("reward").getAttribute("stroke-width"))).toBeGreaterThan(Number(line("accuracy").getAttribute("stroke-width")));
    expect(line("reward").getAttribute("stroke-opacity")).toBe("0.35");
    expect(line("loss").getAttribute("stroke-opacity")).toBeNull();
    expect(container.querySelectorAll('g[data-series="reward"] circle.marker')).toHaveLength(2);
    expect(container.querySelectorAll('g[data-series="accuracy"] rect.marker')).toHaveLength(2);
    expect(container.querySelectorAll('g[data-series="loss"] polygon.marker')).toHaveLength(2);
    const legend = (name: string) => container.querySelector(`[data-legend="${name}"]`)!.textContent;
    expect(legend("accuracy")).toBe("accuracy (same as reward)");
    expect(legend("loss")).toBe("loss");
    expect(container.querySelectorAll("[data-legend] svg.swatch")).toHaveLength(3);
  });

  it("draws its text at the page's size, not scaled down with the chart", () => {
    const { container } = render(<LineChart title="Loss" width={420} series={[{ name: "loss", color: "#f00", points: [{ x: 0, y: 1 }, { x: 1, y: 2 }] }]} />);
    const svg = container.querySelector("svg.chart-svg")!;
    expect(svg.getAttribute("width")).toBe("420");
    expect(svg.getAttribute("viewBox")).toBe("0 0 420 260");
  });

  it("says so when there is nothing to draw", () => {
    render(<LineChart title="Loss" series={[{ name: "loss", color: "#f00", points: [{ x: 0, y: null }] }]} />);
    expect(screen.getByText("No values yet.")).toBeTruthy();
  });
});

describe("BenchmarkView", () => {
  it("renders the committed results file: one row per N and mode, mean ± sd", () => {
    const { container } = render(<BenchmarkView data={committed} plotUrl="/plot.png" />);
    const summary = committed.summary as unknown as Record<string, Record<string, { final_s: { mean: number; sd: number } } | undefined>>;
    const expected = Object.values(summary).flatMap((row) => ["sync", "pipelined"].filter((m) => row[m]));
    expect(expected.length).toBeGreaterThan(0);
    expect(container.querySelectorAll("tbody tr")).toHaveLength(expected.length);
    const [n, first] = Object.entries(summary)[0]!;
    const sync = first["sync"]!;
    const cells = [...container.querySelectorAll("tbody tr")[0]!.querySelectorAll("td")].map((td) => td.textContent);
    expect(cells[0]).toBe(n);
    expect(cells[2]).toBe(`${sync.final_s.mean.toFixed(1)} ± ${sync.final_s.sd.toFixed(1)}`);
    expect(screen.queryByText("The benchmark file has no result rows.")).toBeNull();
    expect(screen.getByRole("img", { name: "Benchmark plot" }).getAttribute("src")).toBe("/plot.png");
  });

  it("says so when a file has no summary", () => {
    const { container } = render(<BenchmarkView data={{ config: { steps: 10 } }} plotUrl={null} />);
    expect(container.querySelectorAll("tbody tr")).toHaveLength(0);
    expect(screen.getByText("The benchmark file has no result rows.")).toBeTruthy();
    expect(container.querySelector("img")).toBeNull();
  });
});
