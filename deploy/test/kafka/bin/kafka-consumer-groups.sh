#!/bin/sh
# As the official image's /opt/kafka/bin/kafka-consumer-groups.sh (stand-in of `make test-compose`).
exec java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "/opt/kafka/tools/*" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
