# dcounter image: one statically linked binary on an empty base, so it builds
# without pulling any image. Build it with `make image` (which compiles the
# binary for the target architecture into bin/ first), or for several
# platforms at once with `make image-multiarch`.
FROM scratch
# Set by BuildKit from --platform (amd64, arm64, ...); `make image` passes
# it too, for builders that do not.
ARG TARGETARCH
COPY bin/dcounter-linux-${TARGETARCH} /dcounter
# An empty /data owned by the unprivileged user, so named volumes mounted
# there start writable.
COPY --chown=65532:65532 deploy/rootfs/data /data
# Likewise /secrets, where `dcounter secrets init` writes the cluster key and
# client tokens (docker-compose.yml); the files in it are owner-only.
COPY --chown=65532:65532 deploy/rootfs/secrets /secrets
USER 65532:65532
VOLUME ["/data"]
EXPOSE 7946 8080 8000 8500 6379
ENTRYPOINT ["/dcounter"]
CMD ["--help"]
