// A small SVG line chart: one x axis (steps), one or more series, ticks, legend, and the values
// of the hovered step. Hand-made to keep the bundle free of a charting library.
import { type MouseEvent, useId, useState } from "react";
import { num } from "../lib/format";

export interface Series {
  name: string;
  color: string;
  /** Draw dashed, e.g. so that a series lying on top of another still shows. */
  dashed?: boolean;
  points: { x: number; y: number | null }[];
}

interface Props {
  title: string;
  series: Series[];
  xLabel?: string;
  yLabel?: string;
  /** Fix the y range (e.g. [0, 1] for accuracy); otherwise it follows the data. */
  yDomain?: [number, number];
  width?: number;
  height?: number;
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

export function LineChart({ title, series, xLabel = "step", yLabel, yDomain, width = 560, height = 260 }: Props) {
  const titleId = useId();
  const [hover, setHover] = useState<number | null>(null);
  const margin = { top: 16, right: 16, bottom: 40, left: 56 };
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
  const onMove = (event: MouseEvent<SVGRectElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const x = xMin + ((event.clientX - box.left) / box.width) * (xMax - xMin);
    let best: number | null = null;
    for (const s of steps) if (best === null || Math.abs(s - x) < Math.abs(best - x)) best = s;
    setHover(best);
  };

  return (
    <figure className="chart">
      <figcaption id={titleId}>{title}</figcaption>
      <div className="legend">
        {series.map((s) => (
          <span key={s.name} className="legend-item">
            <span
              className={`swatch${s.dashed ? " dashed" : ""}`}
              style={s.dashed ? { borderColor: s.color } : { background: s.color }}
            />
            {s.name}
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
              <text key={`xt${t}`} x={sx(t)} y={margin.top + innerH + 18} textAnchor="middle">
                {t}
              </text>
            ))}
            <text x={margin.left + innerW / 2} y={height - 4} textAnchor="middle" className="axis-label">
              {xLabel}
            </text>
            {yLabel && (
              <text
                transform={`translate(12 ${margin.top + innerH / 2}) rotate(-90)`}
                textAnchor="middle"
                className="axis-label"
              >
                {yLabel}
              </text>
            )}
          </g>
          {series.map((s) => (
            <g key={s.name} className="series" data-series={s.name}>
              <path d={path(s)} fill="none" stroke={s.color} strokeWidth={2} strokeDasharray={s.dashed ? "6 4" : undefined} />
              {s.points.map((p) =>
                p.y == null || !Number.isFinite(p.y) ? null : (
                  <circle key={p.x} cx={sx(p.x)} cy={sy(p.y)} r={p.x === hover ? 4.5 : 2.5} fill={s.color}>
                    <title>{`${s.name} at ${xLabel} ${p.x}: ${num(p.y)}`}</title>
                  </circle>
                ),
              )}
            </g>
          ))}
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
