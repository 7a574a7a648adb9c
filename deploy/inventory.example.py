"""Example pyinfra inventory for `bin/qcstack deploy`: copy it, name your VM, check its host key.

The deploy logs in as root with a key (HOST-01 leaves no password login), and checks the VM's
host key against your known_hosts: add it there first, from the VM's console or its provider.
"""

hosts = [
    (
        "qcstack-vm.example.internal",
        {
            "ssh_user": "root",
            "ssh_key": "~/.ssh/id_ed25519",
            "ssh_known_hosts_file": "~/.ssh/known_hosts",
            "ssh_strict_host_key_checking": "yes",
        },
    ),
]
