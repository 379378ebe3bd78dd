service {
  name = "web"
  port = 3001
  tags = ["[[ .Env ]]", "[[ .Version ]]"]
  meta = {
    env = "[[ .Env ]]"
  }
  check {
    id       = "web-http"
    name     = "web HTTP /healthz"
    http     = "http://127.0.0.1:3001/healthz"
    interval = "5s"
    timeout  = "3s"
  }
}
