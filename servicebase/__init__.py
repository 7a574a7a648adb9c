"""What every qcstack service of ours shares: the hash-chained audit log, spans, secret files."""
