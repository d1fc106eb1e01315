# syntax=docker/dockerfile:1
# multiplexer: build with dev dependencies, run with production dependencies only.
#   docker build -t multiplexer .
#   docker run -p 3000:3000 multiplexer
#   docker run -p 3000:3000 -v "$PWD/conf:/app/conf:ro" multiplexer      # your own conf/app.json
# The runtime stage's contract (production install, CMD serves, SIGTERM exits 0, nothing left
# behind) is checked in CI by .ci/runtime-stage-check, since CI has no Docker engine.

FROM node:26-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY lib lib
RUN npm ci --ignore-scripts && npm run build

FROM node:26-slim
# No MULTIPLEXER_STATE_DIR: the default, /tmp/multiplexer-<uid>/<config name>-<hash>, is a directory
# the user `node` creates and owns, off the config mount (which may be read-only). A fixed
# /tmp/multiplexer was refused by the state directory's check: its parent /tmp belongs to root and
# anyone may write there. .ci/runtime-stage-check runs this stage as uid 1000 with this file's ENV.
ENV NODE_ENV=production
# tini as PID 1 forwards signals to the primary and reaps the grandchildren backends leave behind.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist/lib dist/lib
# The dashboard's page, served as it is by the admin API.
COPY lib/admin/public lib/admin/public
COPY bin bin
COPY conf conf
COPY examples examples
USER node
# 3000: the public port (http_port). 3001: the admin API (admin_port; loopback in conf/app.json).
EXPOSE 3000 3001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3001/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=2", "bin/multiplexer.js"]
CMD ["start", "--config", "conf/app.json"]
