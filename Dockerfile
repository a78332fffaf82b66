# The appliance in a container.  The same install script CI uses provides the
# Debian packages.  .dockerignore keeps .git, virtualenvs and any secrets a
# development run left in etc/var out of the build context.
FROM debian:bookworm-slim

COPY scripts/install-system-deps /usr/local/sbin/install-system-deps
RUN install-system-deps runtime && rm -rf /var/lib/apt/lists/*

# The appliance runs as this system user, never as root; its config and
# state directories are its own (mode 0700: they hold the admin key, TLS and
# CA keys and state.db with the upstream CA account keys).
RUN groupadd --system acme-appliance \
    && useradd --system --gid acme-appliance --home-dir /var/lib/acme-appliance \
       --no-create-home --shell /usr/sbin/nologin acme-appliance

WORKDIR /src
COPY . /src
RUN python3 -m venv /opt/acme-appliance \
    && /opt/acme-appliance/bin/pip install --no-cache-dir . \
    && install -d -m 0700 -o acme-appliance -g acme-appliance /etc/acme-appliance /var/lib/acme-appliance \
    && install -m 0600 -o acme-appliance -g acme-appliance etc/production.example.toml \
       /etc/acme-appliance/acme-appliance.example.toml \
    && rm -rf /src

ENV PATH=/opt/acme-appliance/bin:$PATH
# Where the health check asks: the admin listener's key-less liveness path
# (the example config binds admin to 127.0.0.1:8081 inside the container).
ENV ACME_APPLIANCE_LIVEZ=http://127.0.0.1:8081/livez
WORKDIR /var/lib/acme-appliance
USER acme-appliance:acme-appliance
VOLUME ["/etc/acme-appliance", "/var/lib/acme-appliance"]
# ACME (TLS), the file proxy and the DCV DNS server.  The admin API (8081) is
# not exposed: the example binds it to loopback; publish it only behind
# something that adds TLS, after changing [admin] listen.
EXPOSE 443 80 53/udp 53/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['ACME_APPLIANCE_LIVEZ'], timeout=4)"]
CMD ["twistd", "-n", "--pidfile=", "acme-appliance", "--config", "/etc/acme-appliance/acme-appliance.toml"]
