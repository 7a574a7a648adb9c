"""Falco rules for the stack, checked and evaluated here where no Falco binary runs."""
