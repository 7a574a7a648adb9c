module qcstack/tools/healthcheck

go 1.26.0
