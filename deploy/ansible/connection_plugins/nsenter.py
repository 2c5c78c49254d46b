# A connection to a Linux node that runs in its own namespaces on this machine (a systemd-nspawn
# node, as cri-migrate's end-to-end test boots them): `ansible_host` is the PID of the node's
# PID 1 as this machine sees it, and every command runs through `nsenter -t PID -a`. Used to test
# the role against real systemd nodes without ssh; on a real fleet use ssh as usual.
from __future__ import annotations

DOCUMENTATION = """
name: nsenter
short_description: run commands in a local node's namespaces (nsenter -t PID -a)
description:
  - Runs commands, and copies files, inside the namespaces of a process on this machine, such as
    the PID 1 of a systemd-nspawn container.
author: cri-migrate developers
options:
  remote_addr:
    description: the PID (on this machine) of the node's PID 1
    vars:
      - name: ansible_host
"""

import shlex
import subprocess

from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = "nsenter"
    has_pipelining = True

    def _pid(self):
        pid = str(self.get_option("remote_addr") or self._play_context.remote_addr)
        if not pid.isdigit():
            raise AnsibleError(f"nsenter: ansible_host must be a PID, not {pid!r}")
        return pid

    def _connect(self):
        self._connected = True
        return self

    def _nsenter(self, argv):
        return ["nsenter", "-t", self._pid(), "-a", "--"] + argv

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        p = subprocess.Popen(
            self._nsenter(["/bin/sh", "-c", cmd]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as f:
            p = subprocess.run(
                self._nsenter(["/bin/sh", "-c", f"cat > {shlex.quote(out_path)}"]),
                stdin=f,
                capture_output=True,
            )
        if p.returncode != 0:
            raise AnsibleError(f"nsenter: cannot write {out_path}: {p.stderr.decode(errors='replace')}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as f:
            p = subprocess.run(
                self._nsenter(["cat", in_path]), stdout=f, stderr=subprocess.PIPE
            )
        if p.returncode != 0:
            raise AnsibleError(f"nsenter: cannot read {in_path}: {p.stderr.decode(errors='replace')}")

    def close(self):
        self._connected = False
