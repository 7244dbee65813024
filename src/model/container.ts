/**
 * The one container of a `containers` revision template, checked with
 * Knative's rules. What is stored is what the user gave (validated); the
 * runtime defaults are applied by the helpers below when they are needed, so
 * that re-applying the same manifest yields an equal template.
 */
import { readEnv } from "./env.ts";
import {
  child,
  type Issues,
  item,
  readArray,
  readBool,
  readInt,
  readObject,
  readString,
  readStringList,
} from "./fields.ts";
import type { ModelLimits } from "./limits.ts";
import { checkDns1123Label } from "./names.ts";
import { readResources } from "./resources.ts";
import type { Container, ContainerPort, HTTPGetAction, Probe, SecurityContext } from "./types.ts";

/** Knative's default serving port (the PORT env var). */
export const DEFAULT_PORT = 8080;

/** The port the runtime routes to and sets as PORT: the single containerPort, or 8080. */
export function servingPort(container: Pick<Container, "ports">): number {
  return container.ports?.[0]?.containerPort ?? DEFAULT_PORT;
}

/** "h2c" when the port is named so (cleartext HTTP/2), else "http1". */
export function servingProtocol(container: Pick<Container, "ports">): "http1" | "h2c" {
  return container.ports?.[0]?.name === "h2c" ? "h2c" : "http1";
}

/**
 * The readiness probe to run: the user's, or Knative's default (TCP connect to
 * the serving port). `periodSeconds` unset or 0 means probe aggressively until
 * the first success.
 */
export function effectiveReadinessProbe(container: Pick<Container, "readinessProbe">): Probe {
  const p = container.readinessProbe;
  if (p === undefined || (!p.tcpSocket && !p.httpGet && !p.exec)) {
    return { ...p, tcpSocket: {} };
  }
  return p;
}

export const CONTAINER_SHAPE = {
  known: [
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "env",
    "ports",
    "resources",
    "readinessProbe",
    "livenessProbe",
    "imagePullPolicy",
    "securityContext",
  ] as const,
  unsupported: {
    startupProbe: "use readinessProbe",
    envFrom: 'list variables under "env"',
    volumeMounts: "revisions are stateless; /tmp is writable",
    lifecycle: "",
    stdin: "",
    stdinOnce: "",
    tty: "",
    terminationMessagePath: "",
    terminationMessagePolicy: "",
    volumeDevices: "",
    resizePolicy: "",
    restartPolicy: "",
  },
};

export const PORT_SHAPE = {
  known: ["containerPort", "name", "protocol"] as const,
  unsupported: { hostPort: "Skiff assigns host ports itself", hostIP: "" },
};

/** Knative's allowed container securityContext, the parts a Docker host can honour. */
export const SECURITY_CONTEXT_SHAPE = {
  known: ["runAsUser", "runAsGroup", "runAsNonRoot"] as const,
  unsupported: {
    privileged: "containers never run privileged",
    capabilities: "Skiff drops every capability (NET_BIND_SERVICE is added for a port below 1024)",
    allowPrivilegeEscalation: "Skiff always sets no-new-privileges",
    procMount: "",
    seLinuxOptions: "",
    windowsOptions: "",
    appArmorProfile: "",
    seccompProfile: "Docker's default seccomp profile applies",
    readOnlyRootFilesystem: "",
  },
};

/** Largest uid/gid Kubernetes accepts. */
const MAX_ID = 2 ** 31 - 1;

function readSecurityContext(
  value: unknown,
  field: string,
  issues: Issues,
): SecurityContext | undefined {
  const obj = readObject(value, field, issues, SECURITY_CONTEXT_SHAPE);
  if (obj === undefined) return undefined;
  const before = issues.count;
  const out: SecurityContext = {};
  const user = readInt(obj.runAsUser, child(field, "runAsUser"), issues, { min: 0, max: MAX_ID });
  if (user !== undefined) out.runAsUser = user;
  const group = readInt(obj.runAsGroup, child(field, "runAsGroup"), issues, {
    min: 0,
    max: MAX_ID,
  });
  if (group !== undefined) out.runAsGroup = group;
  const nonRoot = readBool(obj.runAsNonRoot, child(field, "runAsNonRoot"), issues);
  if (nonRoot !== undefined) out.runAsNonRoot = nonRoot;
  if (nonRoot === true && user === 0) {
    issues.add(
      child(field, "runAsUser"),
      "runAsNonRoot is true, so runAsUser cannot be 0 (root); give a non-zero uid",
      "FieldValueForbidden",
    );
  }
  return issues.count === before ? out : undefined;
}

export const PROBE_SHAPE = {
  known: [
    "tcpSocket",
    "httpGet",
    "exec",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
  ] as const,
  unsupported: {
    grpc: "use httpGet or tcpSocket",
    terminationGracePeriodSeconds: "",
  },
};

