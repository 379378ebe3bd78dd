service {
  name = "api"
  port = 3000
  tags = ["[[ .Env ]]", "[[ .Version ]]"]
  meta = {
    env = "[[ .Env ]]"
  }
  check {
    id       = "api-http"
    name     = "api HTTP /healthz"
    http     = "http://127.0.0.1:3000/healthz"
    interval = "5s"
    timeout  = "3s"
  }
}
