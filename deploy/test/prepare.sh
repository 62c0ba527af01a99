#!/usr/bin/env bash
# Prepares `make test-compose` on a Debian machine without an image registry, as root:
#   1. a Docker engine (Debian's docker.io, dockerd on the vfs storage driver) and the compose v2
#      plugin (built once from the Go module proxy), each installed only when missing;
#   2. stand-ins for the third-party images the compose file names, built on a Debian root
#      filesystem (debootstrap, cached outside the clone) and tagged as the compose file names
#      them; an image that is already there and is not a stand-in (the official one) is used as is;
#   3. the project image, userops:local, from the real Dockerfile.
# Every step is skipped when its result is already there, so a second run takes seconds.
# Users never need this: they pull the official images (README, "Deploy with docker compose").
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/deploy/test
cache=${USEROPS_COMPOSE_TEST_CACHE:-/var/cache/userops-compose-test}
mirror=${USEROPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
compose_version=v2.32.4
plugin=/usr/local/lib/docker/cli-plugins/docker-compose
base=userops-standin/debian:bookworm

step_start=$SECONDS
say() { printf 'test-compose: [%3ss] %s\n' "$((SECONDS - step_start))" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "installing and starting a Docker engine needs root"
mkdir -p "$cache"

# --- 1. engine -------------------------------------------------------------------------------
missing=()
{ command -v dockerd >/dev/null && [ -x /usr/bin/docker ]; } || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian)"
    apt-get update -qq || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap iptables >/dev/null || die "apt-get install docker.io debootstrap iptables"
fi
# Debian's client talks BuildKit without the buildx plugin; a newer `docker` earlier on PATH may not.
docker=/usr/bin/docker

if [ ! -x "$plugin" ]; then
    command -v go >/dev/null || die "building the compose plugin needs Go (the Go module proxy)"
    say "building docker compose $compose_version from the Go module proxy (a few minutes, once)"
    GOBIN=$cache/go-bin go install -ldflags "-X github.com/docker/compose/v2/internal.Version=$compose_version" \
        "github.com/docker/compose/v2/cmd@$compose_version" \
        || die "go install github.com/docker/compose/v2/cmd@$compose_version"
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$cache/go-bin/cmd" "$plugin"
fi

start_dockerd() {  # start_dockerd DRIVER: true once the engine answers
    say "starting dockerd (storage driver $1; log /var/log/userops-dockerd.log)"
    nohup dockerd --storage-driver="$1" >>/var/log/userops-dockerd.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 120); do
        "$docker" info >/dev/null 2>&1 && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
# overlay2 where the kernel and file system allow it (containers start at once); else vfs, which
# works everywhere but copies a whole image for every container.
if ! "$docker" info >/dev/null 2>&1; then
    if ! start_dockerd overlay2; then
        { kill "$dockerd_pid" && wait "$dockerd_pid"; } 2>/dev/null || true
        start_dockerd vfs || { tail -n 20 /var/log/userops-dockerd.log >&2; die "dockerd did not start"; }
    fi
fi
"$docker" compose version >/dev/null || die "docker compose plugin not usable"
# BuildKit's cache outlives a change of storage driver but its layers do not: drop it then.
driver=$("$docker" info --format '{{.Driver}}')
if [ "$(cat "$cache/driver" 2>/dev/null)" != "$driver" ]; then
    "$docker" builder prune -af >/dev/null
    echo "$driver" >"$cache/driver"
fi
say "engine ready: $("$docker" info --format 'engine {{.ServerVersion}}, storage {{.Driver}}'), compose $("$docker" compose version --short)"

# --- 2. stand-ins ----------------------------------------------------------------------------
has_image() { "$docker" image inspect "$1" >/dev/null 2>&1; }
is_standin() { [ -n "$("$docker" image inspect -f '{{index .Config.Labels "io.userops.standin"}}' "$1" 2>/dev/null)" ]; }

if ! has_image "$base"; then
    if [ ! -f "$cache/rootfs/.complete" ]; then
        say "debootstrap bookworm (minbase) into $cache/rootfs (once)"
        rm -rf "$cache/rootfs" "$cache/rootfs.tmp"
        debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 \
            || { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap (log: $cache/debootstrap.log)"; }
        # Slim, as Debian's own -slim images: no documentation, manual pages or translations,
        # now or from the packages the stand-ins add (each container on vfs copies its image).
        mkdir -p "$cache/rootfs.tmp/etc/dpkg/dpkg.cfg.d"
        printf 'path-exclude=/usr/share/%s/*\n' doc man info locale \
            >"$cache/rootfs.tmp/etc/dpkg/dpkg.cfg.d/userops-slim"
        rm -rf "$cache/rootfs.tmp/var/cache/apt/archives"/*.deb "$cache/rootfs.tmp/var/lib/apt/lists"/* \
            "$cache/rootfs.tmp/usr/share"/{doc,man,info,locale}/*
        mv "$cache/rootfs.tmp" "$cache/rootfs"
        touch "$cache/rootfs/.complete"
    fi
    say "importing the root filesystem as $base"
    tar -C "$cache/rootfs" --exclude=./.complete -c . | "$docker" import - "$base" >/dev/null
fi

logs=$cache/logs
mkdir -p "$logs"
build() {  # build TAG CONTEXT [DOCKERFILE]: a stand-in, unless the real image is there
    local tag=$1 context=$2 dockerfile=${3:-$2/Dockerfile} log=$logs/${1//[\/:]/_}.log
    if has_image "$tag" && ! is_standin "$tag"; then
        say "$tag: using the image that is there (not a stand-in)"
        return
    fi
    DOCKER_BUILDKIT=1 "$docker" build --progress=plain -t "$tag" -f "$dockerfile" "$context" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "building the stand-in $tag (log: $log)"; }
    say "$tag: built"
}

kafka_ctx=$cache/context/kafka
if [ ! -f "$kafka_ctx/.jars" ]; then
    say "fetching the Kafka jars with Maven (scripts/kafka/pom.xml and the tools)"
    command -v mvn >/dev/null || die "fetching Kafka needs Maven"
    rm -rf "$kafka_ctx"
    mkdir -p "$kafka_ctx"
    for pom in scripts/kafka/pom.xml:libs "$here/kafka/pom.xml":tools; do
        mvn -B -q -f "${pom%:*}" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$kafka_ctx/${pom##*:}" >"$logs/maven.log" 2>&1 \
            || { tail -n 30 "$logs/maven.log" >&2; die "Maven: ${pom%:*}"; }
    done
    touch "$kafka_ctx/.jars"
fi
rm -rf "$kafka_ctx/bin"
cp -r "$here/kafka/bin" "$here/kafka/entrypoint.sh" "$here/kafka/log4j2.properties" "$kafka_ctx/"
python_ctx=$cache/context/python
mkdir -p "$python_ctx"
cp /etc/ssl/certs/ca-certificates.crt "$python_ctx/"

# The stand-ins build side by side (most of their time is apt and the vfs driver's copies); the
# project image starts as soon as its base is there.
say "building the stand-ins (logs: $logs)"
build postgres:17 "$here/postgres" & pg=$!
build prom/prometheus:v3.5.0 "$here/prometheus" & prom=$!
build apache/kafka:4.1.1 "$kafka_ctx" "$here/kafka/Dockerfile" & kafka=$!
build python:3.11-slim "$python_ctx" "$here/python/Dockerfile"

# --- 3. the project image --------------------------------------------------------------------
DOCKER_BUILDKIT=1 "$docker" build --progress=plain -t userops:local "$repo" >"$logs/userops.log" 2>&1 \
    || { tail -n 30 "$logs/userops.log" >&2; die "docker build of the project image (log: $logs/userops.log)"; }
say "userops:local: built from the Dockerfile"
for job in $pg $prom $kafka; do
    wait "$job" || exit 1
done
say "ready"
say "Grafana is left out of this test: it has no Debian package to build a stand-in from (its provisioning is checked by tests/unit/test_deploy.py)"
