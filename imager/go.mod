module github.com/codelab-app/infra/imager

go 1.26

require (
	github.com/codelab-app/infra/internal v0.0.0
	github.com/digitalocean/godo v1.237.0
	github.com/spf13/cobra v1.10.2
	golang.org/x/oauth2 v0.27.0
)

require (
	github.com/google/go-querystring v1.1.0 // indirect
	github.com/hashicorp/go-cleanhttp v0.5.2 // indirect
	github.com/hashicorp/go-retryablehttp v0.7.7 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	golang.org/x/crypto v0.40.0 // indirect
	golang.org/x/sys v0.34.0 // indirect
	golang.org/x/time v0.6.0 // indirect
)

replace github.com/codelab-app/infra/internal => ../internal

require github.com/codelab-app/infra/tools v0.0.0-00010101000000-000000000000

replace github.com/codelab-app/infra/tools => ../tools

// The tests run the local DigitalOcean in process (e2e/localdotest).
require github.com/codelab-app/infra/e2e v0.0.0

replace (
	github.com/codelab-app/infra/e2e => ../e2e
	github.com/codelab-app/infra/roles => ../roles
)
