module github.com/nhiwatch/nhiwatch/cmd/nhiwatch

go 1.26
