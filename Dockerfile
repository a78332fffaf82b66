# The appliance in a container.  The same install script CI uses provides the
# Debian packages.
FROM debian:bookworm-slim

COPY scripts/install-system-deps /usr/local/sbin/install-system-deps
RUN install-system-deps runtime && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . /src
RUN python3 -m venv /opt/acme-appliance \
    && /opt/acme-appliance/bin/pip install --no-cache-dir . \
    && mkdir -p /etc/acme-appliance /var/lib/acme-appliance \
    && cp etc/production.example.toml /etc/acme-appliance/acme-appliance.example.toml

ENV PATH=/opt/acme-appliance/bin:$PATH
VOLUME ["/etc/acme-appliance", "/var/lib/acme-appliance"]
EXPOSE 443 53/udp 53/tcp 80 8081
CMD ["twistd", "-n", "--pidfile=", "acme-appliance", "--config", "/etc/acme-appliance/acme-appliance.toml"]
