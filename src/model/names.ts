/**
 * Name rules Knative inherits from Kubernetes, and the host names built from
 * them. Each `check*` returns undefined when the value is fine, or a message
 * that says what is wrong and what a good value looks like.
 */

/** Longest DNS label, and therefore longest name that becomes a host label. */
export const MAX_LABEL = 63;
/** Longest DNS-1123 subdomain. */
export const MAX_SUBDOMAIN = 253;
/** Digits in generated revision names: `hello-00001`. */
export const REVISION_DIGITS = 5;
/**
 * Longest Service/Configuration name: `<name>-00001` must still fit in one
 * DNS label, because Skiff uses revision names as host labels and keys.
 */
export const MAX_OWNER_NAME = MAX_LABEL - 1 - REVISION_DIGITS;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Knative's (and Kubernetes') C_IDENTIFIER-ish env var rule. */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

function tooLong(value: string, max: number): string | undefined {
  return value.length > max
    ? `must be no more than ${max} characters (got ${value.length})`
    : undefined;
}

function lowerHint(value: string): string {
  return /[A-Z]/.test(value) ? `; use lower case ("${value.toLowerCase()}")` : "";
}

/** DNS-1123 label (namespaces): lower-case alphanumerics and '-', alphanumeric at both ends. */
export function checkDns1123Label(value: string): string | undefined {
  if (value === "") return "must not be empty";
  if (!DNS1123_LABEL.test(value)) {
    return (
      `"${value}" is not a valid DNS-1123 label: use lower-case letters, digits and '-', ` +
      `starting and ending with a letter or digit (e.g. "my-namespace")${lowerHint(value)}`
    );
  }
  return tooLong(value, MAX_LABEL);
}

/** DNS-1035 label (service, configuration, route names and traffic tags): starts with a letter. */
export function checkDns1035Label(value: string): string | undefined {
  if (value === "") return "must not be empty";
  if (!DNS1035_LABEL.test(value)) {
    return (
      `"${value}" is not a valid DNS-1035 label: use lower-case letters, digits and '-', ` +
      `starting with a letter and ending with a letter or digit (e.g. "hello")${lowerHint(value)}`
    );
  }
  return tooLong(value, MAX_LABEL);
}

/** DNS-1123 subdomain (revision names): dot-separated DNS-1123 labels, at most 253 characters. */
export function checkDns1123Subdomain(value: string): string | undefined {
  if (value === "") return "must not be empty";
  if (!DNS1123_SUBDOMAIN.test(value)) {
    return (
      `"${value}" is not a valid DNS-1123 subdomain: use lower-case letters, digits, '-' and '.', ` +
      `starting and ending with a letter or digit (e.g. "hello-v2")${lowerHint(value)}`
    );
  }
  return tooLong(value, MAX_SUBDOMAIN);
}

/** Environment variable names as Knative accepts them. */
export function checkEnvName(value: string): string | undefined {
  if (value === "") return "must not be empty";
  if (!ENV_NAME.test(value)) {
    return (
      `"${value}" is not a valid environment variable name: use letters, digits, '_', '-' and '.', ` +
      `not starting with a digit (e.g. "MY_SETTING")`
    );
  }
  return undefined;
}

/** Names the runtime contract sets itself (PORT and every K_*). */
export function isReservedEnvName(name: string): boolean {
  return name === "PORT" || name.startsWith("K_");
}

export const isDns1123Label = (v: string): boolean => checkDns1123Label(v) === undefined;

/** `hello`, 1 -> `hello-00001` (Knative's generated revision name). */
export function revisionNameFor(configurationName: string, generation: number): string {
  if (!Number.isInteger(generation) || generation < 1) {
    throw new RangeError(`generation must be a positive integer (got ${generation})`);
  }
  return `${configurationName}-${String(generation).padStart(REVISION_DIGITS, "0")}`;
}

/** `{name}.{namespace}.{domain}` */
export function serviceHost(name: string, namespace: string, domain: string): string {
  return `${name}.${namespace}.${domain}`;
}

/** `{tag}-{name}.{namespace}.{domain}` */
export function tagHost(tag: string, name: string, namespace: string, domain: string): string {
  return `${tag}-${name}.${namespace}.${domain}`;
}

/** `{tag}-{name}` must be one DNS label; returns the problem, if any. */
export function checkTagHostLabel(tag: string, name: string): string | undefined {
  const label = `${tag}-${name}`;
  if (label.length <= MAX_LABEL) return undefined;
  return (
    `tag "${tag}" makes the host label "${label}" ${label.length} characters long; ` +
    `"{tag}-{name}" must fit in ${MAX_LABEL} characters, so use a tag of at most ` +
    `${Math.max(0, MAX_LABEL - 1 - name.length)} characters`
  );
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Label and annotation keys: `[prefix/]name`, prefix a DNS-1123 subdomain, name <= 63. */
export function checkQualifiedName(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const hint = 'e.g. "app", "example.com/team"';
  if (prefix !== undefined) {
    const bad = checkDns1123Subdomain(prefix);
    if (bad !== undefined) return `key "${key}" has an invalid prefix: ${bad}`;
  }
  if (name === "") return `key "${key}" has an empty name (${hint})`;
  if (name.length > MAX_LABEL) {
    return `key "${key}": the name part must be no more than ${MAX_LABEL} characters`;
  }
  if (!QUALIFIED_NAME.test(name)) {
    return (
      `key "${key}" is not a valid qualified name: use letters, digits, '-', '_' and '.', ` +
      `starting and ending with a letter or digit, with an optional DNS prefix and '/' (${hint})`
    );
  }
  return undefined;
}

/** Label values: empty, or <= 63 letters/digits/'-_.' starting and ending alphanumeric. */
export function checkLabelValue(value: string): string | undefined {
  if (value.length > MAX_LABEL) {
    return `label values must be no more than ${MAX_LABEL} characters (got ${value.length})`;
  }
  if (!LABEL_VALUE.test(value)) {
    return (
      `"${value}" is not a valid label value: use letters, digits, '-', '_' and '.', ` +
      "starting and ending with a letter or digit (annotations take free text)"
    );
  }
  return undefined;
}