function readPorts(value: unknown, field: string, issues: Issues): ContainerPort[] | undefined {
  const list = readArray(value, field, issues);
  if (list === undefined) return undefined;
  if (list.length > 1) {
    issues.add(
      field,
      `a revision serves exactly one port; list at most one (got ${list.length})`,
      "FieldValueTooMany",
    );
    return undefined;
  }
  const before = issues.count;
  const out: ContainerPort[] = [];
  list.forEach((raw, i) => {
    const at = item(field, i);
    const obj = readObject(raw, at, issues, PORT_SHAPE, { required: true });
    if (obj === undefined) return;
    // Knative: a port given by name only (`name: h2c`) serves on the default 8080.
    const containerPort =
      obj.containerPort === undefined || obj.containerPort === null || obj.containerPort === 0
        ? DEFAULT_PORT
        : readInt(obj.containerPort, child(at, "containerPort"), issues, { min: 1, max: 65535 });
    const name = readString(obj.name, child(at, "name"), issues);
    if (name !== undefined && name !== "" && name !== "http1" && name !== "h2c") {
      issues.add(
        child(at, "name"),
        `must be "http1" (HTTP/1.1, the default) or "h2c" (cleartext HTTP/2) (got "${name}")`,
        "FieldValueNotSupported",
      );
    }
    const protocol = readString(obj.protocol, child(at, "protocol"), issues);
    if (protocol !== undefined && protocol !== "TCP") {
      issues.add(
        child(at, "protocol"),
        `only "TCP" is supported (got "${protocol}")`,
        "FieldValueNotSupported",
      );
    }
    if (containerPort === undefined) return;
    const port: ContainerPort = { containerPort };
    if (name !== undefined) port.name = name;
    if (protocol === "TCP") port.protocol = "TCP";
    out.push(port);
  });
  return issues.count === before ? out : undefined;
}

/** A probe's port must be the serving port (or unset), as in Knative. */
function readProbePort(
  value: unknown,
  field: string,
  issues: Issues,
  port: number,
): number | undefined {
  if (typeof value === "string") {
    issues.add(
      field,
      `must be a port number (named ports are not supported); omit it to use ${port}`,
    );
    return undefined;
  }
  const n = readInt(value, field, issues, { min: 1, max: 65535 });
  if (n !== undefined && n !== port) {
    issues.add(field, `may only be the serving port ${port}; omit it to probe that port`);
    return undefined;
  }
  return n;
}

function readProbe(value: unknown, field: string, issues: Issues, port: number): Probe | undefined {
  const obj = readObject(value, field, issues, PROBE_SHAPE);
  if (obj === undefined) return undefined;
  const before = issues.count;
  const probe: Probe = {};
  const hasTcp = obj.tcpSocket !== undefined && obj.tcpSocket !== null;
  const hasHttp = obj.httpGet !== undefined && obj.httpGet !== null;
  const hasExec = obj.exec !== undefined && obj.exec !== null;
  if (Number(hasTcp) + Number(hasHttp) + Number(hasExec) > 1) {
    issues.add(
      field,
      'set at most one of "tcpSocket", "httpGet" and "exec"',
      "FieldValueForbidden",
    );
  }
  if (hasExec) {
    const at = child(field, "exec");
    const exec = readObject(obj.exec, at, issues, { known: ["command"] });
    const command = readStringList(exec?.command, child(at, "command"), issues);
    if (exec !== undefined && (command === undefined || command.length === 0)) {
      issues.add(
        child(at, "command"),
        'required: the command to run in the container, e.g. ["/bin/check"]',
        "FieldValueRequired",
      );
    } else if (command !== undefined) probe.exec = { command };
  }
  if (hasTcp) {
    const at = child(field, "tcpSocket");
    const tcp = readObject(obj.tcpSocket, at, issues, {
      known: ["port"],
      unsupported: { host: "" },
    });
    if (tcp !== undefined) {
      const p = readProbePort(tcp.port, child(at, "port"), issues, port);
      probe.tcpSocket = p === undefined ? {} : { port: p };
    }
  }
  if (hasHttp) {
    const at = child(field, "httpGet");
    const http = readObject(obj.httpGet, at, issues, {
      known: ["path", "port", "httpHeaders", "scheme"],
      unsupported: { host: "the Host header is the revision's own" },
    });
    if (http !== undefined) {
      const path = readString(http.path, child(at, "path"), issues) ?? "/";
      if (!path.startsWith("/")) {
        issues.add(child(at, "path"), `must start with "/" (got "${path}"); e.g. "/healthz"`);
      }
      const action: HTTPGetAction = { path };
      const p = readProbePort(http.port, child(at, "port"), issues, port);
      if (p !== undefined) action.port = p;
      const scheme = readString(http.scheme, child(at, "scheme"), issues);
      if (scheme !== undefined && scheme !== "HTTP") {
        issues.add(
          child(at, "scheme"),
          `only "HTTP" is supported (got "${scheme}")`,
          "FieldValueNotSupported",
        );
      }
      const headersAt = child(at, "httpHeaders");
      const headers = readArray(http.httpHeaders, headersAt, issues, { maxItems: 32 });
      if (headers !== undefined) {
        action.httpHeaders = [];
        headers.forEach((raw, i) => {
          const hAt = item(headersAt, i);
          const h = readObject(raw, hAt, issues, { known: ["name", "value"] }, { required: true });
          if (h === undefined) return;
          const name = readString(h.name, child(hAt, "name"), issues, {
            required: true,
            nonEmpty: true,
          });
          const value = readString(h.value, child(hAt, "value"), issues) ?? "";
          if (name !== undefined && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
            issues.add(child(hAt, "name"), `"${name}" is not a valid HTTP header name`);
          }
          if (name !== undefined) action.httpHeaders?.push({ name, value });
        });
      }
      probe.httpGet = action;
    }
  }
  const ints = [
    ["initialDelaySeconds", 0, 3600],
    ["periodSeconds", 0, 3600],
    ["timeoutSeconds", 1, 3600],
    ["successThreshold", 1, 100],
    ["failureThreshold", 1, 100],
  ] as const;
  for (const [key, min, max] of ints) {
    const n = readInt(obj[key], child(field, key), issues, { min, max });
    if (n !== undefined) probe[key] = n;
  }
  return issues.count === before ? probe : undefined;
}

