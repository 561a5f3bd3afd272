module github.com/nhiwatch/nhiwatch/services/detect

go 1.26
