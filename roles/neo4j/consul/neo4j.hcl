service {
  name = "neo4j"
  port = 7687
  tags = ["[[ .Env ]]"]
  meta = {
    env       = "[[ .Env ]]"
    http_port = "7474"
  }
  checks = [
    {
      id       = "neo4j-bolt"
      name     = "neo4j Bolt port"
      tcp      = "[[ .PrivateIP ]]:7687"
      interval = "10s"
      timeout  = "3s"
    },
    {
      id       = "neo4j-http"
      name     = "neo4j HTTP"
      http     = "http://[[ .PrivateIP ]]:7474/"
      interval = "10s"
      timeout  = "3s"
    }
  ]
}
