/** Client commands on Knative resources: apply, service, revision, route (one module per noun). */
import type { Command } from "commander";
import type { ClientFactory } from "../client.ts";
import { registerApplyCommand } from "./apply.ts";
import { registerDeployCommand } from "./deploy.ts";
import { registerLogsCommand } from "./logs.ts";
import { registerRevisionCommands } from "./revision.ts";
import { registerRouteCommands } from "./route.ts";
import { registerServiceCommands } from "./service.ts";

export function registerResourceCommands(program: Command, client: ClientFactory): void {
  registerApplyCommand(program, client);
  registerServiceCommands(program, client);
  registerRevisionCommands(program, client);
  registerRouteCommands(program, client);
  registerLogsCommand(program, client);
  registerDeployCommand(program, client);
}
