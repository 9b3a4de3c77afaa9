// Offline OpenAPI schema validation of rendered chart objects.
//
// usage: node schema_validate.mjs MODELS_DIR CRD_JSON OBJECTS_JSON
//
// Built-in kinds are validated with the npm package kubernetes-models (ajv
// validators generated from the Kubernetes OpenAPI schema), ServiceMonitor
// with @kubernetes-models/prometheus-operator, and meshfed.io objects with
// ajv against the chart's own CRD openAPIV3Schema (x-kubernetes-* keywords,
// i.e. the CEL rules, are not evaluated here; test_chart.py emulates them).
// Prints one line per object, "ok ..." or "FAIL ...", and exits 1 on any FAIL.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [modelsDir, crdFile, objFile] = process.argv.slice(2);
const nm = path.join(modelsDir, "node_modules");
const require = createRequire(path.join(nm, "noop.js"));
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;

const crds = JSON.parse(fs.readFileSync(crdFile, "utf8"));
const objs = JSON.parse(fs.readFileSync(objFile, "utf8"));
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
const crdValidators = {};
for (const crd of crds) {
  for (const v of crd.spec.versions) {
    const key = `${crd.spec.group}/${v.name}/${crd.spec.names.kind}`;
    crdValidators[key] = ajv.compile(v.schema.openAPIV3Schema);
  }
}

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return path.join(nm, "@kubernetes-models/prometheus-operator", group, version, `${kind}.js`);
  return path.join(nm, "kubernetes-models", group ? `${group}/${version}` : version, `${kind}.js`);
}

let failed = 0;
for (const o of objs) {
  const id = `${o.kind}/${o.metadata && o.metadata.name}`;
  const crdKey = `${o.apiVersion}/${o.kind}`;
  try {
    if (crdValidators[crdKey]) {
      const validate = crdValidators[crdKey];
      if (!validate(o)) throw new Error(ajv.errorsText(validate.errors));
    } else {
      const file = modulePath(o.apiVersion, o.kind);
      if (!fs.existsSync(file)) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
      const mod = await import(file);
      const Model = mod[o.kind];
      new Model(o).validate();
    }
    console.log(`ok ${id}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${id}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
