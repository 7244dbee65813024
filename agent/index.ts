/** The node agent (`skiff agent`): runs revision instances as containers and isolates. */
export { Agent, type AgentState, createAgent } from "./agent.ts";
export { agentId, type Capacity, detectCapacity, offeredRuntimes } from "./identity.ts";
export {
  type AgentOptions,
  type AgentOptionsInput,
  AgentOptionsSchema,
  parseAgentOptions,
} from "./options.ts";
export { createAgentApp, type RunningAgent, type StartAgentOptions, startAgent } from "./server.ts";
