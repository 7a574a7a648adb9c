"""The Falco alert responder: records every alert, and engages the gateway's lockdown (DET-08)."""
