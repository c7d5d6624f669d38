# Multi-stage image for any Switchboard service: `--build-arg SERVICE=delivery` (or a gateway).
# Build stage compiles the workspace with tsc; the runtime stage holds only the service's
# production dependencies and compiled JavaScript, and runs as the unprivileged `node` user.
FROM node:20-bookworm-slim AS build
ARG SERVICE=delivery
ENV TURBO_TELEMETRY_DISABLED=1
RUN npm install -g pnpm@12.4.2
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile \
 && pnpm exec turbo run build --filter "@switchboard/${SERVICE}..." \
 && pnpm --filter "@switchboard/${SERVICE}" deploy --prod --legacy /out

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /out /app
USER node
CMD ["node", "dist/main.js"]
