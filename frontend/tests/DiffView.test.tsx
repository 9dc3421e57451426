import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { DiffView } from "../src/components/DiffView";

describe("DiffView", () => {
  it("says when nothing changed", () => {
    render(<DiffView original={{ role: "assistant", content: "hi" }} edited={{ role: "assistant", content: "hi" }} />);
    expect(screen.getByText("No changes yet.")).toBeTruthy();
  });

  it("shows removed and added lines with the changed words marked", () => {
    const { container } = render(
      <DiffView
        original={{ role: "assistant", content: "It is 41." }}
        edited={{ role: "assistant", content: "It is 42." }}
      />,
    );
    expect(container.querySelectorAll(".diff-line.del")).toHaveLength(1);
    expect(container.querySelectorAll(".diff-line.add")).toHaveLength(1);
    expect(container.querySelector(".diff-line.del del")?.textContent).toBe("41");
    expect(container.querySelector(".diff-line.add ins")?.textContent).toBe("42");
    expect(screen.getByText("+1")).toBeTruthy();
    expect(screen.getByText("−1")).toBeTruthy();
    expect(screen.getByText(/in 1 field/)).toBeTruthy();
  });

  it("labels a new tool call as added", () => {
    const { container } = render(
      <DiffView
        original={{ role: "assistant", content: "6*7 is 41" }}
        edited={{
          role: "assistant",
          content: null,
          tool_calls: [{ id: "x", type: "function", function: { name: "calculator", arguments: '{"expression":"6*7"}' } }],
        }}
      />,
    );
    const statuses = [...container.querySelectorAll("figure")].map((f) => f.getAttribute("data-status"));
    expect(statuses).toEqual(["removed", "added"]);
    expect(screen.getByText(/Tool call 1: calculator/)).toBeTruthy();
  });
});
