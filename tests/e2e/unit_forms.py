#!/usr/bin/env python3
"""Issue 33: cri-migrate's unit model proven by systemd itself.

    unit_forms.py NODE_ROOT NODE_PID

For each form in CASES, the kubelet's unit (and its drop-ins, its environment files) is laid
into a running systemd node with `ExecStart=` pointing at a recorder (tests/e2e/argv-dump.c,
at /usr/local/bin/argv-dump in the node) that writes the argv it was given. systemd runs it;
then `cri-migrate inspect --output json` gives the model's argv for the same files. The two must
be equal, word for word. The node's own kubelet unit files are put back at the end.

Prints `ok`/`FAIL` per case and exits 1 if any failed.
"""
import json
import os
import shutil
import subprocess
import sys

REC = "/usr/local/bin/argv-dump"
UNIT = "/etc/systemd/system/kubelet.service"
DROPINS = "/etc/systemd/system/kubelet.service.d"


def unit(exec_start, extra=""):
    return f"[Unit]\nDescription=argv recorder\n\n[Service]\nType=oneshot\n{extra}ExecStart={exec_start}\n"


# name -> {node path: text}; the unit is always /etc/systemd/system/kubelet.service.
CASES = {
    "plain words, quotes and escapes": {
        UNIT: unit(REC + r""" a "b c" 'd e' "f\"g" 'h\'i' j\tk "l\\m" """),
    },
    "$VAR split at whitespace": {
        UNIT: unit(REC + " $A x", 'Environment="A=one  two\tthree"\n'),
    },
    '"$VAR" quoted alone: still split': {
        UNIT: unit(REC + ' "$A" x', 'Environment="A=one  two three"\n'),
    },
    "${VAR} and \"${VAR}\" one word, inside a word": {
        UNIT: unit(REC + ' ${A} "${A}" pre${A}post --flag=${A}', 'Environment="A=one  two"\n'),
    },
    "unset variables": {
        UNIT: unit(REC + " a $NOPE ${NOPE} b${NOPE}c"),
    },
    "$$ is a dollar": {
        UNIT: unit(REC + " $$ $$A a$$b ${A}$$", 'Environment=A=x\n'),
    },
    "%% and specifiers": {
        UNIT: unit(REC + " %% 100%% %n %N %p %i %t %E a%%b"),
    },
    "continued lines": {
        UNIT: "[Unit]\nDescription=argv recorder\n\n[Service]\nType=oneshot\n"
        f"ExecStart={REC} a \\\n    b \\\n  --c=d \\\n    e\n",
    },
    "environment file: quoting, escapes, comments, export, empty values": {
        UNIT: unit(
            REC + " ${A} ${B} ${C} ${D} ${E} ${F} ${G} ${H} ${I} $B $E",
            "EnvironmentFile=/etc/default/kubelet\n",
        ),
        "/etc/default/kubelet": "# a comment\n; another\nA=plain\nB=\"double quoted  spaces\"\n"
        "C='single quoted'\nD=\"esc \\\"q\\\" \\\\ back\"\nE=unquoted with  spaces   \n"
        "export F=exported\nG=\nH=\"\"\n  I = spaced \n",
    },
    "environment file: a value continued over lines": {
        UNIT: unit(REC + " $ARGS", "EnvironmentFile=/etc/default/kubelet\n"),
        "/etc/default/kubelet": "ARGS=\"--a=1 \\\n--b=2 \\\n--c=3\"\n",
    },
    "an optional file that is missing; Environment= beside it": {
        UNIT: unit(REC + " $A", "Environment=A=from-unit\nEnvironmentFile=-/etc/default/nope\n"),
    },
    "files and drop-ins overriding each other": {
        UNIT: unit(
            REC + " ${A} ${B} ${C}",
            "Environment=A=unit B=unit C=unit\nEnvironmentFile=-/etc/default/one\n",
        ),
        DROPINS + "/10-a.conf": "[Service]\nEnvironment=A=dropin10 C=dropin10\n",
        DROPINS + "/20-b.conf": "[Service]\nEnvironmentFile=/etc/default/two\n",
        "/etc/default/one": "A=one\nB=one\n",
        "/etc/default/two": "B=two\n",
    },
    "ExecStart= reset in a drop-in": {
        UNIT: unit(REC + " from-unit"),
        DROPINS + "/10-reset.conf": f"[Service]\nExecStart=\nExecStart={REC} from-dropin $A\nEnvironment=A=x\n",
    },
    "Environment=: C escapes and specifiers at load": {
        UNIT: unit(REC + " ${A} ${B} $A", 'Environment="A=x\\ty  z" B=100%%\\x41\n'),
    },
    "$VAR split as systemd splits it: quotes and backslashes in the value": {
        UNIT: unit(REC + " $A ${A} $B ${B}", "EnvironmentFile=/etc/default/kubelet\n"),
        "/etc/default/kubelet": "A=one \"two three\" 'fo\\o' x\\ y\nB=\"x\\ty 'q r'\"\n",
    },
    "environment file: quoted parts, text after a quote, no comments after a value": {
        UNIT: unit(REC + " ${A} ${B} ${C} ${D} ${E}", "EnvironmentFile=/etc/default/kubelet\n"),
        "/etc/default/kubelet": "A='a'b\"c d\"\nB=\"x\" # c\nC=foo # not a comment\nD=  \\ lead\nE=\"q\"'r s'\n",
    },
    "prefixes - + !": {
        UNIT: unit("-+" + REC + " minus plus"),
    },
    "prefix @: argv[0] given": {
        UNIT: unit("@" + REC + " zeroth a b"),
    },
    "an installer's env file: DAEMON_ARGS quoted in ExecStart, unquoted in the file": {
        UNIT: unit(REC + ' "$DAEMON_ARGS"', "EnvironmentFile=/etc/sysconfig/kubelet\n"),
        "/etc/sysconfig/kubelet": "DAEMON_ARGS=--cgroup-driver=systemd --pod-infra-container-image=reg.local/pause:3.9   --v=2\n",
    },
}


