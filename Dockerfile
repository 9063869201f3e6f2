# Images of every bookstore service, each a static binary in an empty (`FROM scratch`) image, so
# that nothing here needs an image registry. The binaries are built on the host first:
#
#     scripts/docker build     # cargo build (static, release) into target/static, stages the
#                              # stripped binaries in target/docker/bin, builds every image
#
# One stage per service (`docker build --target orchestrator .`); docker-compose.yaml picks the
# stage with `build.target`. Every image also holds `queuectl`, whose `probe` subcommand is the
# healthcheck (the images have no shell and no curl) and which inspects the queue cluster:
#     docker exec <container> queuectl --nodes queue-1:50061,queue-2:50062,queue-3:50063 status
# Name resolution works without libc files: the binaries link glibc statically and read the
# /etc/hosts and /etc/resolv.conf that Docker writes into every container.
#
# Every service runs as the unprivileged user 10001 (group 10001; a numeric id needs no
# /etc/passwd). The folders a service writes, /data and /ledger, are volumes; the image makes
# them owned by that user, and a new named volume takes its folder's owner from the image.
# docker-compose.yaml also makes the root filesystem read-only and drops every capability.

FROM scratch AS base
ENV PATH=/usr/local/bin
COPY target/docker/bin/queuectl /usr/local/bin/queuectl
USER 10001:10001

FROM base AS queue-node
COPY target/docker/bin/queue-node /usr/local/bin/queue-node
COPY --chown=10001:10001 target/docker/volume/ /data/
VOLUME /data
ENV QUEUE_DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/queue-node"]

FROM base AS order-executor
COPY target/docker/bin/order-executor /usr/local/bin/order-executor
COPY --chown=10001:10001 target/docker/volume/ /ledger/
VOLUME /ledger
ENTRYPOINT ["/usr/local/bin/order-executor"]

FROM base AS fraud-detection
COPY target/docker/bin/fraud-detection /usr/local/bin/fraud-detection
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/fraud-detection"]

FROM base AS transaction-verification
COPY target/docker/bin/transaction-verification /usr/local/bin/transaction-verification
EXPOSE 50052
ENTRYPOINT ["/usr/local/bin/transaction-verification"]

FROM base AS suggestions
COPY target/docker/bin/suggestions /usr/local/bin/suggestions
EXPOSE 50053
ENTRYPOINT ["/usr/local/bin/suggestions"]

FROM base AS orchestrator
COPY target/docker/bin/orchestrator /usr/local/bin/orchestrator
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/orchestrator"]
