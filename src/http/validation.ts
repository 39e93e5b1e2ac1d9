/**
 * How every Fastify server (manager API, cluster endpoint, agent) validates requests.
 * A JSON body is taken as written: no type is coerced (`"2"` is not 2, `null` is not 0,
 * `"false"` is not false) and additional properties are refused, never silently removed
 * (removal would also strip fields while Ajv tries the branches of a union). Path parameters,
 * query strings and headers arrive as text, so there, and only there, numbers and booleans are
 * read from their spelling.
 */
import AjvCompiler from '@fastify/ajv-compiler';

type RouteSchema = { schema: unknown; method: string; url: string; httpPart?: string };
type Validate = (route: RouteSchema) => unknown;

const fromPool = AjvCompiler();
const shared = { useDefaults: true, removeAdditional: false } as const;

function buildValidator(externalSchemas: Record<string, unknown>, options: { customOptions?: object } = {}) {
  const build = (coerceTypes: false | 'array') =>
    fromPool(externalSchemas as never, {
      ...options,
      customOptions: { ...options.customOptions, ...shared, coerceTypes },
    }) as unknown as Validate;
  const body = build(false);
  const text = build('array');
  return (route: RouteSchema) =>
    route.httpPart === 'body' ? body(route) : finiteOnly(text(route) as AjvValidate);
}

type AjvValidate = ((data: unknown, ctx?: unknown) => boolean) & { errors?: unknown[] | null };

/**
 * Ajv reads "1e999" in a query string as Infinity and then lets it through every bound; no
 * count, size or limit is infinite.
 */
function finiteOnly(validate: AjvValidate): AjvValidate {
  const checked: AjvValidate = (data, ctx) => {
    if (!validate(data, ctx)) {
      checked.errors = validate.errors;
      return false;
    }
    const bad = Object.entries(data ?? {}).find(([, v]) =>
      [v].flat().some((x) => typeof x === 'number' && !Number.isFinite(x)),
    );
    checked.errors = bad
      ? [{ instancePath: `/${bad[0]}`, keyword: 'type', params: {}, message: 'must be a finite number' }]
      : null;
    return !bad;
  };
  return checked;
}

/** Spread into the options of a Fastify server. */
export const validation = {
  schemaController: {
    compilersFactory: { buildValidator: buildValidator as unknown as AjvCompiler.BuildCompilerFromPool },
  },
};

/**
 * The places in a request body schema where an object would take properties it does not name
 * (`additionalProperties` not false), as JSON pointers; a typo in a field must be refused, not
 * ignored. Records (`patternProperties` or a schema of additional properties) are closed by
 * their own rule.
 */
export function openObjects(schema: unknown, at = ''): string[] {
  if (typeof schema !== 'object' || schema === null) return [];
  const s = schema as Record<string, unknown>;
  const here =
    s.type === 'object' && s.additionalProperties === undefined && s.patternProperties === undefined
      ? [at || '/']
      : s.additionalProperties === true
        ? [at || '/']
        : [];
  const below = Object.entries(s).flatMap(([k, v]) =>
    Array.isArray(v)
      ? v.flatMap((x, i) => openObjects(x, `${at}/${k}/${i}`))
      : typeof v === 'object' && v !== null
        ? openObjects(v, `${at}/${k}`)
        : [],
  );
  return [...here, ...below];
}
