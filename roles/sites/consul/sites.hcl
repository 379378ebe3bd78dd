service {
  name = "sites"
  port = 3003
  tags = ["[[ .Env ]]", "[[ .Version ]]"]
  meta = {
    env = "[[ .Env ]]"
  }
  check {
    id       = "sites-http"
    name     = "sites HTTP /healthz"
    http     = "http://127.0.0.1:3003/healthz"
    interval = "5s"
    timeout  = "3s"
  }
}
