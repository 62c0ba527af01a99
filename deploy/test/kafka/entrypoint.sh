#!/bin/bash
# The official apache/kafka image's contract: every KAFKA_<NAME> variable is the broker setting
# <name> (lower case, `_` -> `.`, `__` -> `_`, `___` -> `-`), CLUSTER_ID formats an empty log dir
# (KRaft), KAFKA_HEAP_OPTS sizes the JVM.
set -euo pipefail
config=/opt/kafka/config/server.properties
: >"$config"
while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS) continue ;;
        KAFKA_*) ;;
        *) continue ;;
    esac
    key=${name#KAFKA_}
    key=${key,,}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    key=${key//@/_}
    printf '%s=%s\n' "$key" "$value" >>"$config"
done < <(env)
: "${CLUSTER_ID:?CLUSTER_ID must be set}"
log_dirs=$(sed -n 's/^log\.dirs=//p' "$config")
if [ ! -f "${log_dirs%%,*}/meta.properties" ]; then
    java -Xmx256m -cp "/opt/kafka/libs/*" kafka.tools.StorageTool format --ignore-formatted \
        -t "$CLUSTER_ID" -c "$config"
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several JVM options
exec java ${KAFKA_HEAP_OPTS:--Xmx1g} -XX:+UseG1GC \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp "/opt/kafka/libs/*" kafka.Kafka "$config"