def in_node(pid, *cmd, check=True):
    return subprocess.run(
        ["nsenter", "-t", pid, "-a", "--", "env",
         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *cmd],
        capture_output=True, check=check, timeout=60,
    )


# Editing proven the same way: for these cases the plan's kubelet files (a dry run's) are laid in
# and systemd runs the result: the new runtime flags are there, every word the plan does not own
# is still there, in order, and the model reads the edited files as systemd runs them.
EDIT_CASES = {
    "edit: flags on ExecStart, in Environment=, in an env file, in a quoted $VAR": {
        UNIT: unit(
            REC + ' --config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS "$EXTRA" --v=2',
            'Environment="EXTRA=--node-labels=a=b --max-pods=50"\n'
            "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n",
        ),
        "/var/lib/kubelet/kubeadm-flags.env": 'KUBELET_KUBEADM_ARGS="--network-plugin=cni '
        '--pod-infra-container-image=127.0.0.1:5000/pause:3.6 --cni-bin-dir=/opt/cni/bin"\n',
    },
    "edit: an installer's env file, every flag in one quoted variable": {
        UNIT: unit(REC + ' "$DAEMON_ARGS"', "EnvironmentFile=/etc/sysconfig/kubelet\n"),
        "/etc/sysconfig/kubelet": "DAEMON_ARGS=--cgroup-driver=systemd --network-plugin=cni "
        "--pod-infra-container-image=127.0.0.1:5000/pause:3.6   --v=2\n",
    },
}

# Flags the move to a CRI runtime may drop or rewrite (dockershim's); every other word stays.
OWNED = ("--network-plugin", "--cni-", "--docker", "--container-runtime", "--image-pull-progress-deadline",
         "--experimental-dockershim", "--non-masquerade-cidr", "--pod-infra-container-image")

# Every file a case or a plan may write, removed before each case and at the end (the node's own
# are saved first and put back).
KNOWN = [UNIT, "/etc/default/kubelet", "/etc/default/one", "/etc/default/two", "/etc/sysconfig/kubelet",
         "/var/lib/kubelet/kubeadm-flags.env"]


def kubelet_file(path):
    """A file of the plan's that decides the kubelet's command line."""
    return (path.startswith(UNIT) or path.startswith("/etc/default/") or path.startswith("/etc/sysconfig/")
            or (path.startswith("/var/lib/kubelet/") and path.endswith(".env")))


