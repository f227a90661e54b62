#!/usr/bin/env node
// Parse Mermaid diagrams with Mermaid's own parser. Usage: node parse.mjs < diagrams.json
// stdin: a JSON list of diagram sources. stdout: a JSON list, one entry per diagram:
//   {"ok": true, "type": "xychart", "config": {...}, "chart": {...}} or {"ok": false, "error"}
// "config" is what the diagram's own directives or front matter set (it should be {}), "chart"
// an XY chart as Mermaid's database holds it after parsing (title, axes, plots and their data).
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

// Mermaid sanitises text with DOMPurify, which needs a window; nothing is rendered
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const sources = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const source of sources) {
  try {
    const parsed = await mermaid.parse(source);
    const entry = { ok: true, type: parsed.diagramType, config: parsed.config ?? {} };
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(source);
    if (typeof diagram.db.getXYChartData === "function") {
      const data = diagram.db.getXYChartData();
      entry.chart = {
        title: diagram.db.getDiagramTitle(),
        xAxis: data.xAxis,
        yAxis: data.yAxis,
        plots: data.plots.map((p) => ({ type: p.type, data: p.data })),
      };
    }
    out.push(entry);
  } catch (err) {
    out.push({ ok: false, error: String(err?.message ?? err).split("\n").slice(0, 4).join("\n") });
  }
}
process.stdout.write(JSON.stringify(out));
