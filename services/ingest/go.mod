module github.com/nhiwatch/nhiwatch/services/ingest

go 1.26
