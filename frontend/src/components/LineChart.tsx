// A small SVG line chart: one x axis (steps), one or more series, ticks, legend, and the values
// of the hovered step. Hand-made to keep the bundle free of a charting library.
//
// The SVG is drawn at the width it is shown at (measured), so that its text is as large as the
// page's (12 px) rather than scaled down with the chart. Series that lie on top of each other
// (reward and accuracy often do) stay apart: each has its own dash pattern and marker shape,
// a series another one lies on is drawn as a wide pale band under it, and the legend says
// which series coincide.
import { type MouseEvent, useEffect, useId, useState } from "react";
import { num } from "../lib/format";

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number | null }[];
}

interface Props {
  title: string;
  series: Series[];
  xLabel?: string;
  yLabel?: string;
  /** Fix the y range (e.g. [0, 1] for accuracy); otherwise it follows the data. */
  yDomain?: [number, number];
  /** The width drawn at before it is measured (and in tests, which have no layout). */
  width?: number;
  height?: number;
}

type Marker = "circle" | "square" | "triangle" | "diamond";

/** How the n-th series of a chart is drawn: wide and solid first, then narrower and dashed. */
const LOOKS: { dash?: string; width: number; marker: Marker }[] = [
  { width: 3.5, marker: "circle" },
  { dash: "7 4", width: 2, marker: "square" },
  { dash: "2 3", width: 2, marker: "triangle" },
  { dash: "10 3 2 3", width: 2, marker: "diamond" },
];

export function lookOf(index: number): (typeof LOOKS)[number] {
  return LOOKS[index % LOOKS.length]!;
}

function MarkerShape({ shape, x, y, size, color }: { shape: Marker; x: number; y: number; size: number; color: string }) {
  const common = { className: "marker", fill: shape === "square" || shape === "diamond" ? "#fff" : color, stroke: color, strokeWidth: 1.5 };
  if (shape === "circle") return <circle cx={x} cy={y} r={size} {...common} />;
  if (shape === "square") return <rect x={x - size} y={y - size} width={size * 2} height={size * 2} {...common} />;
  const points =
    shape === "triangle"
      ? [[x, y - size * 1.2], [x + size * 1.1, y + size * 0.8], [x - size * 1.1, y + size * 0.8]]
      : [[x, y - size * 1.3], [x + size * 1.3, y], [x, y + size * 1.3], [x - size * 1.3, y]];
  return <polygon points={points.map((p) => p.join(",")).join(" ")} {...common} />;
}

/** The legend's sample of a series: its line, dash and marker. */
function Swatch({ color, index }: { color: string; index: number }) {
  const look = lookOf(index);
  return (
    <svg className="swatch" width={30} height={14} viewBox="0 0 30 14" aria-hidden="true">
      <line x1={1} x2={29} y1={7} y2={7} stroke={color} strokeWidth={Math.min(look.width, 2.5)} strokeDasharray={look.dash} />
      <MarkerShape shape={look.marker} x={15} y={7} size={3.5} color={color} />
    </svg>
  );
}

/** For each series, the name of an earlier one it coincides with at every step (or null). */
export function coincident(series: Series[]): (string | null)[] {
  const same = (a: Series, b: Series) =>
    a.points.length > 0 &&
    a.points.length === b.points.length &&
    a.points.every((p, i) => p.x === b.points[i]!.x && (p.y ?? NaN).toPrecision(9) === (b.points[i]!.y ?? NaN).toPrecision(9));
  return series.map((s, i) => series.slice(0, i).find((earlier) => same(s, earlier))?.name ?? null);
}

