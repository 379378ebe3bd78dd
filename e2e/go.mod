module github.com/codelab-app/infra/e2e

go 1.26
