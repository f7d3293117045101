// Tokens and cost over time for the Models tab: two small hand-drawn SVG
// step charts of the running totals, from the model calls loaded so far.
import { count, usd } from './format.js';

const W = 480;
const H = 140;
const PAD = { l: 56, r: 8, t: 10, b: 22 };

function Chart({ title, points, fmt, color }) {
    if (points.length < 1)
        return null;
    const t0 = points[0][0];
    const t1 = Math.max(points[points.length - 1][0], t0 + 1);
    const vmax = Math.max(points[points.length - 1][1], 1e-9);
    const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
    const y = (v) => H - PAD.b - (v / vmax) * (H - PAD.t - PAD.b);
    let d = `M${x(t0)},${y(0)}`;
    let prev = 0;
    for (const [t, v] of points) {
        d += ` L${x(t).toFixed(1)},${y(prev).toFixed(1)} L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        prev = v;
    }
    const span = (t1 - t0) / 1e6;
    const spanText = span < 120 ? `${Math.round(span)} s` : `${Math.round(span / 60)} min`;
    return (
        <figure class="chart">
            <figcaption>
                {title}: <strong>{fmt(vmax)}</strong>
            </figcaption>
            <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title} over time, total ${fmt(vmax)}`} preserveAspectRatio="none">
                <line x1={PAD.l} y1={H - PAD.b} x2={W - PAD.r} y2={H - PAD.b} class="axis" />
                <line x1={PAD.l} y1={PAD.t} x2={PAD.l} y2={H - PAD.b} class="axis" />
                <text x={PAD.l - 4} y={PAD.t + 8} text-anchor="end" class="tick">
                    {fmt(vmax)}
                </text>
                <text x={PAD.l - 4} y={H - PAD.b} text-anchor="end" class="tick">
                    0
                </text>
                <text x={W - PAD.r} y={H - 6} text-anchor="end" class="tick">
                    {spanText}
                </text>
                <path d={d} fill="none" stroke={color} stroke-width="2" vector-effect="non-scaling-stroke" />
            </svg>
        </figure>
    );
}

export function Charts({ rows }) {
    const calls = rows.filter((r) => r.time_us != null).sort((a, b) => a.time_us - b.time_us);
    if (calls.length === 0)
        return null;
    let tokens = 0;
    let cost = 0;
    const tp = [];
    const cp = [];
    for (const r of calls) {
        tokens += (r.input_tokens || 0) + (r.output_tokens || 0);
        cost += r.cost_usd || 0;
        tp.push([r.time_us, tokens]);
        cp.push([r.time_us, cost]);
    }
    return (
        <div class="charts">
            <Chart title="Tokens" points={tp} fmt={count} color="#4f8cff" />
            <Chart title="Cost" points={cp} fmt={usd} color="#2fbf71" />
        </div>
    );
}