/** One container; `field` is e.g. `spec.template.spec.containers[0]`. */
export function readContainer(
  value: unknown,
  field: string,
  issues: Issues,
  limits: ModelLimits,
): Container | undefined {
  const obj = readObject(value, field, issues, CONTAINER_SHAPE, { required: true });
  if (obj === undefined) return undefined;
  const before = issues.count;
  const image = readString(obj.image, child(field, "image"), issues, {
    required: true,
    nonEmpty: true,
    maxLength: 4096,
  });
  if (image !== undefined && /\s/.test(image)) {
    issues.add(child(field, "image"), `"${image}" must not contain whitespace`);
  }
  const c: Container = { image: image ?? "" };
  const name = readString(obj.name, child(field, "name"), issues);
  if (name !== undefined) {
    const bad = checkDns1123Label(name);
    if (bad !== undefined) issues.add(child(field, "name"), bad);
    c.name = name;
  }
  const command = readStringList(obj.command, child(field, "command"), issues);
  if (command !== undefined) c.command = command;
  const args = readStringList(obj.args, child(field, "args"), issues);
  if (args !== undefined) c.args = args;
  const workingDir = readString(obj.workingDir, child(field, "workingDir"), issues);
  if (workingDir !== undefined) {
    if (workingDir !== "" && !workingDir.startsWith("/")) {
      issues.add(child(field, "workingDir"), `must be an absolute path (got "${workingDir}")`);
    }
    c.workingDir = workingDir;
  }
  const env = readEnv(obj.env, child(field, "env"), issues, limits.maxEnvVars);
  if (env !== undefined) c.env = env;
  const ports = readPorts(obj.ports, child(field, "ports"), issues);
  if (ports !== undefined) c.ports = ports;
  const resources = readResources(obj.resources, child(field, "resources"), issues, {
    requests: true,
  });
  if (resources !== undefined) c.resources = resources;
  const port = servingPort({ ports });
  const probe = readProbe(obj.readinessProbe, child(field, "readinessProbe"), issues, port);
  if (probe !== undefined) c.readinessProbe = probe;
  const liveness = readProbe(obj.livenessProbe, child(field, "livenessProbe"), issues, port);
  if (liveness !== undefined) c.livenessProbe = liveness;
  const security = readSecurityContext(
    obj.securityContext,
    child(field, "securityContext"),
    issues,
  );
  if (security !== undefined && Object.keys(security).length > 0) c.securityContext = security;
  const pull = readString(obj.imagePullPolicy, child(field, "imagePullPolicy"), issues);
  if (pull !== undefined) {
    if (pull === "Always" || pull === "IfNotPresent" || pull === "Never") c.imagePullPolicy = pull;
    else {
      issues.add(
        child(field, "imagePullPolicy"),
        `must be "Always", "IfNotPresent" or "Never" (got "${pull}")`,
        "FieldValueNotSupported",
      );
    }
  }
  return issues.count === before ? c : undefined;
}
