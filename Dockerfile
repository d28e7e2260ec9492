# syntax=docker/dockerfile:1.7
#
# The reflex daemon image: the binary, the rule files and the config, nothing
# else. Build from the repository root:
#
#   docker build --platform linux/amd64 -t reflex:$(git rev-parse --short HEAD) .
#
# Rules are baked in, so a rule change is a new image (see
# infra/terraform/README.md, "Edit a rule and redeploy"). Deployment-specific
# values (queue URLs, trusted topic, region) come from the environment:
# REFLEX_QUEUE_URL, REFLEX_DLQ_URL, REFLEX_TRUSTED_TOPIC_ARNS, AWS_REGION.

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

# --- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates; no shell, no package manager.
# Pin it by digest (cc-debian12:nonroot@sha256:...) for reproducible images.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/reflex /usr/local/bin/reflex
# Owned by root and not writable by the daemon's user: the daemon reads its
# rules, it never changes them. These are the rules `reflex check` passed.
COPY --from=build --chown=0:0 /src/rules/ /etc/reflex/rules/
COPY --chown=0:0 infra/docker/reflex.toml /etc/reflex/reflex.toml

# 65532 is distroless's "nonroot"; the ECS task definition sets the same
# user, so the task stays non-root even if this line changes.
USER 65532:65532
ENTRYPOINT ["reflex", "run", "--config", "/etc/reflex/reflex.toml"]
