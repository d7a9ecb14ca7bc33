// Turns the precompiled Ajv validators that the @kubernetes-models/* npm packages ship
// (package/_schemas/*.js, "standalone" Ajv code: one function per schema node) back into a
// JSON Schema (draft 2020-12) document.
//
// Usage: node ajv2jsonschema.mjs PACKAGE_DIR MODULE OUT.json
//   PACKAGE_DIR  the unpacked npm tarball (the folder holding package.json and _schemas/)
//   MODULE       the root module, e.g. KafkaStrimziIoV1beta2Kafka
//
// Every other module of the same package that the root reaches becomes an entry of $defs;
// the Kubernetes core types the packages import (kubernetes-models/_schemas/IoK8s...,
// @kubernetes-models/apimachinery/_schemas/IoK8s...) become $refs into the vendored core
// definitions (CORE_DEFS below). Only the constructs the generator emits are understood; any
// other one stops the run with an error rather than being dropped silently.
//
// Objects that declare properties are closed (unevaluatedProperties: false: "strict", like the
// core schemas and like the API server's strict field validation); objects without declared
// properties (x-kubernetes-preserve-unknown-fields in the CRD) stay open.
//
// Needs the npm packages acorn and acorn-walk (see refresh.sh).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const acorn = require("acorn");
const walk = require("acorn-walk");

const CORE_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/";

const [pkgDir, rootModule, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error("usage: node ajv2jsonschema.mjs PACKAGE_DIR MODULE OUT.json");
  process.exit(2);
}

// IoK8sApiCoreV1SecretKeySelector -> io.k8s.api.core.v1.SecretKeySelector, looked up in the
// vendored definitions so that the name is exact.
const coreNames = new Map();
{
  const defsFile = process.env.CORE_DEFINITIONS;
  if (!defsFile) throw new Error("set CORE_DEFINITIONS to the core _definitions.json");
  const defs = JSON.parse(fs.readFileSync(defsFile, "utf8")).$defs;
  for (const name of Object.keys(defs)) {
    const camel = name
      .split(/[.-]/)
      .map((s) => s.charAt(0).toUpperCase() + s.slice(1))
      .join("");
    coreNames.set(camel, name);
  }
}
const usedCore = new Set();

const defs = {}; // module name -> schema
const toClose = []; // schemas at use sites, closed once every module is known
const pending = [rootModule];
const seen = new Set([rootModule]);

function fail(msg, node, src) {
  const at = node ? ` at ${src.slice(node.start, Math.min(node.end, node.start + 200))}` : "";
  throw new Error(msg + at);
}

