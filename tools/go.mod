module github.com/codelab-app/infra/tools

go 1.26
