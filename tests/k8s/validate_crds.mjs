// Validate custom resources against their published schemas: the @kubernetes-models packages
// (generated from Argo CD's and the Prometheus operator's own CRDs), installed by
// .ci/install-k8s-tools into .local/node-tools.
//   node tests/k8s/validate_crds.mjs NODE_TOOLS_DIR DOCS.json
// DOCS.json is a list of resources. Prints one line per resource; exits 1 if any is invalid or
// of a kind without a schema here (nothing passes silently).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [toolsDir, docsFile] = process.argv.slice(2);
const MODELS = {
  "argoproj.io/v1alpha1": "argo-cd/argoproj.io/v1alpha1/index.js",
  "monitoring.coreos.com/v1": "prometheus-operator/monitoring.coreos.com/v1/index.js",
};

let failed = 0;
for (const doc of JSON.parse(readFileSync(docsFile, "utf8"))) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const module = MODELS[doc.apiVersion];
  const models = module
    ? await import(pathToFileURL(join(toolsDir, "node_modules/@kubernetes-models", module)))
    : {};
  const Model = models[doc.kind];
  if (!Model) {
    console.log(`NO SCHEMA ${doc.apiVersion} ${name}`);
    failed += 1;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`valid ${doc.apiVersion} ${name}`);
  } catch (error) {
    console.log(`INVALID ${doc.apiVersion} ${name}: ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
