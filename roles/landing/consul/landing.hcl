service {
  name = "landing"
  port = 3002
  tags = ["[[ .Env ]]", "[[ .Version ]]"]
  meta = {
    env = "[[ .Env ]]"
  }
  check {
    id       = "landing-http"
    name     = "landing HTTP /healthz"
    http     = "http://127.0.0.1:3002/healthz"
    interval = "5s"
    timeout  = "3s"
  }
}
