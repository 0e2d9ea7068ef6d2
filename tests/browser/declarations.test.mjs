// web/client.d.ts against web/client.js: `node --test tests/browser/` (after
// `npm ci` in tests/browser; tests/browser/run does both). tsc checks that the
// declarations serve typed code (types-check.ts); this checks that they
// declare what the module has: the same exports, methods, close codes,
// events and options.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as client from '../../web/client.js';

const DECLARATIONS = fileURLToPath(new URL('../../web/client.d.ts', import.meta.url));
const SOURCE = fileURLToPath(new URL('../../web/client.js', import.meta.url));

const program = ts.createProgram([DECLARATIONS], {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  types: [],
});
const checker = program.getTypeChecker();
const file = program.getSourceFile(DECLARATIONS);
const exported = new Map(
  checker.getExportsOfModule(checker.getSymbolAtLocation(file)).map((s) => [s.name, s]),
);
const sorted = (names) => [...new Set(names)].sort();

/** The property names of an exported interface or class's instances. */
function declaredProperties(name) {
  const symbol = exported.get(name);
  assert.ok(symbol, `client.d.ts exports ${name}`);
  return sorted(
    checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol)).map((p) => p.name),
  );
}

test('client.d.ts compiles on its own', () => {
  const problems = ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  assert.deepEqual(problems, []);
});

test('the declared value exports are the module exports', () => {
  const values = [...exported.values()]
    .filter((s) => s.flags & ts.SymbolFlags.Value)
    .map((s) => s.name);
  assert.deepEqual(sorted(values), sorted(Object.keys(client)));
});

test('HeraldClient declares its public methods and getters, no more', () => {
  const publicMembers = Object.getOwnPropertyNames(client.HeraldClient.prototype).filter(
    (name) => name !== 'constructor' && !name.startsWith('_'),
  );
  assert.deepEqual(declaredProperties('HeraldClient'), sorted(publicMembers));
});

test('CloseCodes declares each code with its value', () => {
  const symbol = exported.get('CloseCodes');
  const type = checker.getTypeOfSymbolAtLocation(symbol, file);
  const declared = Object.fromEntries(
    checker
      .getPropertiesOfType(type)
      .map((p) => [p.name, checker.getTypeOfSymbolAtLocation(p, file).value]),
  );
  assert.deepEqual(declared, { ...client.CloseCodes });
});

test('HeraldEvents names every event the client emits', async () => {
  const source = await readFile(SOURCE, 'utf8');
  const emitted = [...source.matchAll(/_emit\(\s*'(\w+)'/g)].map((m) => m[1]);
  assert.deepEqual(declaredProperties('HeraldEvents'), sorted(emitted));
});

test('HeraldClientOptions names every option the constructor reads', async () => {
  const source = await readFile(SOURCE, 'utf8');
  const read = [...source.matchAll(/\boptions\.(\w+)/g)].map((m) => m[1]);
  assert.deepEqual(declaredProperties('HeraldClientOptions'), sorted(read));
});

test('HeraldError declares what its instances carry', () => {
  const error = new client.HeraldError('x', 'm', { fatal: true, closeCode: 4008, key: 'k' });
  const own = Object.keys(error);
  for (const name of own) assert.ok(declaredProperties('HeraldError').includes(name), name);
});
