# syntax=docker/dockerfile:1
# A first working image; the Operations issue finishes it (admin port, health check, deploy files).

FROM node:26-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY lib lib
RUN npm ci --ignore-scripts && npm run build

FROM node:26-slim
ENV NODE_ENV=production
# tini as PID 1 forwards signals and reaps the grandchildren that backends leave behind.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist/lib dist/lib
COPY bin bin
COPY conf conf
COPY examples examples
USER node
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/multiplexer.js"]
CMD ["start", "--config", "conf/app.json"]
