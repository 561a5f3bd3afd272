module github.com/nhiwatch/nhiwatch/services/notify

go 1.26
