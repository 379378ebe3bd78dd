# The neo4j droplet's monitor (codelab-monitor.service): Prometheus finds
# /metrics through this service. The backup-age check lives here, not on
# the neo4j service, so that a stale backup raises an alert without taking
# the database out of the catalog its clients read.
service {
  name = "neo4j-monitor"
  port = 9187
  tags = ["[[ .Env ]]", "prometheus"]
  meta = {
    env          = "[[ .Env ]]"
    metrics_path = "/metrics"
  }
  checks = [
    {
      id       = "neo4j-monitor-metrics"
      name     = "neo4j monitor /metrics"
      http     = "http://[[ .PrivateIP ]]:9187/metrics"
      interval = "30s"
      timeout  = "10s"
    },
    {
      id       = "neo4j-backup-age"
      name     = "neo4j newest verified backup age"
      notes    = "Critical when the newest verified, uploaded backup is older than maxAge (codelab/[[ .Env ]]/backup/max_age, default 26h) or there is none; the output names the last failed step."
      http     = "http://[[ .PrivateIP ]]:9187/health/backup"
      interval = "1m"
      timeout  = "10s"
    }
  ]
}
