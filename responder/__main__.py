"""`python3 -m responder`: starts the responder."""

from responder.server import main

main()
