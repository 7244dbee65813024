# One image for every Skiff component:
#   docker run IMAGE api|gateway|scaler|agent|up [flags]
# deploy/compose.yaml builds it for a one-host trial; a fleet runs the same
# commands under systemd (deploy/systemd/, docs/operations.md).
FROM node:24-bookworm-slim

# iptables: the agent's --container-firewall. ca-certificates: rediss://.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/skiff
COPY package.json package-lock.json ./
# `npm install` honours package-lock.json (scripts/test.sh says why not
# `npm ci`); no dev tools in the image.
RUN npm install --omit=dev --no-audit --no-fund --loglevel=error \
 && npm cache clean --force

# What the commands run from source (Node strips the types).
COPY bin bin
COPY src src
COPY agent agent
COPY gateway gateway
COPY scaler scaler
COPY deploy deploy
COPY examples examples
COPY scripts/build-cli.ts scripts/build-cli.ts
# The CLI bundle, built now: bin/skiff.js would otherwise build it at the
# first start, into an image that may be read-only.
RUN node scripts/build-cli.ts

# The API, gateway and scaler run as this user; the agent needs root
# (Docker socket, workerd uids and cgroups: deploy/systemd/skiff-agent.service).
RUN useradd --system --uid 10001 --home-dir /var/lib/skiff --create-home skiff
USER skiff
ENTRYPOINT ["node", "/opt/skiff/bin/skiff.js"]
CMD ["--help"]
