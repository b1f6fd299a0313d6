# netship image: cni-plugins. COPY-only: every binary comes verified from netship's fetch tree
# (the build context, laid out COMPONENT/VERSION/ARCH/), picked by TARGETARCH; nothing is
# downloaded here. No "# syntax=" line: that would pull a frontend image.
#
# The runtime stage is chosen by ONE build argument, BASE_IMAGE:
#   - default "runtime-alpine": the Alpine stage below, with the OS packages the add-on
#     needs at run time (needs Docker Hub and, for a foreign arch, qemu for its RUN step);
#   - any image reference (netship build --base-image REF): a prepared multi-arch base,
#     e.g. for air-gapped builders and tests; then no RUN step executes for the target arch.
ARG BASE_IMAGE=runtime-alpine

# Alpine 3.23 pinned by the digest of its multi-arch index (as recorded by a public
# Renovate digest update of docker.io/library/alpine:3.23); refresh it with the tag.
FROM docker.io/library/alpine:3.23@sha256:51183f2cfa6320055da30872f211093f9ff1d3cf06f39a0bdb212314c5dc7375 AS runtime-alpine
# no OS packages needed beyond the base (sh, mkdir, cp, mv)

FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG CNI_PLUGINS_VERSION
COPY cni-plugins/${CNI_PLUGINS_VERSION}/${TARGETARCH}/ /opt/cni/bin/
ARG OCI_SOURCE
ARG OCI_VERSION
ARG OCI_REVISION
ARG OCI_CREATED
LABEL org.opencontainers.image.title="cni-plugins" \
      org.opencontainers.image.source="${OCI_SOURCE}" \
      org.opencontainers.image.version="${OCI_VERSION}" \
      org.opencontainers.image.revision="${OCI_REVISION}" \
      org.opencontainers.image.created="${OCI_CREATED}"
ENTRYPOINT ["/bin/sh", "-c", "set -e; mkdir -p /host/opt/cni/bin; for f in /opt/cni/bin/*; do [ -f \"$f\" ] && [ -x \"$f\" ] || continue; n=$(basename \"$f\"); cp -f \"$f\" \"/host/opt/cni/bin/.$n.tmp\"; mv -f \"/host/opt/cni/bin/.$n.tmp\" \"/host/opt/cni/bin/$n\"; done"]
