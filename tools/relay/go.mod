module qcstack/tools/relay

go 1.26.0