/** The width an element is laid out at, once known (null before, and without ResizeObserver). */
function useWidth(): [(element: HTMLElement | null) => void, number | null] {
  const [element, setElement] = useState<HTMLElement | null>(null);
  const [width, setWidth] = useState<number | null>(null);
  useEffect(() => {
    if (!element || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(([entry]) => {
      if (entry && entry.contentRect.width > 0) setWidth(Math.round(entry.contentRect.width));
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, [element]);
  return [setElement, width];
}

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(count - 1, 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

export function LineChart({ title, series, xLabel = "step", yLabel, yDomain, width: initialWidth = 560, height = 260 }: Props) {
  const titleId = useId();
  const [hover, setHover] = useState<number | null>(null);
  const [measure, measured] = useWidth();
  // Narrower than this the chart is scaled down rather than squeezed.
  const width = Math.max(measured ?? initialWidth, 280);
  const margin = { top: 12, right: 16, bottom: 44, left: 60 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;

  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.map((p) => p.y).filter((y): y is number => y != null && Number.isFinite(y)));
  const hasData = ys.length > 0;
  const xTicks = niceTicks(Math.min(...xs, 0), Math.max(...xs, 1), 6).filter((t) => Number.isInteger(t));
  const xMin = xTicks[0] ?? 0;
  const xMax = xTicks[xTicks.length - 1] ?? 1;
  const yTicks = yDomain ? niceTicks(yDomain[0], yDomain[1], 5) : niceTicks(Math.min(...ys), Math.max(...ys), 5);
  const yMin = yTicks[0] ?? 0;
  const yMax = yTicks[yTicks.length - 1] ?? 1;

  const sx = (x: number) => margin.left + ((x - xMin) / (xMax - xMin || 1)) * innerW;
  const sy = (y: number) => margin.top + innerH - ((y - yMin) / (yMax - yMin || 1)) * innerH;

  const path = (s: Series) => {
    let d = "";
    let pen = false;
    for (const p of s.points) {
      if (p.y == null || !Number.isFinite(p.y)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`;
      pen = true;
    }
    return d;
  };

  const steps = [...new Set(xs)].sort((a, b) => a - b);
  const overlaps = coincident(series);
  const onMove = (event: MouseEvent<SVGRectElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const x = xMin + ((event.clientX - box.left) / box.width) * (xMax - xMin);
    let best: number | null = null;
    for (const s of steps) if (best === null || Math.abs(s - x) < Math.abs(best - x)) best = s;
    setHover(best);
  };

  return (
    <figure className="chart" ref={measure}>
      <figcaption id={titleId}>{title}</figcaption>
      <div className="legend">
        {series.map((s, i) => (
          <span key={s.name} className="legend-item" data-legend={s.name}>
            <Swatch color={s.color} index={i} />
            {s.name}
            {overlaps[i] && <span className="muted"> (same as {overlaps[i]})</span>}
            {hover !== null && (
              <strong className="legend-value">
                {" "}
                {num(s.points.find((p) => p.x === hover)?.y ?? null)}
              </strong>
            )}
          </span>
        ))}
        {hover !== null && <span className="muted">at {xLabel} {hover}</span>}
      </div>
      {!hasData ? (
        <p className="empty">No values yet.</p>
      ) : (
        <svg
          width={width}
          height={height}
          viewBox={`0 0 ${width} ${height}`}
          role="img"
          aria-labelledby={titleId}
          className="chart-svg"
          preserveAspectRatio="xMidYMid meet"
        >
          <g className="grid">
            {yTicks.map((t) => (
              <line key={`y${t}`} x1={margin.left} x2={margin.left + innerW} y1={sy(t)} y2={sy(t)} />
            ))}
          </g>
          <g className="axis">
            <line x1={margin.left} x2={margin.left + innerW} y1={margin.top + innerH} y2={margin.top + innerH} />
            <line x1={margin.left} x2={margin.left} y1={margin.top} y2={margin.top + innerH} />
            {yTicks.map((t) => (
              <text key={`yt${t}`} x={margin.left - 8} y={sy(t)} textAnchor="end" dominantBaseline="middle">
                {num(t, 3)}
              </text>
            ))}
            {xTicks.map((t) => (
              <text key={`xt${t}`} x={sx(t)} y={margin.top + innerH + 20} textAnchor="middle">
                {t}
              </text>
            ))}
            <text x={margin.left + innerW / 2} y={height - 6} textAnchor="middle" className="axis-label">
              {xLabel}
            </text>
            {yLabel && (
              <text
                transform={`translate(14 ${margin.top + innerH / 2}) rotate(-90)`}
                textAnchor="middle"
                className="axis-label"
              >
                {yLabel}
              </text>
            )}
          </g>
          {series.map((s, i) => {
            const look = lookOf(i);
            // A series another one lies on is drawn as a wide, pale band under it.
            const under = overlaps.includes(s.name);
            return (
              <g key={s.name} className="series" data-series={s.name}>
                <path
                  d={path(s)}
                  fill="none"
                  stroke={s.color}
                  strokeWidth={under ? 7 : look.width}
                  strokeOpacity={under ? 0.35 : undefined}
                  strokeDasharray={under ? undefined : look.dash}
                  strokeLinejoin="round"
                  strokeLinecap="round"
                />
                {s.points.map((p) =>
                  p.y == null || !Number.isFinite(p.y) ? null : (
                    <g key={p.x}>
                      <title>{`${s.name} at ${xLabel} ${p.x}: ${num(p.y)}`}</title>
                      <MarkerShape shape={look.marker} x={sx(p.x)} y={sy(p.y)} size={p.x === hover ? 5 : 3.5} color={s.color} />
                    </g>
                  ),
                )}
              </g>
            );
          })}
          {hover !== null && (
            <line className="hover-line" x1={sx(hover)} x2={sx(hover)} y1={margin.top} y2={margin.top + innerH} />
          )}
          <rect
            x={margin.left}
            y={margin.top}
            width={innerW}
            height={innerH}
            fill="transparent"
            onMouseMove={onMove}
            onMouseLeave={() => setHover(null)}
          />
        </svg>
      )}
    </figure>
  );
}

/** A tiny inline line, e.g. a version's training losses in a table cell. */
export function Sparkline({ values, label }: { values: number[]; label: string }) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length < 2) return <span className="muted">—</span>;
  const w = 96;
  const h = 24;
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  const d = finite
    .map((v, i) => `${i ? "L" : "M"}${((i / (finite.length - 1)) * w).toFixed(1)},${(h - 2 - ((v - min) / (max - min || 1)) * (h - 4)).toFixed(1)}`)
    .join("");
  return (
    <svg className="sparkline" width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={label}>
      <title>{`${label}: ${num(finite[0])} → ${num(finite[finite.length - 1])}`}</title>
      <path d={d} fill="none" stroke="currentColor" strokeWidth={1.5} />
    </svg>
  );
}