function decompileModule(moduleName) {
  const file = path.join(pkgDir, "_schemas", moduleName + ".js");
  const src = fs.readFileSync(file, "utf8");
  const ast = acorn.parse(src, { ecmaVersion: "latest", sourceType: "module" });

  const functions = new Map(); // name -> FunctionDeclaration
  const constants = new Map(); // name -> init node (top-level let/const)
  const imports = new Map(); // local name -> module specifier
  let exported = null;

  for (const stmt of ast.body) {
    if (stmt.type === "FunctionDeclaration") functions.set(stmt.id.name, stmt);
    else if (stmt.type === "VariableDeclaration")
      for (const d of stmt.declarations) constants.set(d.id.name, d.init);
    else if (stmt.type === "ImportDeclaration") {
      for (const s of stmt.specifiers) imports.set(s.local.name, stmt.source.value);
    } else if (stmt.type === "ExportNamedDeclaration" && stmt.declaration) {
      for (const d of stmt.declaration.declarations) {
        if (d.id.name === "validate") exported = d.init.name;
        else constants.set(d.id.name, d.init);
      }
    }
  }
  if (!exported) fail(`no exported validate in ${moduleName}`);

  function evalNode(node) {
    switch (node.type) {
      case "Literal":
        return node.value;
      case "ArrayExpression":
        return node.elements.map(evalNode);
      case "ObjectExpression": {
        const out = {};
        for (const p of node.properties) {
          const key = p.key.type === "Identifier" ? p.key.name : p.key.value;
          out[key] = p.shorthand ? { $ident: key } : evalNode(p.value);
        }
        return out;
      }
      case "UnaryExpression":
        if (node.operator === "-") return -evalNode(node.argument);
        if (node.operator === "!") return !evalNode(node.argument);
        break;
      case "Identifier": {
        const init = constants.get(node.name);
        if (init) return evalNode(init);
        return { $ident: node.name };
      }
      case "CallExpression":
        if (node.callee.type === "Identifier" && node.callee.name === "RegExp")
          return evalNode(node.arguments[0]);
        break;
      case "MemberExpression":
        return { $member: src.slice(node.start, node.end) };
      default:
        break;
    }
    return fail(`cannot evaluate ${node.type}`, node, src);
  }

  function refFor(calleeName) {
    if (functions.has(calleeName)) return { local: calleeName };
    const spec = imports.get(calleeName);
    if (!spec) fail(`unknown validator ${calleeName} in ${moduleName}`);
    const base = path.basename(spec).replace(/\.js$/, "");
    if (spec.startsWith("./")) {
      if (!seen.has(base)) {
        seen.add(base);
        pending.push(base);
      }
      return { $ref: `#/$defs/${base}` };
    }
    if (/^(kubernetes-models|@kubernetes-models\/apimachinery)\/_schemas\//.test(spec)) {
      const core = coreNames.get(base);
      if (!core) fail(`no core definition for ${spec}`);
      usedCore.add(core);
      return { $ref: CORE_DEFS + core };
    }
    return fail(`unsupported import ${spec}`);
  }

  const isData = (n) => n.type === "Identifier" && n.name === "data";
  const srcOf = (n) => src.slice(n.start, n.end).replace(/\s+/g, "");
  const nullGuarded = (ancestors) =>
    ancestors.some(
      (a) =>
        (a.type === "LogicalExpression" && a.operator === "&&" && /^null!==data$/.test(srcOf(a.left))) ||
        (a.type === "IfStatement" && /null!==data/.test(srcOf(a.test))),
    );

  const memo = new Map();
  const inProgress = new Set();

  function decompileFunction(name) {
    if (memo.has(name)) return memo.get(name);
    if (inProgress.has(name)) fail(`recursive schema through ${name} in ${moduleName}`);
    inProgress.add(name);
    const fn = functions.get(name);
    const facts = {
      types: [],
      required: [],
      keywords: {},
      properties: {},
      items: null,
      additional: null,
      dataCalls: [],
    };

    walk.ancestor(fn.body, {
      ObjectExpression(node, _state, ancestors) {
        const kw = node.properties.find((p) => p.key && p.key.name === "keyword");
        if (!kw) return;
        const err = evalNode(node);
        if (!(err.instancePath && err.instancePath.$ident === "instancePath"))
          fail(`inline subschema in ${moduleName}.${name}`, node, src);
        if (err.schemaPath !== `#/${err.keyword}`)
          fail(`nested schemaPath ${err.schemaPath} in ${moduleName}.${name}`, node, src);
        const p = err.params;
        switch (err.keyword) {
          case "type": {
            const nullable = nullGuarded(ancestors.slice(0, -1));
            const t = Array.isArray(p.type) ? p.type : String(p.type).split(",");
            facts.types.push(...t);
            if (nullable) facts.types.push("null");
            break;
          }
          case "required":
            facts.required.push(p.missingProperty);
            break;
          case "enum":
            facts.keywords.enum = p.allowedValues;
            break;
          case "const":
            facts.keywords.const = p.allowedValue;
            break;
          case "pattern":
            facts.keywords.pattern = p.pattern;
            break;
          case "format":
            facts.keywords.format = p.format;
            break;
          case "minimum":
          case "maximum":
            if (p.comparison === ">" || p.comparison === "<")
              facts.keywords[err.keyword === "minimum" ? "exclusiveMinimum" : "exclusiveMaximum"] =
                p.limit;
            else facts.keywords[err.keyword] = p.limit;
            break;
          case "exclusiveMinimum":
          case "exclusiveMaximum":
          case "minItems":
          case "maxItems":
          case "minLength":
          case "maxLength":
          case "minProperties":
          case "maxProperties":
            facts.keywords[err.keyword] = p.limit;
            break;
          case "uniqueItems":
            facts.keywords.uniqueItems = true;
            break;
          case "anyOf":
          case "oneOf":
            facts.keywords[err.keyword] = true;
            break;
          default:
            fail(`unsupported keyword ${err.keyword} in ${moduleName}.${name}`, node, src);
        }
      },
      CallExpression(node, _state, ancestors) {
        if (node.callee.type !== "Identifier" || !/^validate\d+$/.test(node.callee.name)) return;
        const arg = node.arguments[0];
        const callee = node.callee.name;
        if (isData(arg)) {
          facts.dataCalls.push({ callee, nullable: nullGuarded(ancestors.slice(0, -1)) });
          return;
        }
        if (arg.type !== "MemberExpression" || !isData(arg.object))
          fail(`unexpected validator argument in ${moduleName}.${name}`, node, src);
        if (!arg.computed) {
          facts.properties[arg.property.name] = callee;
        } else if (arg.property.type === "Literal") {
          facts.properties[arg.property.value] = callee;
        } else if (arg.property.type === "Identifier" && /^i\d+$/.test(arg.property.name)) {
          if (facts.items) fail(`two item schemas in ${moduleName}.${name}`);
          facts.items = callee;
        } else if (arg.property.type === "Identifier" && /^key\d+$/.test(arg.property.name)) {
          if (facts.additional) fail(`two map schemas in ${moduleName}.${name}`);
          facts.additional = callee;
        } else fail(`unexpected member argument in ${moduleName}.${name}`, node, src);
      },
    });

    const sub = (callee) => {
      const r = refFor(callee);
      return r.local ? decompileFunction(r.local) : r;
    };
    const closedSub = (callee) => close(sub(callee));

    const schema = {};
    const types = [...new Set(facts.types)];
    if (types.length === 1) schema.type = types[0];
    else if (types.length > 1) schema.type = types;
    Object.assign(schema, facts.keywords);
    delete schema.anyOf;
    delete schema.oneOf;
    if (facts.required.length) schema.required = facts.required;
    const propNames = Object.keys(facts.properties);
    if (propNames.length) {
      schema.properties = {};
      for (const k of propNames) schema.properties[k] = closedSub(facts.properties[k]);
    }
    if (facts.items) schema.items = closedSub(facts.items);
    if (facts.additional) schema.additionalProperties = closedSub(facts.additional);

    const branches = facts.dataCalls.map((c) => {
      const s = sub(c.callee);
      return c.nullable ? { anyOf: [{ type: "null" }, s] } : s;
    });
    const combinator = facts.keywords.oneOf ? "oneOf" : facts.keywords.anyOf ? "anyOf" : null;
    if (combinator) {
      if (branches.length < 1) fail(`${combinator} with ${branches.length} branches in ${moduleName}.${name}`);
      schema[combinator] = branches;
    } else if (branches.length === 1 && Object.keys(schema).length === 0) {
      memo.set(name, branches[0]);
      inProgress.delete(name);
      return branches[0];
    } else if (branches.length) {
      schema.allOf = branches;
    }

    memo.set(name, schema);
    inProgress.delete(name);
    return schema;
  }

  return decompileFunction(exported);
}

