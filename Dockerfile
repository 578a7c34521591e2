# lead-notifier container image. The build stage compiles src/ to dist/ (`npm run build`), which
# bin/lead-notifier.js runs (no type stripping at run time); the image holds bin/, dist/, src/,
# config/ and the production dependencies only.
#
#   docker build -t lead-notifier .                  # the runtime image
#   docker build --target check .                    # optional: typecheck + lint on the full install
#   docker run -v $PWD/deploy/compose:/config -v notifier-data:/data -p 8080:8080 lead-notifier
#
# Config: /config/notifier.yaml (LEAD_NOTIFIER_CONFIG); templates beside it, as paths in the config
# are relative to the config file. State: the SQLite file in the /data volume
# (`store: sqlite:/data/notifier.db`), or `store: postgres://...` for several replicas.

ARG NODE_IMAGE=node:24-slim

# --- deps: the full, lockfile-exact install (dev tooling included); used by the check target
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` builds dist/, which needs the sources (the build stage does it)
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund

# --- build: src/ -> dist/
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs ./scripts/
COPY src/ ./src/
RUN npm run build

# --- check (opt-in: --target check): the same typecheck and lint CI runs, inside the image's Node
FROM deps AS check
COPY . .
RUN npm run typecheck && npm run lint

# --- prod-deps: production dependencies only, from the same lockfile. --ignore-scripts: no
# runtime dependency needs an install script (none is native: SQLite is node:sqlite). Then drop
# what Node never loads at run time (~45 MB): source maps, type declarations, and jsforce's
# browser bundles (dist/) and TypeScript sources (src/); jsforce's main is lib/.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete \
 && rm -rf node_modules/jsforce/dist node_modules/jsforce/src

# --- runtime
FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="lead-notifier" \
      org.opencontainers.image.description="Watches a Salesforce org for new records and sends each one a Handlebars email over SMTP, exactly once." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/node:24-slim"

ENV NODE_ENV=production \
    LEAD_NOTIFIER_CONFIG=/config/notifier.yaml \
    LEAD_NOTIFIER_HTTP_PORT=8080

WORKDIR /app
# Owned by root and not writable by the runtime user: the code cannot be changed from inside.
COPY --from=prod-deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin/ ./bin/
COPY src/ ./src/
COPY --from=build /app/dist/ ./dist/
COPY config/ ./config/

# /data holds the SQLite file, its WAL and the single-writer lock file. Created here owned by
# node, so a fresh named volume inherits that ownership. /config is mounted read-only.
RUN mkdir -p /data /config && chown node:node /data
VOLUME ["/data"]

# Numeric (= node:node), so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 1000:1000
EXPOSE 8080

# Liveness with node itself (no curl in the image). LEAD_NOTIFIER_HTTP_PORT must match the
# config's http.port; the compose and Kubernetes configs read their http.port from it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.LEAD_NOTIFIER_HTTP_PORT||8080)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# node is PID 1 and handles SIGTERM itself: it stops polling, drains in-flight sends within
# shutdownTimeout (20 s) and exits 0; a second signal exits 1. It starts no child processes, so
# there are no zombies to reap and no init (tini) is needed.
STOPSIGNAL SIGTERM
# V8 sizes its heap from the host's memory and grows it lazily; a cap keeps the resident size near
# what the worker needs (bench/backlog-rss.ts measures it with these same flags).
ENV NODE_OPTIONS="--max-old-space-size=48 --max-semi-space-size=2"
ENTRYPOINT ["node", "bin/lead-notifier.js"]
CMD ["run"]
