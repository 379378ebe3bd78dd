#!/usr/bin/env bash
# make demo, render-path edition: runs codelab-agent's render path for a
# sample cluster (three Consul servers, one of them the neo4j droplet, and an
# api and a web client) from sample metadata and one-line user_data, validated
# by the real consul binary, into .cache/demo/<droplet>/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/.cache/demo
agent=$repo/bin/codelab-agent
gossip=$("$(command -v consul)" keygen)
rm -rf "$out"
mkdir -p "$out"

droplet() { # name id ip user_data
  local name=$1 id=$2 ip=$3 line=$4
  mkdir -p "$out/$name"
  cat > "$out/$name/metadata.json" <<JSON
{"droplet_id": $id, "hostname": "$name", "region": "nyc3", "tags": ["codelab"],
 "interfaces": {"private": [{"ipv4": {"ip_address": "$ip"}}],
                "public": [{"ipv4": {"ip_address": "203.0.113.$((id % 250))"}}]},
 "user_data": "$line"}
JSON
  echo "==> $name ($ip): $("$agent" userdata --check <<<"$line" | sed 's/^ok: //')"
  "$agent" render --root "$out/$name/root" --metadata-file "$out/$name/metadata.json" 2>&1 | sed 's/^/    /'
}

servers=10.132.0.2,10.132.0.3,10.132.0.4
droplet neo4j-1  101 10.132.0.2 "#codelab v1 role=neo4j consul=server bootstrap=3 join=$servers gossip=$gossip"
droplet consul-2 102 10.132.0.3 "#codelab v1 role=landing consul=server bootstrap=3 join=$servers gossip=$gossip"
droplet consul-3 103 10.132.0.4 "#codelab v1 role=sites consul=server bootstrap=3 join=$servers gossip=$gossip"
droplet api-1    104 10.132.0.5 "#codelab v1 role=api join=$servers version=1.4.2 gossip=$gossip"
droplet web-1    105 10.132.0.6 "#codelab v1 role=web join=$servers version=1.4.2 gossip=$gossip"

echo
echo "Rendered and validated by $(consul version | head -1) into $out/<droplet>/root."
echo "The api droplet's Consul config:"
sed 's/^/    /' "$out/api-1/root/etc/consul.d/consul.hcl"
