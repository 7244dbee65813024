/** Helpers for model tests: run a parser that should fail and look at its causes. */
import { expect } from "vitest";
import { type Cause, ValidationError } from "../../../src/errors.ts";

/** The causes of the ValidationError `fn` throws (fails the test when it does not throw one). */
export function causesOf(fn: () => unknown): Cause[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).causes;
  }
  throw new Error("expected a ValidationError, but the call succeeded");
}

export async function causesOfAsync(fn: () => Promise<unknown>): Promise<Cause[]> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).causes;
  }
  throw new Error("expected a ValidationError, but the call succeeded");
}

/** Asserts one cause has exactly `field` and a message containing `fragment`. */
export function expectCause(causes: readonly Cause[], field: string, fragment: string): void {
  const atField = causes.filter((c) => c.field === field);
  expect(
    atField.map((c) => c.message),
    `causes at ${field}; all causes: ${JSON.stringify(causes, null, 1)}`,
  ).toEqual(expect.arrayContaining([expect.stringContaining(fragment)]));
}
