/**
 * The least a Node proxy does, the floor the gateway benchmarks compare
 * against: node:http server, undici dispatch, no routing, headers or metrics.
 * Source of an ES module for `node --input-type=module -e`; it prints its URL.
 */
export function floorProxySource(backendPort: number): string {
  return `
import { createServer } from "node:http";
import { Agent } from "undici";
const agent = new Agent({ pipelining: 1, keepAliveTimeout: 4000 });
const origin = "http://127.0.0.1:${backendPort}";
const server = createServer((req, res) => {
  agent.dispatch({ origin, path: req.url, method: req.method, headers: req.headers, body: null }, {
    onRequestStart() {},
    onResponseStart(c, status, headers) { res.writeHead(status, headers); },
    onResponseData(c, chunk) { res.write(chunk); },
    onResponseEnd() { res.end(); },
    onResponseError() { res.statusCode = 502; res.end(); },
  });
});
server.listen(0, "127.0.0.1", () => console.log("http://127.0.0.1:" + server.address().port));
`;
}
