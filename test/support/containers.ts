/** The containers an agent or a container runtime started, by their skiff.owner label. */
import Docker from "dockerode";

const docker = new Docker();

/** Containers `owner` (an agent id, or a runtime's owner) started, running or not. */
export function containersOf(owner: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`skiff.owner=${owner}`] } });
}

/** Force-remove every container these owners started, whatever state a test left them in. */
export async function removeContainers(owners: Iterable<string>): Promise<void> {
  for (const owner of owners) {
    const left = await containersOf(owner).catch(() => []);
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
