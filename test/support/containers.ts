/** The containers an agent or a container runtime started, by their skiff.owner label. */
import Docker from "dockerode";

const docker = new Docker();

/** Instance containers `owner` (an agent id, or a runtime's owner) started, running or not. */
export async function containersOf(owner: string): Promise<Docker.ContainerInfo[]> {
  return (await everyContainerOf(owner)).filter((c) => c.Labels["skiff.role"] !== "sandbox");
}

/** The network sandboxes `owner` started (agent/container/sandboxes.ts), running or not. */
export async function sandboxesOf(owner: string): Promise<Docker.ContainerInfo[]> {
  return (await everyContainerOf(owner)).filter((c) => c.Labels["skiff.role"] === "sandbox");
}

function everyContainerOf(owner: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`skiff.owner=${owner}`] } });
}

/** Force-remove every container these owners started, whatever state a test left them in. */
export async function removeContainers(owners: Iterable<string>): Promise<void> {
  for (const owner of owners) {
    const left = await everyContainerOf(owner).catch(() => []);
    await Promise.all(
      left.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => {}),
      ),
    );
  }
}
