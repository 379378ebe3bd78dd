module github.com/codelab-app/infra/roles

go 1.26

require github.com/codelab-app/infra/tools v0.0.0-00010101000000-000000000000

replace github.com/codelab-app/infra/tools => ../tools
