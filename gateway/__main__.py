"""`python3 -m gateway`: the gateway image's entry point."""

from gateway.server import main

main()
