module github.com/nhiwatch/nhiwatch/services/normalize

go 1.26
