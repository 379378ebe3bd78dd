module github.com/codelab-app/infra/roles

go 1.26
