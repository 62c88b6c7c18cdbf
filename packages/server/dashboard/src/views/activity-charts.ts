/**
 * The activity charts of the queues view, drawn with uPlot: tasks finished per sampling interval by
 * final status (completed, failed, canceled, stuck), and queue depth (pending, running), over the last
 * hour. Data from the client's getStats: one sample per queue per interval, summed across queues unless
 * one queue is picked. Above each chart a line says the same in numbers (the hour's totals, the latest
 * depth). It asks again every sampling interval, as the server samples.
 */
import type { Stats, StatsSample } from "@taskq/sdk/client";
import uPlot from "uplot";
import { client, describe, isUnimplemented } from "../api.js";
import { count, fill, h, when } from "../dom.js";

/** How long to wait after a failure, and before the first answer says how often the server samples. */
const RETRY_MS = 10_000;
/** Never ask more often than this, whatever the server's interval. */
const MIN_REFRESH_MS = 200;
const HEIGHT = 180;
const FINISHED = ["completed", "failed", "canceled", "stuck"] as const;
const DEPTH = ["pending", "running"] as const;
const COLOURS: Record<(typeof FINISHED)[number] | (typeof DEPTH)[number], string> = {
  completed: "#47794d",
  failed: "#c0362c",
  canceled: "#c77c02",
  stuck: "#7a3fb0",
  pending: "#667085",
  running: "#2f5bd3",
};

type Field = keyof typeof COLOURS;
type Bucket = { time: number } & Record<Field, number>;

export interface ActivityCharts {
  el: HTMLElement;
  /** The queues to offer in the picker (the queues view passes them on each refresh). */
  setQueues(names: string[]): void;
  stop(): void;
}

export function activityCharts(): ActivityCharts {
  let queue = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const picker = h(
    "select",
    {
      name: "stats-queue",
      onchange: () => {
        queue = picker.value;
        void load();
      },
    },
    h("option", { value: "" }, "All queues"),
  );
  const notice = h("div");
  const about = h("span", { class: "origin" });
  const finished = chartBox("finished", "Tasks finished per interval");
  const depth = chartBox("depth", "Queue depth");
  const el = h("div", { class: "card charts" }, h("div", { class: "filters" }, h("label", {}, "Queue", picker), about), notice, finished.el, depth.el);
  const plots: uPlot[] = [];
  const resize = new ResizeObserver(() => {
    for (const p of plots) p.setSize({ width: widthOf(p.root.parentElement), height: HEIGHT });
  });

  const draw = (stats: Stats) => {
    const buckets = sumByTime(stats.samples);
    const xs = buckets.map((b) => b.time / 1_000);
    const data = (fields: readonly Field[]): uPlot.AlignedData => [xs, ...fields.map((f) => buckets.map((b) => b[f]))];
    if (plots.length === 0) {
      plots.push(new uPlot(chartOptions(FINISHED, widthOf(finished.plot)), data(FINISHED), finished.plot));
      plots.push(new uPlot(chartOptions(DEPTH, widthOf(depth.plot)), data(DEPTH), depth.plot));
      resize.observe(el);
    } else {
      plots[0].setData(data(FINISHED));
      plots[1].setData(data(DEPTH));
    }
    const total = (f: Field) => buckets.reduce((n, b) => n + b[f], 0);
    fill(finished.summary, `Last hour: ${FINISHED.map((f) => `${count(total(f))} ${f}`).join(" · ")}`);
    const last = buckets.at(-1);
    fill(depth.summary, last ? `At ${when(new Date(last.time)).slice(11)}: ${DEPTH.map((f) => `${count(last[f])} ${f}`).join(" · ")}` : "No samples yet.");
    fill(about, stats.intervalMs > 0 ? `sampled every ${stats.intervalMs / 1_000} s` : "");
  };

  /** Counts loads: a load that a newer one overtook (the queue was changed meanwhile) drops its answer. */
  let generation = 0;
  const load = async () => {
    clearTimeout(timer);
    const mine = ++generation;
    let next = RETRY_MS;
    try {
      const stats = await client.getStats({ queue: queue || undefined });
      if (stopped || mine !== generation) return;
      fill(notice);
      draw(stats);
      if (stats.intervalMs > 0) next = Math.max(MIN_REFRESH_MS, stats.intervalMs);
    } catch (err) {
      if (stopped || mine !== generation) return;
      const why = isUnimplemented(err) ? "this server keeps no activity samples" : describe(err);
      fill(notice, h("div", { class: "notice" }, `No charts: ${why}.`));
    }
    timer = setTimeout(() => void load(), next);
  };
  void load();

  const setQueues = (names: string[]) => {
    const shown = [...picker.options].slice(1).map((o) => o.value);
    if (shown.join("\n") === names.join("\n")) return;
    picker.replaceChildren(h("option", { value: "" }, "All queues"), ...names.map((n) => h("option", { value: n }, n)));
    picker.value = names.includes(queue) ? queue : "";
  };

  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    resize.disconnect();
    for (const p of plots) p.destroy();
  };
  return { el, setQueues, stop };
}

/** A chart's heading, its line of numbers, and the box uPlot draws in. */
function chartBox(name: string, title: string) {
  const summary = h("p", { class: "chart-summary", "data-summary": name });
  const plot = h("div", { class: "chart", "data-chart": name });
  return { el: h("div", {}, h("h3", {}, title), summary, plot), summary, plot };
}

/** The width to draw at: the box's, or a guess while the box is not laid out yet. */
const widthOf = (box: HTMLElement | null) => Math.max(200, box?.clientWidth || 600);

function chartOptions(fields: readonly Field[], width: number): uPlot.Options {
  return {
    width,
    height: HEIGHT,
    scales: {
      // One sample has no span: a minute either side of it, so the time axis still reads as times.
      x: { time: true, range: (_u, min, max) => (max > min ? [min, max] : [min - 60, max + 60]) },
      y: { range: (_u, _min, max) => [0, Math.max(1, max)] },
    },
    // The legend names the lines; it does not follow the cursor with values.
    legend: { live: false },
    axes: [{}, { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000] }],
    series: [{}, ...fields.map((f) => ({ label: f.charAt(0).toUpperCase() + f.slice(1), stroke: COLOURS[f], width: 2, points: { show: false } }))],
  };
}

/**
 * The samples of every queue summed per sampling time, oldest first. One sample covers every queue at
 * one time, so samples of the same time are of different queues and add up; depths of different times
 * must not (they are levels, not counts), which is why times are not rounded into buckets.
 */
function sumByTime(samples: StatsSample[]): Bucket[] {
  const buckets = new Map<number, Bucket>();
  for (const s of samples) {
    const time = s.time.getTime();
    const b = buckets.get(time) ?? { time, completed: 0, failed: 0, canceled: 0, stuck: 0, pending: 0, running: 0 };
    buckets.set(time, b);
    for (const f of Object.keys(COLOURS) as Field[]) b[f] += s[f];
  }
  return [...buckets.values()].sort((a, b) => a.time - b.time);
}