while (pending.length) {
  const m = pending.shift();
  defs[m] = decompileModule(m);
}

// Strictness. The generator composes Go's embedded structs with allOf, so a definition may be
// both a type of its own and a mixin of another object: closing it in place
// (additionalProperties: false) would reject the properties its users add. Objects are closed
// where they are used instead (property values, items, map values, the root), with
// unevaluatedProperties: false, which sees the properties declared through allOf/$ref/anyOf/oneOf.
function declaresProps(schema, seenRefs = new Set()) {
  if (!schema || typeof schema !== "object") return false;
  if (schema.additionalProperties !== undefined) return false; // a map, or already closed
  if (schema.properties) return true;
  if (schema.$ref && schema.$ref.startsWith("#/$defs/")) {
    const name = schema.$ref.slice("#/$defs/".length);
    if (seenRefs.has(name)) return false;
    seenRefs.add(name);
    return declaresProps(defs[name], seenRefs);
  }
  return ["allOf", "anyOf", "oneOf"].some(
    (k) => Array.isArray(schema[k]) && schema[k].some((b) => declaresProps(b, seenRefs)),
  );
}
function close(schema) {
  const wrapper = { ...schema };
  toClose.push(wrapper);
  return wrapper;
}
function finishClosing() {
  for (const w of toClose)
    if (declaresProps(w) && w.unevaluatedProperties === undefined) w.unevaluatedProperties = false;
}

const root = close(defs[rootModule]);
delete defs[rootModule];
finishClosing();
const out = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  ...root,
};
if (Object.keys(defs).length) out.$defs = Object.fromEntries(Object.entries(defs).sort());
fs.mkdirSync(path.dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, JSON.stringify(out, null, 1) + "\n");
console.log(`${outFile}: ${Object.keys(defs).length} defs, core refs: ${[...usedCore].sort().join(" ")}`);
