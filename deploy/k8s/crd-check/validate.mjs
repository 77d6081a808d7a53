// Validates custom resources (Istio, cert-manager, Prometheus Operator)
// against their projects' CRD schemas, as published in the
// @kubernetes-models packages (generated from those CRDs), twice:
//   1. each model's own validator (JSON Schema, compiled with ajv): types,
//      required fields, enums, patterns;
//   2. the model's TypeScript interface, with every object written as a
//      typed literal and checked by `tsc`: a field the schema does not
//      have is an error (the schemas leave `additionalProperties` open, so
//      the first pass alone lets a misspelt field through, as a cluster
//      would prune it without a word).
//
//   node validate.mjs OBJECTS.json     (run from beside node_modules)
//
// OBJECTS.json is an array of {source, object}. Prints one line per
// failure and a count; exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const PACKAGES = {
  "networking.istio.io": "@kubernetes-models/istio",
  "security.istio.io": "@kubernetes-models/istio",
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

const input = process.argv[2];
if (!input) {
  console.error("usage: node validate.mjs OBJECTS.json");
  process.exit(2);
}
const entries = JSON.parse(fs.readFileSync(input, "utf8"));
const failures = [];
const name = ({ source, object }) =>
  `${source}: ${object.kind}/${object.metadata?.namespace ? object.metadata.namespace + "/" : ""}${object.metadata?.name}`;

// Pass 1: the models' validators.
const modules = [];
for (const entry of entries) {
  const { object } = entry;
  const [group, version] = String(object.apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) {
    failures.push(`${name(entry)}: no schema known for ${object.apiVersion}`);
    modules.push(null);
    continue;
  }
  const specifier = `${pkg}/${group}/${version}/${object.kind}`;
  let model;
  try {
    model = (await import(specifier))[object.kind];
  } catch (e) {
    failures.push(`${name(entry)}: no schema for ${object.apiVersion} ${object.kind} in ${pkg}`);
    modules.push(null);
    continue;
  }
  modules.push(specifier);
  try {
    new model(object).validate();
  } catch (e) {
    failures.push(`${name(entry)}: ${e.message}`);
  }
}

// Pass 2: unknown fields, by TypeScript's excess-property check. One
// object a line, so that an error's line names its object.
const imports = new Map();
const lines = [];
entries.forEach((entry, i) => {
  const specifier = modules[i];
  if (!specifier) return;
  if (!imports.has(specifier)) imports.set(specifier, `T${imports.size}`);
  lines.push([i, `export const o${i}: ${imports.get(specifier)} = ${JSON.stringify(entry.object)};`]);
});
const header = [...imports].map(
  ([specifier, alias]) => `import type { I${specifier.split("/").pop()} as ${alias} } from "${specifier}";`,
);
const work = fs.mkdtempSync(path.join(here, ".typed-"));
try {
  const file = path.join(work, "objects.ts");
  fs.writeFileSync(file, [...header, ...lines.map(([, l]) => l)].join("\n") + "\n");
  let output = "";
  try {
    execFileSync(
      process.execPath,
      [
        path.join(here, "node_modules", "typescript", "bin", "tsc"),
        "--noEmit", "--strict", "--skipLibCheck",
        "--module", "nodenext", "--moduleResolution", "nodenext",
        "--target", "es2022", "--pretty", "false", file,
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
  } catch (e) {
    output = `${e.stdout ?? ""}${e.stderr ?? ""}`;
    if (!output.trim()) output = `tsc failed: ${e.message}`;
  }
  for (const line of output.split("\n").filter((l) => l.trim())) {
    const at = line.match(/objects\.ts\((\d+),\d+\): (.*)$/);
    const row = at ? Number(at[1]) - header.length - 1 : -1;
    if (at && row >= 0 && row < lines.length) {
      failures.push(`${name(entries[lines[row][0]])}: ${at[2]}`);
    } else {
      failures.push(`typescript: ${line}`);
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}

for (const f of failures) console.log(`FAIL ${f}`);
const kinds = {};
for (const { object } of entries) kinds[`${object.apiVersion} ${object.kind}`] = (kinds[`${object.apiVersion} ${object.kind}`] ?? 0) + 1;
for (const [k, n] of Object.entries(kinds).sort()) console.log(`  ${String(n).padStart(3)}  ${k}`);
console.log(`${entries.length} custom resources checked against their CRD schemas, ${failures.length} failures`);
process.exit(failures.length ? 1 : 0);
