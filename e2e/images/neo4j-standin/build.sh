#!/usr/bin/env bash
# Builds the neo4j stand-in image: build.sh [TAG]
# (default codelab-local/neo4j-standin:latest). Used by the backup
# integration tests; production uses the official neo4j image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-codelab-local/neo4j-standin:latest}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/neo4j" .)
cp "$here/Dockerfile" "$ctx/"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