def main():
    root, pid = sys.argv[1], sys.argv[2]
    host = lambda p: os.path.join(root, p.lstrip("/"))
    # The node's own kubelet unit files, put back at the end.
    saved = {}
    for p in KNOWN:
        if os.path.exists(host(p)):
            saved[p] = open(host(p), "rb").read()
    if os.path.isdir(host(DROPINS)):
        shutil.copytree(host(DROPINS), host(DROPINS) + ".saved", dirs_exist_ok=True)
    written = set()

    def lay(files):
        for p in KNOWN + sorted(written):
            if os.path.exists(host(p)):
                os.remove(host(p))
        shutil.rmtree(host(DROPINS), ignore_errors=True)
        for p, text in files.items():
            os.makedirs(os.path.dirname(host(p)), exist_ok=True)
            with open(host(p), "w") as f:
                f.write(text)
            written.add(p)

    def systemd_runs():
        """The argv systemd gives the unit, or an error text."""
        out = host("/var/lib/argv-dump.out")
        if os.path.exists(out):
            os.remove(out)
        in_node(pid, "systemctl", "daemon-reload")
        ran = in_node(pid, "systemctl", "start", "kubelet.service", check=False)
        if not os.path.exists(out):
            return None, f"systemd did not run the recorder: {ran.stderr.decode()[-300:]}"
        return [w.decode() for w in open(out, "rb").read().split(b"\0")[:-1]], None

    def model_says(unit_text):
        run = in_node(pid, "cri-migrate", "inspect", "--output", "json", check=False)
        try:
            argv = [w["text"] for w in json.loads(run.stdout)["facts"]["kubelet_command"]["argv"]]
        except (ValueError, KeyError, TypeError):
            return None, f"no model argv: {run.stderr.decode()[-400:]}"
        # systemd runs the program at argv[0]'s path; with `@` the second word is argv[0].
        if unit_text.split("ExecStart=", 1)[1].startswith("@"):
            argv = argv[1:]
        return argv, None

    failed = []

    def check(name, files):
        lay(files)
        real, err = systemd_runs()
        if err is None:
            model, err = model_says(files[UNIT])
        if err is not None:
            failed.append(name)
            print(f"    FAIL {name}: {err}", file=sys.stderr)
            return None
        if real != model:
            failed.append(name)
            print(f"    FAIL {name}:\n         systemd ran {real!r}\n         the model   {model!r}", file=sys.stderr)
            return None
        print(f"    ok   {name}", file=sys.stderr)
        return real

    def check_edit(name, files):
        before = check(name + " (before)", files)
        if before is None:
            return
        run = in_node(pid, "cri-migrate", "migrate", "--to", "containerd", "--dry-run", "--yes",
                      "--output", "json", check=False)
        try:
            plan = json.loads(run.stdout)
            edited = {f["path"]: f["content"] for f in plan["files"] if kubelet_file(f["path"])}
        except (ValueError, KeyError, TypeError):
            failed.append(name)
            print(f"    FAIL {name}: no plan: {run.stdout.decode()[-300:]} {run.stderr.decode()[-600:]}", file=sys.stderr)
            return
        after_files = dict(files)
        after_files.update(edited)
        after = check(name + " (after the plan's edit)", after_files)
        if after is None:
            return
        problems = []
        endpoint = "--container-runtime-endpoint=unix:///run/containerd/containerd.sock"
        if endpoint not in after and not ("--container-runtime-endpoint" in after and
                                          after[after.index("--container-runtime-endpoint") + 1] == endpoint.split("=", 1)[1]):
            problems.append(f"no {endpoint}")
        kept = [w for w in before if not w.startswith(OWNED)]
        it = iter(after)
        if not all(any(w == a for a in it) for w in kept):
            problems.append(f"the words it does not own are not all kept in order: {kept!r}")
        if problems:
            failed.append(name)
            print(f"    FAIL {name}: {'; '.join(problems)}\n         before {before!r}\n         after  {after!r}\n"
                  f"         files {sorted(edited)}", file=sys.stderr)
        else:
            print(f"    ok   {name}: {sorted(edited)} edited, systemd runs {after[1:]!r}", file=sys.stderr)

    # The node's kubelet (the stand-in) runs: a `start` of an active unit would run nothing.
    in_node(pid, "systemctl", "stop", "kubelet.service", check=False)
    try:
        for name, files in CASES.items():
            check(name, files)
        for name, files in EDIT_CASES.items():
            check_edit(name, files)
    finally:
        lay({})
        if os.path.isdir(host(DROPINS) + ".saved"):
            shutil.move(host(DROPINS) + ".saved", host(DROPINS))
        for p, data in saved.items():
            with open(host(p), "wb") as f:
                f.write(data)
        in_node(pid, "systemctl", "daemon-reload", check=False)
        in_node(pid, "systemctl", "start", "kubelet.service", check=False)
    total = len(CASES) + 3 * len(EDIT_CASES)
    print(f"{total - len(failed)} of {total} unit forms and edits as systemd runs them", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
