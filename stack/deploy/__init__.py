"""pyinfra deploy of qcstack to a Debian 12 VM over SSH, with the VM's own hardening (HOST-xx)."""
