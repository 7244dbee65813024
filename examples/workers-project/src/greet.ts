export function greet(greeting: string, who: string): string {
  return `${greeting}, ${who}! (bundled by wrangler)`;
}
