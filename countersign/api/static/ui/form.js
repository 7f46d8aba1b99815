// A form generated from a tool's args JSON Schema (pydantic's): one field per property, with the
// schema's constraints as HTML constraints, so the browser checks them before anything is sent.

function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve((root.$defs || {})[name] || {}, root);
  }
  // `X | None` is anyOf [X, null]: the field is X, and empty means null.
  if (schema && schema.anyOf) {
    const real = schema.anyOf.filter((s) => s.type !== "null");
    return { ...resolve(real[0] || {}, root), nullable: real.length < schema.anyOf.length, title: schema.title, default: schema.default };
  }
  return schema || {};
}

function control(name, spec, value, required) {
  let input;
  if (spec.enum) {
    input = document.createElement("select");
    for (const option of spec.enum) {
      const item = document.createElement("option");
      item.value = item.textContent = String(option);
      input.append(item);
    }
    input.value = value == null ? "" : String(value);
  } else if (spec.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(value);
  } else if (spec.type === "integer" || spec.type === "number") {
    input = document.createElement("input");
    input.type = "number";
    input.step = spec.type === "integer" ? "1" : "any";
    for (const [key, attr] of [["minimum", "min"], ["maximum", "max"]]) if (spec[key] != null) input[attr] = spec[key];
    if (spec.exclusiveMinimum != null) input.min = spec.exclusiveMinimum + (spec.type === "integer" ? 1 : Number.EPSILON);
    input.value = value == null ? "" : String(value);
  } else if (spec.type === "array") {
    input = document.createElement("input");
    input.type = "text";
    input.value = Array.isArray(value) ? value.join(", ") : "";
    input.dataset.list = "true";
  } else if ((spec.maxLength || 0) > 300) {
    input = document.createElement("textarea");
    input.rows = 5;
    input.value = value == null ? "" : String(value);
  } else {
    input = document.createElement("input");
    input.type = spec.format === "email" ? "email" : spec.format === "date" ? "date" : "text";
    input.value = value == null ? "" : String(value);
  }
  if (spec.minLength != null && input.type !== "checkbox") input.minLength = spec.minLength;
  if (spec.maxLength != null && "maxLength" in input) input.maxLength = spec.maxLength;
  input.required = required && input.type !== "checkbox";
  input.name = name;
  input.id = `arg-${name}`;
  return input;
}

export function argsForm(schema, values) {
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).map(([name, raw]) => {
    const spec = resolve(raw, schema);
    const wrap = document.createElement("div");
    wrap.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `arg-${name}`;
    label.textContent = `${spec.title || raw.title || name}${required.has(name) ? " (required)" : ""}`;
    wrap.append(label, control(name, spec, values[name], required.has(name)));
    if (raw.description || spec.description) {
      const hint = document.createElement("small");
      hint.className = "muted";
      hint.textContent = raw.description || spec.description;
      wrap.append(hint);
    }
    return wrap;
  });
}

export function readArgs(schema, container) {
  const args = {};
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const spec = resolve(raw, schema);
    const input = container.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    if (input.type === "checkbox") { args[name] = input.checked; continue; }
    const text = input.value.trim();
    // Empty: null where the schema allows it, else left out so the tool's default applies.
    if (text === "") { if (spec.nullable) args[name] = null; continue; }
    if (input.dataset.list) args[name] = text.split(",").map((s) => s.trim()).filter(Boolean);
    else if (spec.type === "integer") args[name] = parseInt(text, 10);
    else if (spec.type === "number") args[name] = parseFloat(text);
    else args[name] = text;
  }
  return args;
}
