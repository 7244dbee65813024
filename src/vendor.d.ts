// Type declarations for dependencies that ship none.
declare module "json-merge-patch" {
  /** RFC 7386: apply `patch` to `target`, returning the result (target may be mutated). */
  export function apply(target: unknown, patch: unknown): unknown;
  export function generate(before: unknown, after: unknown): unknown;
  export function merge(patch1: unknown, patch2: unknown): unknown;
}
