# syntax=docker/dockerfile:1.7
#
# The reflex daemon image: the binary, the rule files and the config, nothing
# else. Build from the repository root:
#
#   docker build --platform linux/amd64 -t reflex:$(git rev-parse --short HEAD) .
#
# Rules are baked in, so a rule change is a new image (see
# infra/terraform/README.md, "Edit a rule and redeploy"). Deployment-specific
# values come from the environment: REFLEX_QUEUE_URL, REFLEX_DLQ_URL,
# REFLEX_TRUSTED_TOPIC_ARNS, AWS_REGION, the timing (REFLEX_VISIBILITY_TIMEOUT,
# REFLEX_HEARTBEAT, REFLEX_SHUTDOWN_GRACE) and the state store
# (REFLEX_STATE_BACKEND, REFLEX_STATE_PATH or REFLEX_STATE_TABLE); the
# Terraform module sets them all.

ARG RUST_VERSION=1.95

# --- build ------------------------------------------------------------------
# bookworm, to match the glibc of the distroless runtime below.
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin reflex \
 && install -D -m 0755 target/release/reflex /out/reflex

# A rule file that does not load fails the build, not the deployment.
COPY rules ./rules
RUN /out/reflex check /src/rules

# The local state store's directory, owned by the daemon's user. The runtime
# image has no shell to create it, so it is made here and copied.
RUN install -d -m 0700 -o 65532 -g 65532 /out/state

# --- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates; no shell, no package manager.
# Pin it by digest (cc-debian12:nonroot@sha256:...) for reproducible images.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/reflex /usr/local/bin/reflex
# Owned by root and not writable by the daemon's user: the daemon reads its
# rules, it never changes them. These are the rules `reflex check` passed.
COPY --from=build --chown=0:0 /src/rules/ /etc/reflex/rules/
COPY --chown=0:0 infra/docker/reflex.toml /etc/reflex/reflex.toml

# The local state store writes here (REFLEX_STATE_PATH=/var/lib/reflex/...).
# A volume, so the root filesystem can stay read-only; ECS copies this empty,
# nonroot-owned directory into the task's volume.
COPY --from=build --chown=65532:65532 /out/state /var/lib/reflex
VOLUME ["/var/lib/reflex"]

# 65532 is distroless's "nonroot"; the ECS task definition sets the same
# user, so the task stays non-root even if this line changes.
USER 65532:65532
# /readyz on loopback, checked by the binary itself (no shell, no curl). ECS
# ignores this and uses the task definition's health check, which runs the
# same command.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/reflex", "health"]
ENTRYPOINT ["reflex", "run", "--config", "/etc/reflex/reflex.toml"]
